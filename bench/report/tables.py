"""The numbers of the report: Table 1, Table 2, tests, intervals and factorial effects, as plain data.

:func:`analyse` turns a :class:`ReportData` (the DataFrames that ``bench.store.queries`` returns) into an
:class:`Analysis`; the renderers (LaTeX, Markdown, CSV, HTML, plots) only format what it holds, so every
output shows the same numbers.

Conventions (also stated in the captions):

- Table 1 cell = mean over the test cases within each replicate (fold x seed), then the mean of those
  replicate means; ``±`` is the sample standard deviation (ddof=1) of the replicate means, shown when a
  configuration has two or more replicates.
- Table 2, bootstrap intervals and tests use one value per case: the case's mean over replicates.
- Tests: two-sided paired Wilcoxon signed-rank per case, Holm-corrected within each column and each
  comparison family (against the baseline; against the previous row of a ladder). They see test-case
  sampling only and are shown as p-value tables.
- Table 1 marks come from a different test: the difference of the two configurations' means with the
  standard error of :func:`bench.analysis.effects.effect` (test cases + run-to-run variance), decided per row,
  Holm-corrected within each column and family. A row is marked only when it and the row it is compared with
  each have two or more runs (fold x seed).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd

from bench.analysis import tests as stats
from bench.analysis.marks import difference_p, run_case_matrices
from bench.design import traits
from bench.errors import StoreError
from bench.report.model import (  # noqa: F401 - the data model, re-exported here
    HD95_PENALTY,
    METRICS,
    REGIONS,
    TABLE2_STATS,
    Analysis,
    ReportData,
    higher_is_better,
    metric_name,
)

__all__ = [
    "REGIONS",
    "METRICS",
    "metric_name",
    "ReportData",
    "Analysis",
    "analyse",
    "TABLE2_STATS",
]

def _find_label(labels: list[str], wanted: str, option: str, experiment: str) -> int:
    if wanted in labels:
        return labels.index(wanted)
    raise StoreError(
        f"{option} {wanted!r} is not a configuration of experiment {experiment!r}; known labels: "
        + ", ".join(labels)
    )


def _toggles(value: Any) -> dict[str, int]:
    if isinstance(value, dict):
        return {str(k): int(bool(v)) for k, v in value.items()}
    if isinstance(value, str) and value.strip().startswith("{"):
        import json

        return _toggles(json.loads(value))
    return {}


def _nan_group_mean(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """NaN-skipping mean of the columns of ``values`` (rows x keys) within each group of keys."""
    g = np.zeros((len(groups), n_groups))
    g[np.arange(len(groups)), groups] = 1.0
    ok = ~np.isnan(values)
    counts = ok.astype(float) @ g
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(ok, values, 0.0) @ g / counts
    out[counts == 0] = np.nan
    return out


def analyse(
    data: ReportData,
    *,
    baseline: str | None = None,
    config: str | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    alpha: float = 0.05,
) -> Analysis:
    """Compute every number of the report.

    ``baseline``: the label every row is tested against (default: the experiment's recorded baseline, else the
    first configuration). ``config``: the configuration of Table 2 (default: the best by the objective, the
    mean Dice over ET, WT and TC). Unknown labels raise :class:`StoreError` listing the known ones.
    """
    conf = data.configurations.sort_values("position", kind="mergesort").reset_index(drop=True)
    refused: list[str] = []
    if "refused" in conf:
        mask = conf["refused"].notna() & (conf["refused"].astype(str) != "")
        refused = [f"{lab} ({why})" for lab, why in zip(conf.loc[mask, "label"], conf.loc[mask, "refused"])]
        conf = conf[~mask].reset_index(drop=True)
    if conf.empty:
        raise StoreError(f"experiment {data.experiment!r} has no configurations yet; run it first (bench run)")
    labels = [str(x) for x in conf["label"]]
    conf_ids = list(conf["configuration_id"])
    n_conf = len(labels)
    cm = data.case_metrics
    if cm is None or cm.empty:
        raise StoreError(
            f"experiment {data.experiment!r} has no per-case metrics yet (no finished cell); "
            f"configurations: {', '.join(labels)}"
        )
    baseline_label = baseline or data.record.get("baseline")
    if baseline:
        base_idx = _find_label(labels, baseline, "--baseline", data.experiment)
    elif baseline_label and str(baseline_label) in labels:
        base_idx = labels.index(str(baseline_label))
    else:
        base_idx = 0
    t2_idx = _find_label(labels, config, "--config", data.experiment) if config else -1

    conf_pos = {cid: i for i, cid in enumerate(conf_ids)}
    cm = cm[cm["configuration_id"].isin(conf_pos) & cm["region"].isin(REGIONS)]
    ci_codes = cm["configuration_id"].map(conf_pos).to_numpy(dtype=int)
    case_codes_rows, case_ids_arr = pd.factorize(cm["case_id"].astype(str), sort=True)
    fold_codes, folds_u = pd.factorize(cm["fold"])
    seed_codes, seeds_u = pd.factorize(cm["seed"])
    n_f, n_s = max(len(folds_u), 1), max(len(seeds_u), 1)
    rep_rows = fold_codes.astype(np.int64) * n_s + seed_codes
    combined = case_codes_rows.astype(np.int64) * (n_f * n_s) + rep_rows
    key_values, key_codes = np.unique(combined, return_inverse=True)
    n_keys = len(key_values)
    case_codes = (key_values // (n_f * n_s)).astype(int)
    case_ids = [str(c) for c in case_ids_arr]
    n_cases_all = len(case_ids)
    rep_values, rep_codes = np.unique(key_values % (n_f * n_s), return_inverse=True)
    n_reps = len(rep_values)
    region = cm["region"].to_numpy()

    mean = np.full((n_conf, len(METRICS)), np.nan)
    sd = np.full_like(mean, np.nan)
    ci_lo = np.full_like(mean, np.nan)
    ci_hi = np.full_like(mean, np.nan)
    p_b_raw = np.full_like(mean, np.nan)
    p_p_raw = np.full_like(mean, np.nan)
    n_replicates = np.zeros(n_conf, dtype=int)
    n_cases = np.zeros(n_conf, dtype=int)
    weights = stats.bootstrap_weights(n_cases_all, n_boot, seed) if n_cases_all else np.zeros((n_boot, 0))
    case_values: dict[tuple[str, str], np.ndarray] = {}
    key_mats: dict[tuple[str, str], np.ndarray] = {}

    for j, m in enumerate(METRICS):
        sel = region == m[1]
        k = np.full((n_conf, n_keys), np.nan)
        k[ci_codes[sel], key_codes[sel]] = cm[m[0]].to_numpy(dtype=float)[sel]
        key_mats[m] = k
        reps = _nan_group_mean(k, rep_codes, n_reps)  # (n_conf, n_reps)
        n_ok = (~np.isnan(reps)).sum(axis=1)
        with np.errstate(invalid="ignore"):
            mean[:, j] = np.where(n_ok > 0, np.nansum(reps, axis=1) / np.maximum(n_ok, 1), np.nan)
            centred = np.where(np.isnan(reps), 0.0, reps - mean[:, j : j + 1])
            sd[:, j] = np.where(n_ok > 1, np.sqrt((centred**2).sum(axis=1) / np.maximum(n_ok - 1, 1)), np.nan)
        n_replicates = np.maximum(n_replicates, n_ok)
        x = _nan_group_mean(k, case_codes, n_cases_all)  # (n_conf, n_cases)
        case_values[m] = x
        n_cases = np.maximum(n_cases, (~np.isnan(x)).sum(axis=1))
        if n_cases_all:
            ci_lo[:, j], ci_hi[:, j] = stats.bootstrap_means(x, weights, level)

    has = n_cases > 0
    if not has[base_idx]:
        with_data = [labels[i] for i in range(n_conf) if has[i]]
        raise StoreError(
            f"baseline {labels[base_idx]!r} of experiment {data.experiment!r} has no finished cell; "
            f"choose one with --baseline: {', '.join(with_data)}"
        )

    # Paired tests: every row with data against the baseline, and (ladder) against the previous row.
    others = np.array([i for i in range(n_conf) if has[i] and i != base_idx], dtype=int)
    data_rows = [i for i in range(n_conf) if has[i]]
    prev_pairs = np.array([(b, a) for a, b in itertools.pairwise(data_rows)], dtype=int).reshape(-1, 2)
    for j, m in enumerate(METRICS):
        k = key_mats[m]
        if len(others):
            a, b = stats.paired_case_means(k, case_codes, n_cases_all, others, np.full(len(others), base_idx))
            p_b_raw[others, j] = stats.wilcoxon_rows(a - b)
        if traits(data.design).stepwise and len(prev_pairs):
            a, b = stats.paired_case_means(k, case_codes, n_cases_all, prev_pairs[:, 0], prev_pairs[:, 1])
            p_p_raw[prev_pairs[:, 0], j] = stats.wilcoxon_rows(a - b)
    p_b = np.column_stack([stats.holm(p_b_raw[:, j]) for j in range(len(METRICS))])
    p_p = np.column_stack([stats.holm(p_p_raw[:, j]) for j in range(len(METRICS))])

    dice_cols = [j for j, m in enumerate(METRICS) if m[0] == "dice"]
    objective = mean[:, dice_cols].mean(axis=1)
    best_idx = int(np.nanargmax(np.where(has, objective, -np.inf)))
    if t2_idx < 0:
        t2_idx = best_idx
    elif not has[t2_idx]:
        with_data = [labels[i] for i in range(n_conf) if has[i]]
        raise StoreError(
            f"--config {labels[t2_idx]!r} has no finished cell in experiment {data.experiment!r}; "
            f"configurations with results: {', '.join(with_data)}"
        )
    table2 = _table2({m: case_values[m][t2_idx] for m in METRICS})

    pen = cm["penalty"].fillna(False).astype(bool).to_numpy()
    penalties = {r: int((pen & (region == r)).sum()) for r in REGIONS}
    penalties_by_config = np.bincount(ci_codes[pen], minlength=n_conf)

    toggles = [_toggles(v) for v in conf["toggles"]] if "toggles" in conf else [{} for _ in labels]
    analysis = Analysis(
        experiment=data.experiment,
        design=data.design,
        labels=labels,
        configuration_ids=conf_ids,
        toggles=toggles,
        mean=mean,
        sd=sd,
        ci_lo=ci_lo,
        ci_hi=ci_hi,
        p_baseline_raw=p_b_raw,
        p_baseline=p_b,
        p_previous_raw=p_p_raw,
        p_previous=p_p,
        n_replicates=n_replicates,
        n_cases=n_cases,
        objective=objective,
        baseline_index=base_idx,
        best_index=best_idx,
        table2_index=t2_idx,
        table2=table2,
        penalties=penalties,
        penalties_by_config=penalties_by_config,
        n_evaluations=int(len(cm)),
        case_values=case_values,
        case_ids=case_ids,
        alpha=alpha,
        level=level,
        n_boot=n_boot,
        seed=seed,
    )
    analysis.refused = refused
    # Table 1 marks: a test with run-to-run variance, per row (module docstring).
    mats = {m: run_case_matrices(key_mats[m], case_codes, rep_codes, n_cases_all, n_reps) for m in METRICS}
    analysis.p_marks_baseline = _marks(mats, [(int(i), base_idx) for i in others], mean.shape)
    if analysis.is_ladder:
        analysis.p_marks_previous = _marks(mats, [(int(a), int(b)) for a, b in prev_pairs], mean.shape)
    if not analysis.intervals_reachable:  # shown as a sentence saying why (report.text.interval_note)
        analysis.ci_lo[:] = np.nan
        analysis.ci_hi[:] = np.nan
    from bench.report.factorial import design_effects

    design_effects(analysis, data)
    return analysis


def _marks(mats: dict[tuple[str, str], list[np.ndarray]], pairs: list[tuple[int, int]],
           shape: tuple[int, ...]) -> np.ndarray:
    """Holm-adjusted p (within each column) of each ``(row, compared with)`` pair's difference."""
    out = np.full(shape, np.nan)
    for j, m in enumerate(METRICS):
        for i, b in pairs:
            out[i, j] = difference_p(mats[m][i], mats[m][b])
        out[:, j] = stats.holm(out[:, j])
    return out


def _table2(values: dict[tuple[str, str], np.ndarray]) -> pd.DataFrame:
    cols: dict[str, list[float]] = {}
    for m, v in values.items():
        v = v[~np.isnan(v)]
        if len(v) == 0:
            cols[metric_name(m)] = [math.nan] * len(TABLE2_STATS)
            continue
        q25, med, q75 = np.percentile(v, [25, 50, 75])
        sdv = float(np.std(v, ddof=1)) if len(v) > 1 else math.nan
        cols[metric_name(m)] = [float(v.mean()), sdv, float(med), float(q25), float(q75)]
    return pd.DataFrame(cols, index=list(TABLE2_STATS))
