"""Folder evaluation by a year's rules (``bench evaluate --rules 2024|2025``): read each prediction and its
reference in the year's label convention, refuse foreign labels and differing geometry, score every case
(a reference without a prediction as the official code scores it), write the official columns and the
summary rows the official tooling appends.

Label conventions: a BraTS 2023+ layout is read as stored (2024/2025 numbering: GLI 1 NETC, 2 SNFH, 3 ET,
4 RC; PED, MEN-RT per their configs). BraTS 2018-2021 and MSD datasets are converted as everywhere in bench
(to BraTS 2019 labels, then 1 NETC, 2 SNFH, 3 ET), for the cohorts that use that numbering.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.atomic import atomic_write_text
from bench.data.readers import CaseFiles, detect_format, label_values, labels_to_brats, list_cases, load_nifti
from bench.errors import DataError
from bench.evaluation.evaluate import Matching, default_jobs, match_predictions
from bench.evaluation.rules import Rules, get_rules

__all__ = ["RulesResult", "evaluate_folder_rules", "read_pair_rules", "write_rules_csv", "format_rules_summary"]

Row = dict[str, Any]
_GEOMETRY_TOL = 1e-4


@dataclass
class RulesResult:
    rules: Rules
    cohort: str
    rows: list[Row]
    matching: Matching
    format: str
    missing: list[str] = field(default_factory=list)  # cases scored without a prediction
    summary: list[Row] = field(default_factory=list)


def _as_labels(path: Path, raw: np.ndarray, allowed: Sequence[int], what: str, hint: str) -> np.ndarray:
    if raw.dtype.kind == "f":
        rounded = np.rint(raw)
        if not np.all(np.isfinite(raw)) or not np.array_equal(rounded, raw):
            raise DataError(f"{path}: {what} has non-integer values; expected labels {list(allowed)}")
        raw = rounded.astype(np.int64)
    elif raw.dtype.kind not in "biu":
        raise DataError(f"{path}: {what} has data type {raw.dtype}; expected integer labels")
    bad = np.setdiff1d(label_values(raw), allowed)
    if bad.size:
        raise DataError(f"{path}: label values {bad.tolist()} are outside the {hint} {list(allowed)}")
    return np.asarray(raw, dtype=np.uint8)


def _read(path: Path, fmt: str, rules: Rules, cohort: str, what: str) -> tuple[np.ndarray, np.ndarray, tuple]:
    raw, affine, zooms = load_nifti(path)
    allowed = rules.labels(cohort)
    if fmt == "brats2023":
        labels = _as_labels(path, raw, allowed, what, f"BraTS {rules.year} {cohort} labels")
    else:
        if not rules.numbering_is_glioma(cohort):
            raise DataError(f"{path}: the {cohort} cohort needs a BraTS 2023+ dataset layout; {fmt} labels "
                            "cannot be converted to it")
        labels = rules.from_brats2019(labels_to_brats(path, raw, fmt, what=what))
        if what == "prediction":
            labels = _as_labels(path, labels, allowed, what, f"BraTS {rules.year} {cohort} labels")
    return labels, affine, zooms


def read_pair_rules(pred_path: Path | None, cf: CaseFiles, rules: Rules, cohort: str
                    ) -> tuple[np.ndarray | None, np.ndarray, tuple[float, ...]]:
    """(prediction or None, reference, spacing) in the year's labels; DataError on labels or geometry."""
    assert cf.seg is not None
    gt, g_aff, zooms = _read(cf.seg, cf.format, rules, cohort, "reference")
    if pred_path is None:
        return None, gt, zooms
    pred, p_aff, _ = _read(pred_path, cf.format, rules, cohort, "prediction")
    if pred.shape != gt.shape or not np.allclose(p_aff, g_aff, atol=_GEOMETRY_TOL):
        raise DataError(
            f"{pred_path}: prediction geometry (shape {tuple(pred.shape)}) differs from the reference "
            f"{Path(str(cf.seg)).name} (shape {tuple(gt.shape)}, its affine); predictions must be on the "
            "reference grid"
        )
    return pred, gt, zooms


def _job(job: tuple[Path | None, CaseFiles, str, str]) -> list[Row]:
    pred_path, cf, year, cohort = job
    rules = get_rules(year)
    pred, gt, spacing = read_pair_rules(pred_path, cf, rules, cohort)
    if pred is None:
        return rules.missing(cf.case_id, gt, spacing, cohort)
    return rules.score(pred, gt, spacing, cohort, cf.case_id)


def evaluate_folder_rules(
    pred_dir: Path | str, gt_dir: Path | str, rules: str | Rules, cohort: str | None = None, *,
    fmt: str | None = None, jobs: int | None = None, progress: bool = True,
    on_matched: Callable[[Matching], None] | None = None,
) -> RulesResult:
    """Score every prediction of ``pred_dir`` against ``gt_dir`` by ``rules`` (and every labelled case without a
    prediction, as the official code does). Every pair is read and checked before anything is returned."""
    r = get_rules(rules)
    c = r.cohort(cohort)
    matching = match_predictions(pred_dir, gt_dir, fmt)
    fmt = fmt or detect_format(gt_dir)
    if on_matched is not None:
        on_matched(matching)
    cases = {cf.case_id: cf for cf in list_cases(gt_dir, fmt) if cf.seg is not None}
    work: list[tuple[Path | None, CaseFiles, str, str]] = [(p, cf, r.year, c) for p, cf in matching.pairs]
    work += [(None, cases[cid], r.year, c) for cid in matching.cases_without_prediction]
    jobs = default_jobs() if jobs is None else int(jobs)
    if jobs < 1:
        raise DataError(f"--jobs {jobs}: expected a whole number >= 1")
    from bench.bars import progress_bar

    bar = progress_bar(total=len(work), desc="evaluating", unit="case", disable=not progress)
    per_case: list[list[Row]] = []
    try:
        if jobs == 1 or len(work) == 1:
            for job in work:
                per_case.append(_job(job))
                bar.update(1)
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
            with ProcessPoolExecutor(max_workers=min(jobs, len(work)), mp_context=ctx) as pool:
                for rows in pool.map(_job, work):
                    per_case.append(rows)
                    bar.update(1)
    finally:
        bar.close()
    rows = [row for case_rows in sorted(per_case, key=lambda rs: str(rs[0][r.id_column])) for row in case_rows]
    return RulesResult(r, c, rows, matching, fmt, list(matching.cases_without_prediction), r.summary(rows, c))


def _cell(v: Any) -> Any:
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        return "inf" if v == math.inf else ("-inf" if v == -math.inf else repr(v))
    return v


def write_rules_csv(result: RulesResult, path: Path | str) -> Path:
    """The per-case rows then the summary rows, in the official columns (empty = NaN), written atomically."""
    cols = result.rules.columns(result.cohort)
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(cols)
    for row in [*result.rows, *result.summary]:
        writer.writerow([_cell(row.get(c, "")) for c in cols])
    return atomic_write_text(path, buf.getvalue())


def format_rules_summary(result: RulesResult) -> str:
    """A short text summary: the definition, the counts, the mean row per region of the main values."""
    r, c = result.rules, result.cohort
    n = len({str(row[r.id_column]) for row in result.rows})
    lines = [f"{n} case{'s' if n != 1 else ''}; {r.describe(c)}"]
    if result.missing:
        lines.append(f"{len(result.missing)} case(s) without a prediction scored as the official code scores "
                     f"them: {', '.join(result.missing[:5])}{', ...' if len(result.missing) > 5 else ''}")
    mean = [row for row in result.summary if row[r.id_column] == "mean"]
    if r.layout == "wide" and mean:
        keys = ("lesionwise_dsc_mean", "lesionwise_hd95_mean", "global_dsc", "global_hd95", "all_instance_f1")
        lines.append("")
        lines.append(f"{'mean':<22}" + "".join(f"{reg:>10}" for reg in r.regions(c)))
        for k in keys:
            vals = [float(mean[0][f"{k}_{reg}"]) for reg in r.regions(c)]
            lines.append(f"{k:<22}" + "".join(f"{v:>10.4f}" for v in vals))
    elif mean:
        metrics = [k for k in r.columns(c)[2:] if k not in ("region", "Labels")]
        lines.append("")
        lines.append(f"{'mean':<24}" + "".join(f"{row.get('Labels', row.get('region')):>10}" for row in mean))
        for k in metrics:
            lines.append(f"{k:<24}" + "".join(f"{float(row[k]):>10.4f}" for row in mean))
    return "\n".join(lines)
