"""Folder evaluation behind ``bench evaluate``: match predictions to cases, score them, summarise.

Predictions are ``<PRED_DIR>/<ID>.nii.gz`` (or ``.nii``) files named like BraTS submissions, written in the
label convention of the reference dataset (BraTS submissions are). The reference is a dataset folder in any
layout ``bench.data.readers`` reads. Each matched pair is scored with :func:`evaluate_case` (BraTS 2017-2022
rules, medpy's pooled HD95) using the spacing of the reference segmentation's header; with a cohort also with
:func:`bench.evaluation.lesionwise.lesionwise_case` (BraTS 2023 lesion-wise rules).

Summary statistics (:func:`summary_table`) follow Table 2 of the paper: Mean, StdDev (sample standard
deviation, ddof=1; 0.0 for a single case), Median, 25quantile, 75quantile (numpy's linear interpolation) per
region and metric, penalised HD95 values (373.13) included.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import astuple, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from bench.atomic import atomic_write_text
from bench.data.formats import BRATS2019, HD95_PENALTY, REGIONS
from bench.data.readers import CaseFiles, detect_format, labels_to_brats, list_cases, load_nifti, read_label
from bench.errors import DataError
from bench.evaluation.lesionwise import Cohort, LesionwiseMetrics, get_cohort, lesionwise_case
from bench.evaluation.metrics import METRIC_NAMES, RegionMetrics, evaluate_case

__all__ = [
    "CaseRow", "CSV_COLUMNS", "STATS", "Matching", "FolderResult", "match_predictions", "case_rows",
    "evaluate_pair",
    "evaluate_folder", "write_csv", "read_csv", "summary_table", "penalty_counts", "format_summary",
    "LesionRow", "LESION_CSV_COLUMNS", "write_lesion_csv", "format_lesion_summary",
]

STATS: tuple[str, ...] = ("Mean", "StdDev", "Median", "25quantile", "75quantile")
_METRIC_TITLES = {
    "dice": "Dice", "hd95": "HD95 (mm)", "sensitivity": "Sensitivity", "specificity": "Specificity",
}


@dataclass(frozen=True)
class CaseRow:
    """One line of the per-case CSV: the metrics of one region of one case."""

    case_id: str
    region: str
    dice: float
    hd95: float
    sensitivity: float
    specificity: float
    penalty: bool


CSV_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(CaseRow))


@dataclass(frozen=True)
class LesionRow:
    """The BraTS 2023 lesion-wise and legacy values of one region of one case (``--lesionwise``)."""

    case_id: str
    region: str
    metrics: LesionwiseMetrics


# ``case`` .. ``specificity`` as the 2023 evaluator names them, then bench's whole-image Dice / medpy HD95
LESION_CSV_COLUMNS: tuple[str, ...] = (
    "case", "region", "lesion_dice", "lesion_hd95", "legacy_dice", "legacy_hd95", "num_tp", "num_fp", "num_fn",
    "sensitivity", "specificity", "dice", "hd95", "penalty",
)


@dataclass
class Matching:
    """Which prediction file goes with which reference case, and what is left over."""

    pairs: list[tuple[Path, CaseFiles]]  # (prediction file, its reference case), sorted by case ID
    predictions_without_case: list[Path] = field(default_factory=list)
    cases_without_prediction: list[str] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)  # files in PRED_DIR that are not named like NIfTI


@dataclass
class FolderResult:
    rows: list[CaseRow]
    matching: Matching
    format: str
    lesions: list[LesionRow] = field(default_factory=list)  # with a cohort only, in the order of ``rows``
    missing: list[str] = field(default_factory=list)  # cases without a prediction, scored as empty predictions


# ------------------------------------------------------------------------------------------------ matching


def _nifti_id(name: str) -> str | None:
    low = name.lower()
    for ext in (".nii.gz", ".nii"):
        if low.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)]
    return None


def match_predictions(pred_dir: Path | str, gt_dir: Path | str, fmt: str | None = None) -> Matching:
    """Pair every ``<ID>.nii.gz`` in ``pred_dir`` with the labeled case ``<ID>`` of the dataset ``gt_dir``.

    Raises DataError when a folder is missing, when ``pred_dir`` holds no NIfTI file, or when no prediction
    matches a labeled case.
    """
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    if not pred_dir.is_dir():
        raise DataError(f"{pred_dir}: prediction folder not found (expected a folder of <ID>.nii.gz files)")
    if not gt_dir.is_dir():
        raise DataError(f"{gt_dir}: ground-truth folder not found (expected a BraTS or MSD dataset folder)")
    preds: dict[str, Path] = {}
    ignored: list[Path] = []
    for path in sorted(pred_dir.iterdir()):
        if path.name.startswith("."):
            continue
        cid = _nifti_id(path.name) if path.is_file() else None
        if cid is None:
            ignored.append(path)
            continue
        if cid in preds:
            raise DataError(f"{path}: a second prediction for case {cid} (also {preds[cid].name}); keep one")
        preds[cid] = path
    if not preds:
        raise DataError(
            f"{pred_dir}: no NIfTI predictions found (expected files named <ID>.nii.gz, one per case)"
        )
    cases = {cf.case_id: cf for cf in list_cases(gt_dir, fmt) if cf.seg is not None}
    if not cases:
        raise DataError(f"{gt_dir}: no case with a reference segmentation to evaluate against")
    pairs = [(preds[cid], cases[cid]) for cid in sorted(preds) if cid in cases]
    if not pairs:
        shown = ", ".join(sorted(preds)[:3]) + (", ..." if len(preds) > 3 else "")
        raise DataError(
            f"{pred_dir}: no prediction matches a case of {gt_dir} (predictions: {shown}; "
            f"case IDs look like {next(iter(sorted(cases)))}); name each file <case ID>.nii.gz"
        )
    return Matching(
        pairs=pairs,
        predictions_without_case=[preds[c] for c in sorted(preds) if c not in cases],
        cases_without_prediction=[c for c in sorted(cases) if c not in preds],
        ignored=ignored,
    )


# ------------------------------------------------------------------------------------------------ scoring


def _prediction_labels(path: Path, raw: np.ndarray, fmt: str) -> np.ndarray:
    """Validate the label values of a prediction written in ``fmt``'s convention; return BraTS 2019 labels."""
    return labels_to_brats(path, raw, fmt, what="prediction",
                           hint=" (predictions must use the label convention of the reference dataset)")


def case_rows(case_id: str, metrics: Mapping[str, RegionMetrics]) -> list[CaseRow]:
    """The CSV rows of one case from :func:`evaluate_case`'s result (for callers that score in memory)."""
    return [
        CaseRow(case_id, r, m.dice, m.hd95, m.sensitivity, m.specificity, m.penalty)
        for r, m in metrics.items()
    ]


def evaluate_pair(pred_path: Path | None, case_files: CaseFiles) -> list[CaseRow]:
    """Score one prediction file against its reference case (a ``readers.CaseFiles``): one row per region;
    ``pred_path`` None scores an empty prediction (a case without one, as the official evaluators do).

    Raises DataError when a file is unreadable, holds foreign labels, or the geometry differs.
    """
    pred, gt, spacing = _read_pair(pred_path, case_files)
    return case_rows(case_files.case_id, evaluate_case(pred, gt, spacing, BRATS2019))


def _read_pair(pred_path: Path | None, case_files: CaseFiles) -> tuple[Any, Any, Any]:
    """(prediction, reference, spacing) in BraTS 2019 labels on the reference grid (an empty prediction when
    ``pred_path`` is None); DataError on a mismatch of shape or affine."""
    gt, g_affine, spacing = read_label(case_files)
    if pred_path is None:
        return np.zeros_like(gt), gt, spacing
    raw, p_affine, _ = load_nifti(pred_path)
    if raw.shape != gt.shape:
        raise DataError(
            f"{pred_path}: prediction shape {tuple(raw.shape)} differs from the reference "
            f"{Path(str(case_files.seg)).name} shape {tuple(gt.shape)}; predictions must be on the source "
            "grid"
        )
    if not np.allclose(p_affine, g_affine, atol=1e-4):
        raise DataError(
            f"{pred_path}: prediction affine differs from the reference {Path(str(case_files.seg)).name}'s; "
            "predictions must be on the source grid (same voxel size, origin and orientation)"
        )
    return _prediction_labels(pred_path, raw, case_files.format), gt, spacing


def evaluate_pair_lesionwise(
    pred_path: Path | None, case_files: CaseFiles, cohort: str | Cohort
) -> tuple[list[CaseRow], list[LesionRow]]:
    """:func:`evaluate_pair` plus the BraTS 2023 lesion-wise values of ``cohort`` (files read once)."""
    pred, gt, spacing = _read_pair(pred_path, case_files)
    rows = case_rows(case_files.case_id, evaluate_case(pred, gt, spacing, BRATS2019))
    lesions = lesionwise_case(pred, gt, spacing, cohort, BRATS2019)
    return rows, [LesionRow(case_files.case_id, r, m) for r, m in lesions.items()]


def _evaluate_job(job: tuple[Path | None, CaseFiles, Cohort | None]) -> tuple[list[CaseRow], list[LesionRow]]:
    pred_path, case_files, cohort = job
    if cohort is None:
        return evaluate_pair(pred_path, case_files), []
    return evaluate_pair_lesionwise(pred_path, case_files, cohort)


def default_jobs() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def evaluate_folder(
    pred_dir: Path | str,
    gt_dir: Path | str,
    *,
    fmt: str | None = None,
    jobs: int | None = None,
    progress: bool = True,
    on_matched: Callable[[Matching], None] | None = None,
    cohort: str | Cohort | None = None,
) -> FolderResult:
    """Evaluate every prediction of ``pred_dir`` that has a labeled case in ``gt_dir``, and every labeled case
    without a prediction as an empty prediction (as the official evaluators score a missing submission).

    Cases run in a process pool of ``jobs`` workers (default ``min(2, cpu count)``; 1 runs in-process) with a
    tqdm bar on stderr. ``on_matched`` is called with the matching before scoring starts (to report
    unmatched files early). Rows come sorted by case ID, then region (ET, TC, WT). With ``cohort`` (a
    :data:`bench.evaluation.lesionwise.COHORTS` name) the result also holds the lesion-wise values.
    """
    lesion_cohort = None if cohort is None else get_cohort(cohort, where="--lesionwise")
    matching = match_predictions(pred_dir, gt_dir, fmt)
    fmt = fmt or detect_format(gt_dir)
    if on_matched is not None:
        on_matched(matching)
    jobs = default_jobs() if jobs is None else int(jobs)
    if jobs < 1:
        raise DataError(f"--jobs {jobs}: expected a whole number >= 1")
    from bench.bars import progress_bar

    bar = progress_bar(total=len(matching.pairs) + len(matching.cases_without_prediction), desc="evaluating",
                       unit="case", disable=not progress)
    rows: list[CaseRow] = []
    lesions: list[LesionRow] = []
    jobs_in: list[tuple[Path | None, CaseFiles, Cohort | None]] = [
        (pred, cf, lesion_cohort) for pred, cf in matching.pairs]
    if matching.cases_without_prediction:
        by_id = {cf.case_id: cf for cf in list_cases(gt_dir, fmt) if cf.seg is not None}
        jobs_in += [(None, by_id[cid], lesion_cohort) for cid in matching.cases_without_prediction]
    try:
        if jobs == 1 or len(jobs_in) == 1:
            for job in jobs_in:
                got = _evaluate_job(job)
                rows.extend(got[0])
                lesions.extend(got[1])
                bar.update(1)
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, as_completed

            # not "fork": callers (a training worker) may hold threads or a CUDA context
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
            if ctx.get_start_method() == "forkserver":
                ctx.set_forkserver_preload([__name__])  # import once in the server, not in every worker
            with ProcessPoolExecutor(max_workers=min(jobs, len(jobs_in)), mp_context=ctx) as pool:
                futures = [pool.submit(_evaluate_job, job) for job in jobs_in]
                try:
                    for fut in as_completed(futures):
                        got = fut.result()
                        rows.extend(got[0])
                        lesions.extend(got[1])
                        bar.update(1)
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
    finally:
        bar.close()
    order = {r: i for i, r in enumerate(REGIONS)}
    rows.sort(key=lambda row: (row.case_id, order.get(row.region, len(order))))
    lesions.sort(key=lambda row: (row.case_id, order.get(row.region, len(order))))
    return FolderResult(rows, matching, fmt, lesions, list(matching.cases_without_prediction))


# ------------------------------------------------------------------------------------------------ CSV


def write_csv(rows: Iterable[CaseRow], path: Path | str) -> Path:
    """Write the per-case CSV (``CSV_COLUMNS``; penalty as 0/1; floats at full precision) atomically."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        values = list(astuple(row))
        values[-1] = int(bool(values[-1]))
        writer.writerow([repr(v) if isinstance(v, float) else v for v in values])
    return atomic_write_text(path, buf.getvalue())


def read_csv(path: Path | str) -> list[CaseRow]:
    """Read a per-case CSV written by :func:`write_csv`. Raises DataError naming the file on bad content."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{path}: missing columns {missing}; expected {list(CSV_COLUMNS)}")
            return [_row_from_mapping(r) for r in reader]
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise DataError(f"{path}: bad value ({exc}); expected numbers in {list(METRIC_NAMES)}") from exc


def _row_from_mapping(r: Mapping[str, Any]) -> CaseRow:
    pen = r["penalty"]
    if isinstance(pen, str):
        pen = pen.strip().lower() in ("1", "true", "yes")
    return CaseRow(
        str(r["case_id"]), str(r["region"]), float(r["dice"]), float(r["hd95"]), float(r["sensitivity"]),
        float(r["specificity"]), bool(pen),
    )


# ------------------------------------------------------------------------------------------------ summary


def _field(row: Any, key: str) -> Any:
    return row[key] if isinstance(row, Mapping) else getattr(row, key)


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {s: math.nan for s in STATS}
    a = np.asarray(values, dtype=np.float64)
    return {
        "Mean": float(a.mean()),
        "StdDev": float(a.std(ddof=1)) if a.size > 1 else 0.0,
        "Median": float(np.median(a)),
        "25quantile": float(np.percentile(a, 25)),
        "75quantile": float(np.percentile(a, 75)),
    }


def summary_table(rows: Iterable[CaseRow | Mapping[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Table-2 statistics: ``{region: {metric: {stat: value}}}`` for REGIONS x METRIC_NAMES x STATS.

    ``rows`` are :class:`CaseRow` objects or mappings with the CSV columns (values may be strings, e.g. from
    ``csv.DictReader``). StdDev is the sample standard deviation (ddof=1, 0.0 for one case); quantiles use
    numpy's linear interpolation; regions without rows get NaN.
    """
    values: dict[str, dict[str, list[float]]] = {r: {m: [] for m in METRIC_NAMES} for r in REGIONS}
    for row in rows:
        region = str(_field(row, "region"))
        per_metric = values.setdefault(region, {m: [] for m in METRIC_NAMES})
        for m in METRIC_NAMES:
            per_metric[m].append(float(_field(row, m)))
    return {r: {m: _stats(v) for m, v in per.items()} for r, per in values.items()}


def penalty_counts(rows: Iterable[CaseRow | Mapping[str, Any]]) -> dict[str, int]:
    """Number of cases per region whose HD95 is the 373.13 mm empty-mask penalty."""
    counts = {r: 0 for r in REGIONS}
    for row in rows:
        pen = _field(row, "penalty")
        if isinstance(pen, str):
            pen = pen.strip().lower() in ("1", "true", "yes")
        if pen:
            region = str(_field(row, "region"))
            counts[region] = counts.get(region, 0) + 1
    return counts


def format_summary(rows: list[CaseRow] | list[Mapping[str, Any]]) -> str:
    """The Table-2 style summary as text: one block per metric, regions as columns, then penalty counts."""
    table = summary_table(rows)
    penalties = penalty_counts(rows)
    regions = list(table)
    n_cases = len({str(_field(r, "case_id")) for r in rows})
    lines = [f"{n_cases} case{'s' if n_cases != 1 else ''}; HD95 = medpy's pooled 95th percentile (mm); "
             f"BraTS 2017-2022 empty-mask rules"]
    for m in METRIC_NAMES:
        lines.append("")
        lines.append(f"{_METRIC_TITLES[m]:<12}" + "".join(f"{r:>10}" for r in regions))
        digits = 3 if m == "hd95" else 4
        for s in STATS:
            lines.append(f"{s:<12}" + "".join(f"{table[r][m][s]:>10.{digits}f}" for r in regions))
    lines.append("")
    lines.append(
        f"HD95 penalty {HD95_PENALTY} mm (exactly one mask empty): "
        + ", ".join(f"{r} {penalties.get(r, 0)}" for r in regions)
        + " case(s)"
    )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ lesion-wise


def write_lesion_csv(rows: Iterable[CaseRow], lesions: Iterable[LesionRow], path: Path | str) -> Path:
    """Write the lesion-wise per-case CSV (``LESION_CSV_COLUMNS``, one row per case and region) atomically."""
    whole = {(r.case_id, r.region): r for r in rows}
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(LESION_CSV_COLUMNS)
    for les in lesions:
        m = les.metrics
        w = whole.get((les.case_id, les.region))
        values: list[Any] = [
            les.case_id, les.region, m.lesion_dice, m.lesion_hd95, m.legacy_dice, m.legacy_hd95, m.num_tp,
            m.num_fp, m.num_fn, m.sensitivity, m.specificity,
        ]
        values += [w.dice, w.hd95, int(w.penalty)] if w is not None else ["", "", ""]
        writer.writerow([repr(v) if isinstance(v, float) else v for v in values])
    return atomic_write_text(path, buf.getvalue())


_LESION_SUMMARY = (
    ("lesion_dice", "LesionWise Dice", 4), ("lesion_hd95", "LesionWise HD95 (mm)", 3),
    ("legacy_dice", "Legacy Dice", 4), ("legacy_hd95", "Legacy HD95 (mm)", 3),
    ("sensitivity", "Sensitivity", 4), ("specificity", "Specificity", 4),
)


def format_lesion_summary(lesions: list[LesionRow], cohort: str | Cohort) -> str:
    """Summary like the official 2023 scoring: Mean, StdDev, Median, quartiles per region, and TP/FP/FN sums."""
    c = get_cohort(cohort)
    regions = [r for r in REGIONS if any(le.region == r for le in lesions)]
    n_cases = len({le.case_id for le in lesions})
    lines = [f"{n_cases} case{'s' if n_cases != 1 else ''}; {c.describe()}"]
    for key, title, digits in _LESION_SUMMARY:
        lines.append("")
        lines.append(f"{title:<22}" + "".join(f"{r:>10}" for r in regions))
        per = {r: _stats([float(getattr(le.metrics, key)) for le in lesions if le.region == r]) for r in regions}
        for s in STATS:
            lines.append(f"{s:<22}" + "".join(f"{per[r][s]:>10.{digits}f}" for r in regions))
    lines.append("")
    for key, title in (("num_tp", "lesions found (TP)"), ("num_fn", "lesions missed (FN)"),
                       ("num_fp", "false positives (FP)")):
        lines.append(f"{title:<22}" + "".join(
            f"{sum(getattr(le.metrics, key) for le in lesions if le.region == r):>10d}" for r in regions))
    return "\n".join(lines)
