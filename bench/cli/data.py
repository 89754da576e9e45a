"""`bench data synth | check | prepare | show`: make, validate, cache and look at datasets."""

from __future__ import annotations

import argparse
import sys

_FORMATS = ("brats2019", "brats2023", "msd")


def _shape(text: str) -> tuple[int, int, int]:
    try:
        parts = tuple(int(p) for p in text.replace("x", ",").split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 16:
        raise argparse.ArgumentTypeError(f"expected X,Y,Z with each size >= 16 (e.g. 96,96,64), got {text!r}")
    return parts  # type: ignore[return-value]


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = -1
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return v


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser(
        "data", help="make, check, prepare and look at BraTS/MSD datasets",
        description="Make a synthetic dataset, check a dataset folder, prepare its cache, or look at a case.",
    )
    sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", title="subcommands")
    data.set_defaults(subparser=data)

    p = sub.add_parser(
        "synth", help="write a synthetic BraTS-like dataset (the embedded default data)",
        description="Write synthetic phantoms that look like BraTS cases: four modalities, labels, real "
        "BraTS geometry and file types. Same seed, same bytes.",
    )
    p.add_argument("out", metavar="OUT", help="folder to write (created if missing)")
    p.add_argument("--cases", type=_positive_int, default=10, help="labeled cases (default 10)")
    p.add_argument("--unlabeled", type=_positive_int, default=0,
                   help="unlabeled cases, written to OUT/unlabeled/ in MSD 4D layout (default 0)")
    p.add_argument("--shape", type=_shape, default=(240, 240, 155), metavar="X,Y,Z",
                   help="volume size (default 240,240,155, the real BraTS geometry)")
    p.add_argument("--format", choices=_FORMATS, default="brats2019", help="layout (default brats2019)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--traps", action="store_true",
                   help="add the post-processing traps: faint spurious enhancement in low-grade cases, bright "
                        "non-tumour FLAIR spots far from the lesion (the rest of each case unchanged)")
    p.set_defaults(handler=_synth)

    p = sub.add_parser(
        "check", help="check every case of a dataset folder and list all problems (exit 2 if any)",
        description="Read every case; print a summary, then every problem found. Nothing is modified.",
    )
    p.add_argument("dir", metavar="DIR", help="dataset folder")
    p.add_argument("--format", choices=_FORMATS, default=None, help="layout (default: detected)")
    p.set_defaults(handler=_check)

    p = sub.add_parser(
        "prepare", help="crop, normalise and cache a dataset as memory-mapped arrays, with splits",
        description="Build (or reuse) the prepared cache of DIR: crop to the brain, normalise each modality, "
        "optionally resample to a coarser working grid, store .npy arrays and deterministic splits.",
    )
    p.add_argument("dir", metavar="DIR", help="dataset folder")
    p.add_argument("--spacing", type=float, default=None, metavar="MM",
                   help="working grid spacing in mm (default: the source grid)")
    p.add_argument("--normalization", choices=("minmax", "zscore"), default="minmax",
                   help="per-modality normalisation (default minmax, the paper's)")
    p.add_argument("--format", choices=_FORMATS, default=None, help="layout (default: detected)")
    p.add_argument("--cache", default=None, metavar="DIR", help="cache root (default ./.bench/cache)")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    p.add_argument("--test-fraction", type=float, default=0.2, help="held-out test fraction (default 0.2)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the splits (default 0)")
    add_split_options(p)
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    p.set_defaults(handler=_prepare)

    p = sub.add_parser(
        "show", help="draw the four modalities and the segmentation of a case as a PNG",
        description="Draw T1, T1ce, T2, FLAIR and the segmentation (and a prediction, if given) on the "
        "axial slice with the most tumour.",
    )
    p.add_argument("dir", metavar="DIR", help="dataset folder")
    p.add_argument("case", metavar="CASE", help="case ID")
    p.add_argument("--pred", default=None, metavar="FILE", help="a prediction .nii.gz to draw beside")
    p.add_argument("--out", default=None, metavar="PNG", help="output picture (default ./<CASE>.png)")
    p.add_argument("--slice", type=int, default=None, dest="slice_index", metavar="Z",
                   help="axial slice (default: the one with the most tumour)")
    p.add_argument("--format", choices=_FORMATS, default=None, help="layout (default: detected)")
    p.set_defaults(handler=_show)


def add_split_options(p: argparse.ArgumentParser) -> None:
    """--test-ids and --splits (a fixed split), shared by `data prepare`, `train`, `predict` and `run`."""
    p.add_argument("--test-ids", default=None, metavar="FILE",
                   help="held-out test cases: a text file with one case ID a line")
    p.add_argument("--splits", default=None, metavar="FILE",
                   help="folds from nnU-Net's splits_final.json or bench's splits.json")


def _synth(args: argparse.Namespace) -> int:
    from bench.data.synth import synthesize

    ids = synthesize(args.out, cases=args.cases, unlabeled=args.unlabeled, shape=args.shape, fmt=args.format,
                     seed=args.seed, progress=True, traps=args.traps)
    extra = f" + {args.unlabeled} unlabeled in {args.out}/unlabeled" if args.unlabeled else ""
    print(f"wrote {len(ids)} {args.format} cases of {'x'.join(map(str, args.shape))} to {args.out}{extra}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from bench.data.check import check_dataset

    report = check_dataset(args.dir, args.format, progress=True)
    print(report.format_summary())
    if report.problems:
        print(f"\n{len(report.problems)} problem(s):")
        for prob in report.problems:
            print(f"  {prob}")
        print(f"bench: error: {args.dir}: {len(report.problems)} problem(s) found", file=sys.stderr)
        return 2
    print("\nno problems found")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from bench.data.prepare import prepare

    ds = prepare(args.dir, args.cache, spacing=args.spacing, normalization=args.normalization, fmt=args.format,
                 folds=args.folds, test_fraction=args.test_fraction, split_seed=args.split_seed, progress=True,
                 workers=args.workers, test_ids=args.test_ids, splits=args.splits)
    print(f"prepared {len(ds.case_ids)} labeled + {len(ds.unlabeled_ids)} unlabeled cases in {ds.root}")
    print(f"fingerprint {ds.fingerprint}; {ds.n_folds} folds; test cases: {len(ds.test_ids())}")
    warn_unassigned(ds)
    return 0


def warn_unassigned(ds: object) -> None:
    """One warning line when a fixed split leaves labeled cases in no split."""
    ids = ds.unassigned_ids()  # type: ignore[attr-defined]
    if ids:
        shown = ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
        print(f"bench: warning: {len(ids)} labeled case(s) are in no split and are not used: {shown}",
              file=sys.stderr)


def _show(args: argparse.Namespace) -> int:
    from bench.data.show import show_case

    out = show_case(args.dir, args.case, pred=args.pred, out=args.out, fmt=args.format, z=args.slice_index)
    print(f"wrote {out}")
    return 0
