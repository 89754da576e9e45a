"""`bench evaluate`: score a folder of predictions against a dataset by a year's BraTS rules (``--rules``:
2017 whole-image, the default; 2023 lesion-wise, also ``--lesionwise COHORT``; 2024; 2025) and a cohort or
bundled config of that year (``--cohort``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.evaluation.evaluate import Matching

_FORMATS = ("brats2019", "brats2023", "msd")
_COHORTS = ("gli", "ssa", "ped", "men", "met")  # bench.evaluation.lesionwise.COHORTS (not imported: CLI start-up)
# bench.evaluation.rules: the years and their cohorts / bundled configs
_RULES = {"2017": ("gli",), "2023": _COHORTS, "2024": ("gli", "met", "men-rt"),
          "2025": ("gli", "mets", "ped", "MenRT", "MenPre", "GoAT")}


def _jobs(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return v


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate", help="score predictions against a dataset (Dice, HD95, sens., spec.)",
        description="Match PRED/<ID>.nii.gz to the cases of the dataset GT, compute Dice, HD95 (medpy's "
        "pooled definition), sensitivity and specificity for ET, TC and WT with the BraTS 2017-2022 "
        "empty-mask rules, write the per-case CSV and print a Table-2 style summary. Predictions use the "
        "label convention of GT. With --lesionwise COHORT the BraTS 2023 lesion-wise Dice and HD95 and the "
        "2023 evaluator's legacy values are computed too and written per case and region. --rules 2024 "
        "scores by the BraTS 2024 lesion-wise rules (post-treatment labels 1 NETC, 2 SNFH, 3 ET, 4 RC), "
        "--rules 2025 by the BraTS-evaluation/Panoptica rules with the 91 leaderboard columns; both write the "
        "official columns plus the mean/std/median rows, and score a labelled case without a prediction as "
        "the official code does.",
    )
    p.add_argument("--pred", required=True, metavar="PRED_DIR",
                   help="folder of predictions named <ID>.nii.gz")
    p.add_argument("--gt", required=True, metavar="GT_DIR",
                   help="reference dataset folder (any supported layout)")
    p.add_argument("--out", default=None, metavar="CSV",
                   help="per-case CSV to write (default PRED_DIR/metrics.csv)")
    p.add_argument("--format", choices=_FORMATS, default=None, help="layout of GT_DIR (default: detected)")
    p.add_argument("--jobs", type=_jobs, default=None, metavar="N",
                   help="cases evaluated in parallel (default min(2, CPU count))")
    p.add_argument("--lesionwise", type=_cohort, default=None, metavar="COHORT",
                   help="also score with the BraTS 2023 lesion-wise rules of COHORT: "
                   f"{', '.join(_COHORTS)} (dilation 3/3/3/1/1, lesions <= 50/50/50/50/2 mm^3 ignored)")
    p.add_argument("--rules", choices=tuple(_RULES), default=None, metavar="YEAR",
                   help="evaluation definition: 2017 (whole-image, default), 2023 (lesion-wise), 2024 "
                   "(post-treatment lesion-wise), 2025 (Panoptica, leaderboard columns)")
    p.add_argument("--cohort", default=None, metavar="NAME",
                   help="cohort / bundled config of the year (default gli): "
                   + "; ".join(f"{y}: {', '.join(c)}" for y, c in _RULES.items()))
    p.set_defaults(handler=_handler)


def _cohort(text: str) -> str:
    key = text.strip().lower()
    if key not in _COHORTS:
        raise argparse.ArgumentTypeError(f"unknown cohort {text!r}; expected one of {', '.join(_COHORTS)}")
    return key


def _report_matching(matching: Matching, out: Path, missing_scored: bool = False) -> None:
    def show(title: str, items: list[str]) -> None:
        if items:
            shown = ", ".join(items[:10]) + (f", ... ({len(items) - 10} more)" if len(items) > 10 else "")
            print(f"bench: warning: {len(items)} {title}: {shown}", file=sys.stderr)

    show("prediction(s) without a labeled case (not evaluated)",
         [p.name for p in matching.predictions_without_case])
    show("case(s) without a prediction (scored as the official code scores a missing one)"
         if missing_scored else "case(s) without a prediction (not evaluated)", matching.cases_without_prediction)
    ignored = [p.name for p in matching.ignored if p.resolve() != out.resolve()]  # our own earlier CSV
    show("file(s) in the prediction folder ignored (not named <ID>.nii.gz)", ignored)


def _choose(args: argparse.Namespace) -> tuple[str, str | None]:
    """(rules year, cohort) from --rules, --cohort and --lesionwise; SpecError naming the option."""
    from bench.errors import SpecError

    year = args.rules or ("2023" if args.lesionwise else "2017")
    if args.lesionwise and year != "2023":
        raise SpecError(f"--lesionwise chooses the 2023 rules; drop it or use --rules 2023 (got --rules {year})")
    cohort = args.cohort if args.cohort is not None else args.lesionwise
    if cohort is not None:
        names = {c.lower(): c for c in _RULES[year]}
        if cohort.strip().lower() not in names:
            raise SpecError(f"--cohort: unknown cohort {cohort!r} for --rules {year}; "
                            f"expected one of {', '.join(_RULES[year])}")
        cohort = names[cohort.strip().lower()]
    return year, cohort


def _handler(args: argparse.Namespace) -> int:
    year, cohort = _choose(args)
    if year in ("2024", "2025"):
        return _handler_rules(args, year, cohort)
    if year == "2023":
        args.lesionwise = cohort or "gli"
    from bench.evaluation.evaluate import (
        evaluate_folder,
        format_lesion_summary,
        format_summary,
        write_csv,
        write_lesion_csv,
    )

    out = Path(args.out) if args.out else Path(args.pred) / "metrics.csv"
    result = evaluate_folder(args.pred, args.gt, fmt=args.format, jobs=args.jobs,
                             on_matched=lambda m: _report_matching(m, out, missing_scored=True),
                             cohort=args.lesionwise)
    if args.lesionwise:
        write_lesion_csv(result.rows, result.lesions, out)
    else:
        write_csv(result.rows, out)
    m = result.matching
    print(f"evaluated {len(m.pairs)} case(s) of {args.gt} ({result.format}); "
          f"{len(m.predictions_without_case)} prediction(s) without a case, "
          f"{len(m.cases_without_prediction)} case(s) without a prediction (scored as empty predictions)")
    print(format_summary(result.rows))
    if args.lesionwise:
        print()
        print(format_lesion_summary(result.lesions, args.lesionwise))
    print(f"per-case metrics: {out}")
    return 0


def _handler_rules(args: argparse.Namespace, year: str, cohort: str | None) -> int:
    from bench.evaluation.evaluate_rules import evaluate_folder_rules, format_rules_summary, write_rules_csv

    out = Path(args.out) if args.out else Path(args.pred) / "metrics.csv"

    def report(m: Matching) -> None:
        _report_matching(m, out, missing_scored=True)

    result = evaluate_folder_rules(args.pred, args.gt, year, cohort, fmt=args.format, jobs=args.jobs,
                                   on_matched=report)
    write_rules_csv(result, out)
    m = result.matching
    print(f"evaluated {len(m.pairs)} case(s) of {args.gt} ({result.format}) by the BraTS {year} rules, cohort "
          f"{result.cohort}; {len(m.predictions_without_case)} prediction(s) without a case, "
          f"{len(m.cases_without_prediction)} case(s) without a prediction (scored as the official code does)")
    print(format_rules_summary(result))
    print(f"per-case metrics: {out}")
    return 0
