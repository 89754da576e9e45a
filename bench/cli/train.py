"""``bench train`` (one training with a trick stack) and ``bench predict`` (segment cases with one or more
models). Top-level imports: standard library only."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train", help="train one model (a trick stack, one fold) on a dataset folder",
        description="Train one model on a BraTS/MSD folder (checked and prepared on first use) or a prepared cache.",
    )
    p.add_argument("--data", required=True, help="dataset folder (raw BraTS/MSD layout, or a prepared cache)")
    p.add_argument("--tricks", default="", help="comma-separated trick names (see `bench tricks`)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="TRICK.PARAM=VALUE",
                   help="a trick parameter, e.g. warmup.epochs=5 (repeatable)")
    p.add_argument("--fold", type=int, default=0, help="cross-validation fold (default 0)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    p.add_argument("--iterations", type=int, default=None, help="training iterations (default: machine-sized)")
    p.add_argument("--epoch-length", type=int, default=None, help="iterations per epoch")
    p.add_argument("--patch", type=int, default=None, help="patch edge in voxels")
    p.add_argument("--batch", type=int, default=None, help="patches per iteration")
    p.add_argument("--lr", type=float, default=None, help="learning rate")
    p.add_argument("--width", type=int, default=None, help="U-Net base width")
    p.add_argument("--depth", type=int, default=None, help="U-Net down-samplings")
    p.add_argument("--norm", choices=("instance", "batch", "group"), default=None,
                   help="normalisation layers (default: batch on the CPU, instance on a GPU)")
    p.add_argument("--spacing", type=float, default=None, help="working grid spacing in mm (default: source)")
    p.add_argument("--val-every", type=int, default=None, help="validate every N epochs (0 = never)")
    p.add_argument("--workers", type=int, default=None, help="data-loading worker processes")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the training step (default: on with a GPU, off on the CPU)")
    p.add_argument("--out", default=None, help="output folder (default .bench/trainings/<training key>)")
    p.add_argument("--cache", default=None, help="prepared-cache root (default .bench/cache)")
    p.add_argument("--resume", action="store_true", help="continue the training in --out from its last checkpoint")
    _split_options(p)
    from bench.cli.engine_run import add_engine_options

    add_engine_options(p, training=True)
    p.set_defaults(handler=_train)

    q = subparsers.add_parser(
        "predict", help="segment dataset cases with one model or several fused (source geometry)",
        description="Predict every case of a dataset folder (test cases of a labeled set: all cases) and write "
                    "<out>/<case_id>.nii.gz in the source geometry and label convention.",
    )
    q.add_argument("--model", required=True, help="checkpoint file(s), comma-separated (several: fused)")
    q.add_argument("--data", required=True, help="dataset folder (raw or prepared)")
    q.add_argument("--out", required=True, help="output folder for the NIfTI predictions")
    q.add_argument("--cases", default="all",
                   help="all (the labeled cases; in a folder of unlabeled scans only, every scan) | test | unlabeled "
                        "| comma-separated case IDs")
    q.add_argument("--overlap", type=float, default=None, help="window overlap in [0, 1) (default 0)")
    q.add_argument("--weights", choices=("constant", "gaussian"), default=None, help="window weights")
    q.add_argument("--window", type=int, default=0, help="window edge (default: the training patch)")
    q.add_argument("--mirror", action="store_true", help="average with the left-right mirrored prediction")
    q.add_argument("--regions", action="store_true",
                   help="predict from the sigmoid ET/WT/TC outputs of a multitask model (nnU-Net's way)")
    q.add_argument("--tricks", default="",
                   help="tricks, comma-separated: the inference tricks to apply (patch_fusion, et_to_necrosis, "
                        "drop_stray_components); with --engine other than native also the training tricks the "
                        "model was trained with (they decide its trainer)")
    q.add_argument("--set", dest="sets", action="append", default=[], metavar="TRICK.PARAM=VALUE",
                   help="a parameter of those tricks, e.g. et_to_necrosis.min_volume=300 (repeatable)")
    q.add_argument("--spacing", type=float, default=None,
                   help="working grid spacing in mm: the model's, always (only for a checkpoint of an older bench "
                        "that does not record it)")
    q.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    q.add_argument("--cache", default=None, help="prepared-cache root (default .bench/cache)")
    _split_options(q)
    add_engine_options(q, training=False)
    q.set_defaults(handler=_predict)


def _split_options(p: Any) -> None:
    from bench.cli.data import add_split_options

    p.add_argument("--folds", type=int, default=None,
                   help="cross-validation folds of a raw --data folder (default 5, fewer when the cases are few)")
    p.add_argument("--test-fraction", type=float, default=0.2, help="held-out test fraction (default 0.2)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the splits (default 0)")
    add_split_options(p)


def open_dataset(path: str, *, spacing: float | None, cache: str | None, progress: bool = True,
                 args: argparse.Namespace | None = None, normalization: str = "minmax") -> Any:
    """A prepared cache folder is opened as is; a raw dataset folder is checked, then prepared (cached).

    ``args`` carries the split options (--folds, --test-fraction, --split-seed, --test-ids, --splits). Without
    --folds, a set too small for 5 folds gets as many as its cases allow, said in one line on stderr.
    """
    from bench.cli.data import warn_unassigned
    from bench.data.check import check_dataset
    from bench.data.prepare import PreparedDataset, prepare
    from bench.errors import DataError

    root = Path(path)
    if not root.is_dir():
        raise DataError(f"--data {path}: not a folder")
    if _is_cache(path):
        return PreparedDataset.open(root)
    report = check_dataset(root)
    if not report.ok:
        first = report.problems[0]
        more = f" (and {len(report.problems) - 1} more problems)" if len(report.problems) > 1 else ""
        raise DataError(f"--data {path} fails `bench data check`: {first.file}: {first.message}{more}")
    folds = getattr(args, "folds", None)
    split: dict[str, Any] = {
        "folds": 5 if folds is None else folds, "lower_folds": folds is None,
        "test_fraction": getattr(args, "test_fraction", 0.2), "split_seed": getattr(args, "split_seed", 0),
        "test_ids": getattr(args, "test_ids", None), "splits": getattr(args, "splits", None),
    }
    ds = prepare(root, cache, spacing=spacing, normalization=normalization, progress=progress, **split)
    if folds is None and split["splits"] is None and ds.n_folds < 5:
        what = "no validation split" if ds.n_folds == 1 else "folds 0.." + str(ds.n_folds - 1)
        print(f"bench: {len(ds.case_ids)} labeled cases allow only {ds.n_folds} fold(s) outside the test split: "
              f"using {what} (set --folds or --test-fraction to choose)", file=sys.stderr)
    warn_unassigned(ds)
    return ds


def _native(args: argparse.Namespace, names: tuple[str, ...]) -> bool:
    """True for the native engine (refusing the other engines' options); False for another engine."""
    from bench.errors import SpecError

    if args.engine != "native":
        return False
    for name in names:
        if getattr(args, name, None) not in (None, "", False):
            raise SpecError(f"--{name.replace('_', '-')} is an option of --engine nnunet, not of the native engine")
    return True


def _train(args: argparse.Namespace) -> int:
    import dataclasses

    from bench.engine import api
    from bench.engine.config import ModelConfig, TrainConfig
    from bench.errors import SpecError

    if not _native(args, ("plans", "configuration", "epochs", "val_iterations")):
        from bench.cli.engine_run import train

        return train(args)

    from bench.cli.engine_run import stack_from_args

    stack = stack_from_args(args)

    model_cfg = ModelConfig.for_device(args.device)
    changes_m = {k: v for k, v in (("width", args.width), ("depth", args.depth), ("norm", args.norm))
                 if v is not None}
    if "width" in changes_m and model_cfg.max_width < changes_m["width"]:
        changes_m["max_width"] = changes_m["width"] * 16
    model_cfg = dataclasses.replace(model_cfg, **changes_m)
    train_changes = {
        k: v for k, v in (
            ("iterations", args.iterations), ("epoch_length", args.epoch_length), ("patch", args.patch),
            ("batch", args.batch), ("lr", args.lr), ("seed", args.seed), ("val_every", args.val_every),
            ("num_workers", args.workers), ("compile", args.compile),
        ) if v is not None
    }
    train_cfg = dataclasses.replace(TrainConfig.for_device(args.device), fold=args.fold, device=args.device,
                                    **train_changes)
    model_cfg.validate()
    train_cfg.validate()

    ds = open_dataset(args.data, spacing=args.spacing, cache=args.cache, args=args)
    if not 0 <= args.fold < ds.n_folds:
        raise SpecError(f"--fold {args.fold}: the dataset has folds 0..{ds.n_folds - 1}")
    key = api.training_key(ds.fingerprint, model_cfg, train_cfg, stack)
    out = Path(args.out) if args.out else Path(".bench") / "trainings" / key
    if not args.resume and (out / api.LAST_CHECKPOINT).exists():
        raise SpecError(f"--out {out} holds an unfinished training; add --resume to continue it, "
                        "or choose another --out")
    from bench.engine.checkpoint import check_arch, load_checkpoint
    from bench.engine.recipe import baseline_recipe

    arch = stack.build(baseline_recipe(train_cfg)).arch(model_cfg)
    for existing in (out / api.FINAL_CHECKPOINT, out / api.LAST_CHECKPOINT):
        if existing.exists():  # refuse a checkpoint of another model before any work
            check_arch(existing, load_checkpoint(existing)["arch"], arch)
    from bench.bars import progress_bar

    bar = progress_bar(total=train_cfg.iterations, desc=f"train {stack.label()}", unit="it")

    def progress(info: dict[str, Any]) -> None:
        bar.n = info["iteration"]
        post = {"loss": f"{info['loss']:.4f}", "lr": f"{info['lr']:.2e}"}
        if "val" in info:
            post.update({f"dice_{k}": f"{v:.3f}" for k, v in info["val"].items()})
        bar.set_postfix(post, refresh=False)
        bar.refresh()

    try:
        result = api.train(ds, out, model_cfg, train_cfg, stack, resume=True, progress=progress)
    finally:
        bar.close()
    last = result.curve[-1] if result.curve else {}
    dice = " ".join(f"{r} {last[f'val_dice_{r}']:.3f}" for r in ("WT", "TC", "ET") if f"val_dice_{r}" in last)
    print(f"trained {result.iterations} iterations in {result.seconds:.0f} s; checkpoint {result.checkpoint}"
          + (f"; validation Dice {dice}" if dice else ""))
    return 0


def _inference_stack(args: argparse.Namespace) -> Any:
    """The inference tricks of ``bench predict --tricks`` (training tricks and model_fusion refused)."""
    from bench.cli.engine_run import stack_from_args
    from bench.errors import SpecError

    stack = stack_from_args(args)
    for t, _ in stack.entries:
        if t.phase != "inference" or t.name == "model_fusion":
            why = "give every fold's checkpoint to --model" if t.name == "model_fusion" else "a training trick"
            raise SpecError(f"--tricks {t.name}: {why}; accepted patch_fusion, et_to_necrosis, "
                            "drop_stray_components")
    return stack


def _is_cache(path: str) -> bool:
    return (Path(path) / "dataset.json").is_file() and (Path(path) / "splits.json").is_file()


def _model_preparation(record: dict[str, Any] | None, args: argparse.Namespace) -> dict[str, Any]:
    """How a raw --data folder is prepared for the model: its recorded spacing and normalisation. A checkpoint
    saved before bench recorded them falls back to --spacing (default: the source grid) and min-max, said in
    one line, because refusing would strand every older model while a silent guess was the old bug."""
    from bench.errors import SpecError

    if record is None and _is_cache(args.data):
        print(f"bench: {args.model} records no preprocessing (saved by an older bench): whether --data was "
              "prepared like its training data cannot be checked", file=sys.stderr)
        return {"spacing": args.spacing, "normalization": "minmax"}
    if record is None:
        where = f"--spacing {args.spacing:g} mm" if args.spacing is not None else "the source grid (no --spacing)"
        print(f"bench: {args.model} records no preprocessing (saved by an older bench): a raw --data folder is "
              f"prepared at {where} with min-max normalisation; pass --spacing if the model was trained on another "
              "grid, or give the cache it was trained on", file=sys.stderr)
        return {"spacing": args.spacing, "normalization": "minmax"}
    if args.spacing is not None and (record["spacing"] is None or abs(args.spacing - record["spacing"]) > 1e-9):
        trained = "the source grid" if record["spacing"] is None else f"a {record['spacing']:g} mm grid"
        raise SpecError(f"--spacing {args.spacing:g}: the model was trained on {trained} and predicts only there "
                        "(leave --spacing out)")
    return {"spacing": record["spacing"], "normalization": record["normalization"]}


def _predict(args: argparse.Namespace) -> int:
    import dataclasses

    from bench.data.writers import write_prediction
    from bench.engine import api
    from bench.engine.checkpoint import check_preprocessing, load_checkpoint, model_preprocessing
    from bench.engine.config import InferenceConfig
    from bench.errors import SpecError

    if not _native(args, ("plans", "configuration")):
        from bench.cli.engine_run import predict

        return predict(args)
    paths = [Path(p.strip()) for p in args.model.split(",") if p.strip()]
    if not paths:
        raise SpecError("--model: give at least one checkpoint file")
    # missing/corrupt -> CheckpointError before any data work; fused models must share their preprocessing
    record = model_preprocessing([(p, load_checkpoint(p)) for p in paths])
    ds = open_dataset(args.data, cache=args.cache, args=args, **_model_preparation(record, args))
    check_preprocessing(record, ds, f"--data {args.data}")
    if args.cases == "all":  # a folder of unlabeled scans only: those
        ids = list(ds.case_ids) or list(ds.unlabeled_ids)
    elif args.cases == "test":
        ids = list(ds.test_ids())
    elif args.cases == "unlabeled":
        ids = list(ds.unlabeled_ids)
    else:
        ids = [c.strip() for c in args.cases.split(",") if c.strip()]
        known = set(ds.case_ids) | set(ds.unlabeled_ids)
        bad = [c for c in ids if c not in known]
        if bad:
            raise SpecError(f"--cases: unknown case ID(s) {', '.join(bad)}")
    if not ids:
        raise SpecError(f"--cases {args.cases}: no such cases in {args.data} ({len(ds.case_ids)} labeled, "
                        f"{len(ds.unlabeled_ids)} unlabeled)")
    if args.regions:
        import tricks  # noqa: F401 - the multitask trick registers the region head (bench.engine.heads)
    cfg = InferenceConfig(window=args.window, mirror=args.mirror, device=args.device, regions=args.regions)
    cfg = _inference_stack(args).inference_config(cfg)
    if args.overlap is not None:
        cfg = dataclasses.replace(cfg, overlap=args.overlap)
    if args.weights is not None:
        cfg = dataclasses.replace(cfg, weights=args.weights)
    cfg.validate()
    if any(step.select == "validation" for step in cfg.postprocess):
        cfg, lines = api.select_postprocess(paths, ds, cfg)
        for line in lines:
            print(f"post-processing chosen on validation: {line}")
    from bench.bars import progress_bar

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for case_id, labels in progress_bar(iterable=api.predict(paths, ds, ids, cfg), total=len(ids), desc="predict",
                                        unit="case"):
        meta = ds.load(case_id).meta
        write_prediction(labels, case_id, meta.affine, out, meta.format)
        n += 1
    print(f"wrote {n} predictions to {out}")
    return 0
