"""`bench report`: the paper's Table 1 and Table 2 (LaTeX, Markdown, CSV, HTML), statistics and figures."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

_FORMATS = ("latex", "markdown", "csv", "html")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="write Table 1 / Table 2 (LaTeX, Markdown, CSV, HTML), statistics and figures of an experiment",
        description="Read one experiment from the results database and write into OUT/<experiment>/: Table 1 "
        "(one row per configuration, mean +- SD over folds/seeds, best in bold, Holm-corrected paired Wilcoxon "
        "marks), Table 2 (Mean/StdDev/Median/quantiles of one configuration), bootstrap intervals, main effects "
        "and interactions (full grids), parameter importances (Optuna), box plots, learning curves, and a "
        "reproducibility appendix; report.tex compiles to report.pdf when pdflatex is installed.",
    )
    p.add_argument("experiment", nargs="?", default=None, metavar="EXPERIMENT",
                   help="experiment name (default: the only or most recent one in the database)")
    p.add_argument("--format", default=",".join(_FORMATS), metavar="LIST",
                   help=f"comma-separated output formats among {', '.join(_FORMATS)} (default: all)")
    p.add_argument("--out", default="reports", metavar="DIR", help="output root; files go to DIR/<experiment>/")
    p.add_argument("--baseline", default=None, metavar="LABEL",
                   help="row every configuration is tested against (default: the spec's baseline)")
    p.add_argument("--config", default=None, metavar="LABEL",
                   help="configuration of Table 2 (default: the best by mean Dice over ET, WT, TC)")
    p.add_argument("--results", default=None, metavar="URL",
                   help="results database URL (default: sqlite:///<workspace>/.bench/results.db)")
    p.add_argument("--workspace", default=".", metavar="DIR", help="workspace holding .bench/ (default: .)")
    p.add_argument("--tracking", default=None, metavar="URL",
                   help="MLflow tracking URI for logging the figures (default: the workspace's .bench/mlflow.db)")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="Optuna storage of a search, for parameter importances (default: .bench/optuna.journal)")
    p.add_argument("--metric", default="dice", metavar="dice|lesion_dice",
                   help="what the tables show and rank by: whole-image Dice/HD95 (default) or the BraTS 2023 "
                   "lesion-wise Dice/HD95 of a spec with [evaluation] lesionwise (to DIR/<experiment>-lesionwise/)")
    p.add_argument("--rank", action="store_true",
                   help="also rank the configurations as BraTS does (per test case, region and metric, then mean "
                   "rank), with PermRanker's pairwise permutation tests and the bootstrap rank distribution over "
                   "test cases and runs (ranking.md/.csv, rank_stability.png, a section of report.*)")
    p.add_argument("--permutations", type=int, default=10000, metavar="N",
                   help="random swaps of each pairwise permutation test of --rank (default 10000; exact when "
                   "2^cases is not more)")
    p.add_argument("--no-plots", action="store_true", help="skip the figures")
    p.add_argument("--no-pdf", action="store_true", help="do not compile report.tex with pdflatex")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling (default 0)")
    p.add_argument("--resamples", type=int, default=2000, metavar="N", help="bootstrap resamples (default 2000)")
    p.set_defaults(handler=_handler)


def _handler(args: argparse.Namespace) -> int:
    from bench.errors import SpecError

    formats = [f.strip().lower() for f in str(args.format).split(",") if f.strip()]
    bad = [f for f in formats if f not in _FORMATS]
    if bad or not formats:
        raise SpecError(f"--format {args.format!r}: unknown format(s) {', '.join(bad) or '(none)'}; "
                        f"accepted: {', '.join(_FORMATS)} (comma-separated)")
    if args.resamples < 100:
        raise SpecError(f"--resamples {args.resamples}: use at least 100 bootstrap resamples")

    if args.permutations < 100:
        raise SpecError(f"--permutations {args.permutations}: use at least 100 permutations")

    from bench.report.build import build_report, default_results_url

    workspace = Path(args.workspace)
    url = args.results or default_results_url(workspace)
    result = build_report(
        url,
        args.experiment,
        out=args.out,
        formats=formats,
        baseline=args.baseline,
        config=args.config,
        plots=not args.no_plots,
        pdf=False if args.no_pdf else None,
        workspace=workspace,
        tracking_uri=args.tracking,
        storage=args.storage,
        n_boot=args.resamples,
        seed=args.seed,
        progress=sys.stderr.isatty(),
        metric=args.metric,
        rank=args.rank,
        permutations=args.permutations,
    )
    a = result.analysis
    if "markdown" in formats:
        from bench.report import markdown

        print(markdown.table1(a))
    if result.ranking is not None:
        from bench.report import ranking

        print(ranking.markdown(result.ranking))
    for note in result.notes:
        print(f"bench: note: {note}", file=sys.stderr)
    names = ", ".join(sorted({p.name for p in result.files}))
    print(f"wrote {len(result.files)} files to {result.out_dir}/: {names}")
    return 0
