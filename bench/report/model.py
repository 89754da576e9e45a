"""The report's data model: what :func:`bench.report.tables.analyse` reads (:class:`ReportData`, the DataFrames
``bench.store.queries`` returns) and what it produces (:class:`Analysis`), with the metric columns in the
paper's order. The renderers and :mod:`bench.report.factorial` read these; only :mod:`bench.report.tables`
computes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench.design import traits

__all__ = ["REGIONS", "METRICS", "TABLE2_STATS", "HD95_PENALTY", "metric_name", "higher_is_better", "ReportData",
           "Analysis"]

REGIONS: tuple[str, ...] = ("ET", "WT", "TC")  # the paper's column order
METRICS: tuple[tuple[str, str], ...] = tuple((m, r) for m in ("dice", "hd95") for r in REGIONS)
TABLE2_STATS: tuple[str, ...] = ("Mean", "StdDev", "Median", "25quantile", "75quantile")
HD95_PENALTY = 373.13


def metric_name(metric: tuple[str, str]) -> str:
    """``("dice", "ET")`` -> ``"Dice ET"``."""
    return f"{'Dice' if metric[0] == 'dice' else 'HD95'} {metric[1]}"


def higher_is_better(metric: tuple[str, str]) -> bool:
    return metric[0] == "dice"


@dataclass
class ReportData:
    """Everything a report is built from: the query DataFrames of one experiment and its record."""

    experiment: str
    configurations: pd.DataFrame
    cells: pd.DataFrame
    case_metrics: pd.DataFrame
    curves: pd.DataFrame
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def design(self) -> str:
        return str(self.record.get("design") or "list")


@dataclass
class Analysis:
    """All numbers of one report. Arrays are ``(n_configurations, len(METRICS))`` unless stated."""

    experiment: str
    design: str
    labels: list[str]
    configuration_ids: list[Any]
    toggles: list[dict[str, int]]
    mean: np.ndarray
    sd: np.ndarray
    ci_lo: np.ndarray
    ci_hi: np.ndarray
    p_baseline_raw: np.ndarray
    p_baseline: np.ndarray
    p_previous_raw: np.ndarray
    p_previous: np.ndarray
    n_replicates: np.ndarray  # (n_configurations,)
    n_cases: np.ndarray  # (n_configurations,)
    objective: np.ndarray  # (n_configurations,) mean Dice over ET/WT/TC
    baseline_index: int
    best_index: int
    table2_index: int
    table2: pd.DataFrame  # index TABLE2_STATS, columns metric names
    penalties: dict[str, int]  # region -> number of case evaluations that took the penalty
    penalties_by_config: np.ndarray  # (n_configurations,)
    n_evaluations: int  # case x region x replicate evaluations over all configurations
    case_values: dict[tuple[str, str], np.ndarray]  # metric -> (n_configurations, n_cases) per-case means
    case_ids: list[str]
    #: bench.analysis.factorial.factorial_effects columns: effect, kind, aliased, metric, estimate, ci_lo,
    #: ci_hi (t-interval), boot_lo/boot_hi, p/p_holm, run_measured, significant, covers...
    effects: pd.DataFrame | None = None
    design_info: dict[str, Any] | None = None  # a fractional design's describe(): generators, aliases
    effects_note: str | None = None
    importances: pd.DataFrame | None = None  # columns: parameter, importance
    importances_note: str | None = None
    #: set when the tables show the BraTS 2023 lesion-wise Dice / HD95 instead of the whole-image values
    metric_note: str | None = None
    #: Holm-adjusted p of the marks (test cases + runs, see the module docstring); NaN where a side has one run
    p_marks_baseline: np.ndarray | None = None
    p_marks_previous: np.ndarray | None = None
    refused: list[str] = field(default_factory=list)  # combinations the trick registry refused (not run)
    alpha: float = 0.05
    level: float = 0.95
    n_boot: int = 2000
    seed: int = 0

    @property
    def min_cases(self) -> int:
        """The fewest test cases any configuration with results has (what the paired tests run on)."""
        n = [int(c) for c in self.n_cases if c > 0]
        return min(n) if n else 0

    @property
    def wilcoxon_reachable(self) -> bool:
        """Whether a signed-rank test on these cases can reach p < alpha at all (2/2^n < alpha)."""
        from bench.analysis.tests import wilcoxon_can_reach

        return wilcoxon_can_reach(self.min_cases, self.alpha)

    @property
    def intervals_reachable(self) -> bool:
        """Whether a case-bootstrap interval on these cases can reach its level: it never leaves the range of
        the case values, and that range misses the median with probability 2/2^n (the signed-rank rule)."""
        from bench.analysis.tests import wilcoxon_can_reach

        return wilcoxon_can_reach(self.min_cases, 1.0 - self.level)

    @property
    def is_ladder(self) -> bool:
        return traits(self.design).stepwise

    def has_data(self, i: int) -> bool:
        return bool(self.n_cases[i] > 0)

    def best_mask(self, decimals: int = 3) -> np.ndarray:
        """Where the best value of each column is, compared on the displayed (rounded) values."""
        out = np.zeros(self.mean.shape, dtype=bool)
        for j, m in enumerate(METRICS):
            col = np.round(self.mean[:, j], decimals)
            if np.all(np.isnan(col)):
                continue
            best = np.nanmax(col) if higher_is_better(m) else np.nanmin(col)
            out[:, j] = col == best
        return out

    @property
    def runs_measured(self) -> bool:
        """Whether some configuration has two or more runs (fold x seed), so run-to-run variance is measured."""
        return bool(np.max(self.n_replicates, initial=0) > 1)

    @property
    def single_run_rows(self) -> list[str]:
        """Labels of the rows with results from one run only (never marked in Table 1)."""
        return [lab for lab, n, c in zip(self.labels, self.n_replicates, self.n_cases) if c > 0 and n == 1]

    def significant(self, kind: str) -> np.ndarray:
        """Table 1 marks, per row: the Holm-adjusted p of a test that includes run-to-run variance (test cases +
        runs, :func:`bench.analysis.effects.effect`) is below alpha. A row where it or the row it is compared
        with has one run has no such p (NaN) and is never marked."""
        p = self.p_marks_baseline if kind == "baseline" else self.p_marks_previous
        if p is None:
            return np.zeros(self.mean.shape, dtype=bool)
        with np.errstate(invalid="ignore"):
            return np.nan_to_num(p, nan=1.0) < self.alpha

    def table1_frame(self) -> pd.DataFrame:
        """Table 1 with every number behind it (one row per configuration), for CSV and programs."""
        rows: list[dict[str, Any]] = []
        for i, label in enumerate(self.labels):
            row: dict[str, Any] = {
                "label": label,
                "replicates": int(self.n_replicates[i]),
                "cases": int(self.n_cases[i]),
                "objective": self.objective[i],
                "penalties": int(self.penalties_by_config[i]),
            }
            for j, m in enumerate(METRICS):
                key = f"{m[0]}_{m[1]}"
                row[key] = self.mean[i, j]
                row[f"{key}_sd"] = self.sd[i, j]
                row[f"{key}_ci_lo"] = self.ci_lo[i, j]
                row[f"{key}_ci_hi"] = self.ci_hi[i, j]
                row[f"{key}_p_baseline"] = self.p_baseline_raw[i, j]
                row[f"{key}_p_baseline_holm"] = self.p_baseline[i, j]
                if self.p_marks_baseline is not None:
                    row[f"{key}_p_mark_baseline_holm"] = self.p_marks_baseline[i, j]
                if self.is_ladder:
                    row[f"{key}_p_previous"] = self.p_previous_raw[i, j]
                    row[f"{key}_p_previous_holm"] = self.p_previous[i, j]
                    if self.p_marks_previous is not None:
                        row[f"{key}_p_mark_previous_holm"] = self.p_marks_previous[i, j]
            rows.append(row)
        return pd.DataFrame(rows)

    @property
    def penalty_total(self) -> int:
        return int(sum(self.penalties.values()))
