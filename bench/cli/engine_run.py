"""``bench train --engine NAME`` and ``bench predict --engine NAME`` for engines other than native: the same
data, split options and tricks, through the engine contract (:mod:`bench.engines`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_engine_options", "stack_from_args", "train", "predict"]


def add_engine_options(p: argparse.ArgumentParser, *, training: bool) -> None:
    p.add_argument("--engine", default="native", metavar="NAME",
                   help="native (bench's U-Net, default) or nnunet (nnU-Net v2, pip install -e '.[nnunet]')")
    p.add_argument("--plans", default=None, help="nnunet: nnU-Net plans (default nnUNetPlans, or a ResEnc preset)")
    p.add_argument("--configuration", default=None, help="nnunet: plans configuration (default 3d_fullres)")
    p.add_argument("--workspace", default=".", help="nnunet: folder whose .bench/ holds the nnU-Net dataset and "
                                                    "trainings (default: the current folder)")
    if training:
        p.add_argument("--epochs", type=int, default=None, help="nnunet: epochs (default 1000)")
        p.add_argument("--val-iterations", type=int, default=None,
                       help="nnunet: validation batches per epoch (default 50); --epoch-length sets the "
                            "iterations per epoch (default 250)")


def _engine(args: argparse.Namespace, train: dict[str, Any]) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    from bench.engines import get_engine
    from bench.errors import SpecError

    try:
        eng = get_engine(args.engine)
    except SpecError as exc:
        raise SpecError(f"--engine {args.engine}: {exc}") from None
    opts = {k: v for k, v in (("plans", args.plans), ("configuration", args.configuration)) if v is not None}
    tables = eng.validate("--engine " + args.engine, {"engine": opts, "train": train,
                                                      "inference": {"mirror": True} if getattr(args, "mirror", False)
                                                      else {}})
    return eng, tables["engine"], tables


def _data(args: argparse.Namespace, eng: Any, options: dict[str, Any], *, inputs: bool = False) -> Any:
    from bench.errors import DataError
    from bench.spec.model import DataSpec

    root = Path(args.data)
    if not root.is_dir():
        raise DataError(f"--data {args.data}: not a folder")
    ids = getattr(args, "test_ids", None)
    spec = DataSpec(path=str(root), folds=5 if args.folds is None else args.folds, test_fraction=args.test_fraction,
                    split_seed=args.split_seed, test_ids=ids, splits=getattr(args, "splits", None))
    prepare = eng.prepare_inputs if inputs else eng.prepare
    return prepare(spec, root, Path(args.workspace) / ".bench", options=options, progress=True)


def stack_from_args(args: argparse.Namespace) -> Any:
    """The stack of ``--tricks`` with the parameters of ``--set TRICK.PARAM=VALUE`` (each naming a trick of
    ``--tricks``)."""
    import tricks
    from bench.errors import SpecError

    params: dict[str, dict[str, Any]] = {}
    for text in getattr(args, "sets", []):
        name, key, value = tricks.parse_set_option(text)
        params.setdefault(name, {})[key] = value
    names = [n.strip() for n in args.tricks.split(",") if n.strip()]
    for name in params:
        if name not in names:
            raise SpecError(f"--set {name}.…: trick {name!r} is not in --tricks ({', '.join(names) or 'none'})")
    return tricks.resolve(names, params)


def _native_only(args: argparse.Namespace, names: tuple[str, ...]) -> None:
    from bench.errors import SpecError

    for name in names:
        if getattr(args, name, None) not in (None, False, 0):
            raise SpecError(f"--{name.replace('_', '-')} is an option of the native engine; --engine {args.engine} "
                            "takes its network and patch from its own plans")


def train(args: argparse.Namespace) -> int:
    """One training through the engine ``--engine``."""
    from bench.engines import TrainJob
    from bench.errors import SpecError

    _native_only(args, ("iterations", "patch", "batch", "lr", "width", "depth", "norm", "spacing", "val_every",
                        "compile"))
    budget = {k: v for k, v in (("epochs", args.epochs), ("iterations_per_epoch", args.epoch_length),
                                ("val_iterations", args.val_iterations)) if v is not None}
    stack = stack_from_args(args)
    eng, options, tables = _engine(args, budget)
    eng.check_stack(stack)
    data = _data(args, eng, options)
    if not 0 <= args.fold < data.n_folds:
        raise SpecError(f"--fold {args.fold}: the dataset has folds 0..{data.n_folds - 1}")
    machine: dict[str, Any] = {"device": args.device}
    if args.workers is not None:
        machine["num_workers"] = args.workers
    job = TrainJob(args.fold, args.seed or 0, stack, train=tables["train"], options=options, machine=machine)
    key = eng.training_key(data, job)
    out = Path(args.out) if args.out else Path(args.workspace) / ".bench" / "trainings" / key
    if not args.resume and eng.resume_point(out) is not None:
        raise SpecError(f"--out {out} holds an unfinished training; add --resume to continue it, "
                        "or choose another --out")
    from bench.bars import progress_bar

    bar = progress_bar(total=eng.budget_iterations(tables["train"]), desc=f"train {stack.label()} ({eng.name})",
                       unit="it")

    def progress(info: dict[str, Any]) -> None:
        bar.n = info["iteration"]
        post = {"loss": f"{info['loss']:.4f}"}
        if isinstance(info.get("val"), dict):
            post.update({f"dice_{k}": f"{v:.3f}" for k, v in info["val"].items() if v is not None})
        bar.set_postfix(post, refresh=False)
        bar.refresh()

    try:
        result = eng.train(data, out, job, resume=True, progress=progress)
    finally:
        bar.close()
    last = result.curve[-1] if result.curve else {}
    dice = " ".join(f"{r} {last[f'val_dice_{r}']:.3f}" for r in ("WT", "TC", "ET") if f"val_dice_{r}" in last)
    print(f"trained {result.iterations} iterations in {result.seconds:.0f} s ({eng.name}, seed {job.seed}); "
          f"checkpoint {result.checkpoint}" + (f"; validation pseudo-Dice {dice}" if dice else ""))
    return 0


def predict(args: argparse.Namespace) -> int:
    """Predict cases with the engine ``--engine`` and write them in the source geometry and label convention."""
    from bench.data.writers import write_prediction
    from bench.engines import PredictJob
    from bench.errors import SpecError

    _native_only(args, ("overlap", "weights", "window", "regions", "spacing"))
    paths = [Path(p.strip()) for p in args.model.split(",") if p.strip()]
    if not paths:
        raise SpecError("--model: give at least one checkpoint file")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise SpecError(f"--model: no checkpoint file {missing[0]}")
    stack = stack_from_args(args)
    eng, options, tables = _engine(args, {})
    eng.check_stack(stack)
    data = _data(args, eng, options, inputs=True)  # the model carries its own plans: nothing is planned here
    unlabeled = list(getattr(data, "unlabeled_ids", []))
    if args.cases == "all":  # a folder of unlabeled scans only: those
        ids = list(data.case_ids) or unlabeled
    elif args.cases == "test":
        ids = list(data.test_ids())
    elif args.cases == "unlabeled":
        ids = unlabeled
    else:
        ids = [c.strip() for c in args.cases.split(",") if c.strip()]
        bad = [c for c in ids if c not in set(data.case_ids) | set(unlabeled)]
        if bad:
            raise SpecError(f"--cases: unknown case ID(s) {', '.join(bad)}")
    if not ids:
        raise SpecError(f"--cases {args.cases}: no such cases in {args.data} ({len(data.case_ids)} labeled, "
                        f"{len(unlabeled)} unlabeled)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    job = PredictJob(stack, inference=tables["inference"], options=options,
                     device=None if args.device == "auto" else args.device)
    n = 0
    for case_id, labels in eng.predict(paths, data, ids, job):
        meta = data.meta(case_id)
        write_prediction(labels, case_id, meta.affine, out, meta.format)
        n += 1
        print(f"predict: {n}/{len(ids)} {case_id}", file=sys.stderr)
    print(f"wrote {n} predictions to {out}")
    return 0
