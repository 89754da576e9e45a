"""From per-case result rows (a DataFrame) to balanced ``(runs, cases)`` matrices, one per configuration.

A run is one (fold, seed) replicate of a configuration. The layout keeps the test cases that every run of
every selected configuration was evaluated on (so contrasts stay paired and the ANOVA balanced), and says how
many it dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Layout", "layouts"]


@dataclass(frozen=True)
class Layout:
    """Per configuration key: its ``(runs, cases)`` matrix; ``cases`` the shared case ids (column order)."""

    keys: list[Any]
    matrices: list[np.ndarray]
    cases: list[str]
    dropped_cases: int

    def runs(self) -> list[int]:
        return [m.shape[0] for m in self.matrices]


def layouts(metrics: Any, value: str, *, key: str = "configuration_id", region: str | None = None,
            keys: Sequence[Any] | None = None) -> Layout:
    """Balanced matrices of column ``value`` from a :func:`bench.store.queries.case_metrics`-like DataFrame.

    ``region`` selects one region (``"ET"``...); ``None`` averages the rows of each case over the regions
    present (the mean Dice over ET, WT, TC when those are the rows). ``keys``: which configurations, in order
    (default: all, sorted).
    """
    df = metrics
    if region is not None:
        df = df[df["region"] == region]
    per = (df.groupby([key, "fold", "seed", "case_id"], sort=True)[value].mean().reset_index())
    wanted = list(keys) if keys is not None else sorted(per[key].unique().tolist())
    per = per[per[key].isin(wanted)]
    if per.empty:
        return Layout(wanted, [np.zeros((0, 0)) for _ in wanted], [], 0)
    runs_of = per.groupby([key, "fold", "seed"]).size().reset_index()[[key, "fold", "seed"]]
    n_runs_total = len(runs_of)
    counts = per.groupby("case_id").size()
    all_cases = sorted(counts.index.astype(str).tolist())
    shared = sorted(counts[counts == n_runs_total].index.astype(str).tolist())
    per = per[per["case_id"].astype(str).isin(shared)]
    mats = []
    for k in wanted:
        sub = per[per[key] == k]
        if sub.empty:
            mats.append(np.zeros((0, len(shared))))
            continue
        table = sub.pivot_table(index=["fold", "seed"], columns="case_id", values=value, aggfunc="mean")
        table.columns = table.columns.astype(str)
        mats.append(table.reindex(columns=shared).to_numpy(dtype=float))
    return Layout(wanted, mats, shared, len(all_cases) - len(shared))
