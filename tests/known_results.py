"""Fill a results database with known numbers through the ORM (for tests and benchmarks/bench_report.py).

``fill_results(url, name, design, rows, ...)`` writes one experiment whose per-case metrics come from a
function of (configuration index, fold, seed, case index, region), so a test knows every number the report
should print.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.report.tables import HD95_PENALTY

__all__ = ["DemoRow", "fill_results", "grid_rows", "ladder_rows"]

REGIONS_DB = ("ET", "TC", "WT")

# (config index, fold, seed, case index, region) -> (dice, hd95) ; hd95 == 373.13 marks a penalty
MetricFn = Callable[[int, int, int, int, str], tuple[float, float]]


@dataclass
class DemoRow:
    label: str
    toggles: dict[str, int] = field(default_factory=dict)
    refused: str | None = None


def ladder_rows(names: Sequence[str]) -> list[DemoRow]:
    """BL, BL+a, BL+a+b, ... with cumulative toggles."""
    rows = []
    for k in range(len(names) + 1):
        on = names[:k]
        rows.append(DemoRow("+".join(["BL", *on]), {n: int(n in on) for n in names}))
    return rows


def grid_rows(names: Sequence[str]) -> list[DemoRow]:
    """Every combination of ``names`` (2^k rows), the all-off row first, labelled BL+...+..."""
    rows = []
    for combo in itertools.product((0, 1), repeat=len(names)):
        on = [n for n, v in zip(names, combo) if v]
        rows.append(DemoRow("+".join(["BL", *on]), dict(zip(names, combo))))
    rows.sort(key=lambda r: (sum(r.toggles.values()), [-v for v in r.toggles.values()]))
    return rows


def fill_results(
    url: str,
    name: str,
    design: str,
    rows: Sequence[DemoRow],
    metric: MetricFn,
    *,
    folds: Sequence[int] = (0,),
    seeds: Sequence[int] = (0,),
    cases: int = 5,
    baseline: str | None = "BL",
    device: Callable[[int, int, int], str] | str = "cpu",
    train_seconds: Callable[[int, int, int], float] | float = 60.0,
    curves: bool = True,
    spec: str | None = None,
    factors: Sequence[str] | None = None,
    mlflow_parent_run_id: str | None = None,
) -> None:
    """Write one experiment with every cell done and the per-case metrics ``metric`` gives."""
    from sqlalchemy import insert

    from bench.store import open_store
    from bench.store.models import CaseMetric, Cell, Configuration, CurvePoint, Experiment, Training

    factors = list(factors if factors is not None else (rows[0].toggles if rows else {}))
    spec = spec or f'name = "{name}"\ndesign = "{design}"\nfactors = {factors!r}\n'.replace("'", '"')
    store = open_store(url)
    with store.session() as s:
        e = Experiment(name=name, design=design, spec_toml=spec, spec_hash=hashlib.sha256(spec.encode()).hexdigest(),
                       factors=factors, baseline_label=baseline, mlflow_parent_run_id=mlflow_parent_run_id)
        s.add(e)
        s.flush()
        metric_rows: list[dict[str, Any]] = []
        curve_rows: list[dict[str, Any]] = []
        for ci, row in enumerate(rows):
            c = Configuration(experiment_id=e.id, label=row.label, position=ci, config_hash=f"h{ci}",
                              tricks=[t for t, v in row.toggles.items() if v], toggles=dict(row.toggles), params={},
                              refused=row.refused)
            s.add(c)
            s.flush()
            for fold in folds:
                for seed in seeds:
                    dev = device(ci, fold, seed) if callable(device) else device
                    secs = train_seconds(ci, fold, seed) if callable(train_seconds) else train_seconds
                    key = f"{name}-{ci}-{fold}-{seed}"
                    state = "skipped" if row.refused else "done"
                    if curves and not row.refused:
                        s.add(Training(key=key, fold=fold, seed=seed, state="done", seconds=secs, device=dev))
                    cell = Cell(experiment_id=e.id, configuration_id=c.id, fold=fold, seed=seed, state=state,
                                device=dev, training_key=key if curves and not row.refused else None,
                                train_seconds=secs, eval_seconds=2.0, git_commit="0123456789abcdef",
                                packages={"torch": "2.13.0", "numpy": "2.4.6"})
                    s.add(cell)
                    s.flush()
                    if row.refused:
                        continue
                    for k in range(cases):
                        for region in REGIONS_DB:
                            d, h = metric(ci, fold, seed, k, region)
                            metric_rows.append(
                                {"cell_id": cell.id, "case_id": f"case{k:03d}", "region": region, "dice": float(d),
                                 "hd95": float(h), "sensitivity": 0.9, "specificity": 0.99,
                                 "penalty": bool(abs(h - HD95_PENALTY) < 1e-9)}
                            )
                    if curves:
                        for ep in range(1, 4):
                            curve_rows.append(
                                {"training_key": key, "epoch": ep, "iteration": 10 * ep, "train_loss": 1.0 / ep + 0.01 * ci,
                                 "lr": 0.01, "val_dice_et": 0.2 * ep + 0.01 * ci, "val_dice_tc": 0.25 * ep,
                                 "val_dice_wt": 0.3 * ep}
                            )
        s.flush()
        if metric_rows:
            s.execute(insert(CaseMetric), metric_rows)
        if curve_rows:
            s.execute(insert(CurvePoint), curve_rows)
