"""What a spec would run and cost, and how many runs a comparison needs: the numbers ``bench plan`` prints.

:func:`plan_summary` counts configurations, cells and trainings and prices them (iterations, and hours at the
median measured speed of this workspace's finished trainings); :func:`power_summary` sizes runs per
configuration from a finished pilot (:mod:`bench.analysis.power`). Nothing here trains or writes a store.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

__all__ = ["measured_speed", "plan_summary", "power_summary", "LADDER_MAX_SEEDS"]

LADDER_MAX_SEEDS = 200  # seeds_for_ladder's search cap (a forward ladder trains every candidate per seed)


def measured_speed(url: str, sqlite_path: Path | None) -> tuple[float, int] | None:
    """Median seconds per iteration over this workspace's finished trainings, and how many."""
    if sqlite_path is not None and not sqlite_path.exists():
        return None
    try:
        from sqlalchemy import select

        from bench.store import open_store
        from bench.store.models import Training

        store = open_store(url)
        with store.session() as s:
            rows = s.execute(select(Training.seconds, Training.iterations).where(Training.state == "done")).all()
    except Exception:  # noqa: BLE001 - no speed known: the estimate falls back to the budget
        return None
    rates = sorted(sec / it for sec, it in rows if sec and it)
    if not rates:
        return None
    return rates[len(rates) // 2], len(rates)


def plan_summary(spec: Any, *, results_url: str | None = None, sqlite_path: Path | None = None) -> dict[str, Any]:
    """Everything ``bench plan`` prints, as one JSON-serialisable dict."""
    from bench.design import design_class, design_for
    from bench.runner.plan import plan, training_plan

    p = plan(spec)
    design = design_for(spec)  # with [replication]: the adaptive wrapper around the spec's design
    keys: set[str] = set()
    for cell in p.cells:
        if not cell.configuration.refused:
            keys.update(k for _, k in training_plan(spec, cell.configuration, cell.fold, cell.seed, "plan",
                                                    spec.data.folds))
    stages: dict[str, int] = {}
    for cell in p.cells:
        stages[cell.stage] = stages.get(cell.stage, 0) + 1
    n_cells, n_trainings = design_class(spec.design).planned_size(spec, len(p.cells), len(keys))
    from bench.runner.workspace import engine_of

    engine, engine_options = engine_of(spec)
    iterations = int(engine.budget_iterations(dict(spec.train)))
    cost: dict[str, Any] = {"iterations_per_training": iterations, "iterations": iterations * n_trainings}
    speed = measured_speed(results_url, sqlite_path) if results_url else None
    if speed is not None:
        cost.update(seconds_per_iteration=speed[0], measured_trainings=speed[1],
                    hours=speed[0] * iterations * n_trainings / 3600.0)
    return {
        "name": spec.name, "design": spec.design, "source": spec.source,
        "engine": {"name": engine.name, **engine_options},
        "factors": list(spec.factors), "fixed": list(spec.fixed), "folds": list(spec.folds),
        "seeds": list(spec.seeds),
        "configurations": [{"label": c.label, "toggles": dict(c.toggles),
                            **({"refused": c.refused} if c.refused else {})} for c in p.configurations],
        "rows": design_class(spec.design).plan_rows(spec, len(p.configurations)),
        "cells": n_cells, "stages": stages, "trainings": n_trainings, "cost": cost,
        "describe": design.describe(),
    }


def power_summary(spec: Any, delta: float, pilot: str | None, url: str, n_rows: int) -> dict[str, Any]:
    """``bench plan --power DELTA [--pilot NAME]``: runs per configuration that detect ``delta`` with 80%
    power (two-sided 5%, the report's t test) for each Dice column, from a finished pilot's variance
    components; the design's own comparisons (main effect, forward ladder) where it has them."""
    from bench.analysis.layout import layouts
    from bench.analysis.power import pilot_components, seeds_for_power
    from bench.design import design_class
    from bench.errors import SpecError, StoreError
    from bench.store import queries

    if not delta > 0 or math.isnan(delta):
        raise SpecError(f"--power {delta:g}: must be a Dice difference > 0, e.g. --power 0.02")
    pilot = pilot or spec.name
    try:
        metrics = queries.case_metrics(url, pilot)
    except StoreError as exc:
        raise StoreError(f"--power needs a finished pilot in this workspace: {exc}") from None
    if metrics.empty:
        raise StoreError(f"--power: pilot {pilot!r} has no finished cell yet; run it first (bench run)")
    out: dict[str, Any] = {"delta": delta, "pilot": pilot, "alpha": 0.05, "power": 0.8, "by_metric": []}
    sel = None
    # selection compares validation Dice: its paired spread, from the pilot's cells
    if design_class(spec.design).confirms:
        from bench.analysis.power import selection_variance

        sel = selection_variance(queries.cells(url, pilot))
        out["selection_var"] = None if sel is None else {"variance": sel[0], "df": sel[1]}
    for region in ("ET", "WT", "TC", None):
        lay = layouts(metrics, "dice", region=region)
        mats = [m for m in lay.matrices if m.shape[0] > 0]
        name = f"Dice {region}" if region else "mean Dice (ET, WT, TC)"
        try:
            comp = pilot_components(mats)
        except ValueError as exc:
            raise StoreError(f"--power: pilot {pilot!r}: {exc}; run it with two or more seeds "
                             f"(seeds = [0, 1, 2])") from None
        entry: dict[str, Any] = {"metric": name, "cases": comp.cases, "s_run": math.sqrt(comp.run),
                                 "s_res": math.sqrt(comp.residual), "s_interaction": math.sqrt(comp.interaction)}
        pair = seeds_for_power(comp, delta, sum_w2=2.0, arms=2)
        entry["seeds_pairwise"] = pair.seeds
        entry["why_pairwise"] = pair.reason
        entry["max_seeds"] = pair.max_seeds
        entry["floor"] = pair.floor
        if design_class(spec.design).two_level and n_rows >= 2:
            main = seeds_for_power(comp, delta, sum_w2=4.0 / n_rows, arms=n_rows)
            entry["seeds_main_effect"] = main.seeds
            entry["why_main_effect"] = main.reason
        if design_class(spec.design).confirms:  # find among the candidates and confirm, 80% for both together
            from bench.analysis.power import ladder_floor, seeds_for_ladder

            entry["seeds_forward_ladder"] = seeds_for_ladder(comp.run, comp.residual, comp.interaction, comp.cases,
                                                             len(spec.factors), delta, folds=len(spec.folds),
                                                             selection_var=None if sel is None else sel[0],
                                                             max_seeds=LADDER_MAX_SEEDS)
            entry["why_forward_ladder"] = (None if entry["seeds_forward_ladder"] is not None else
                                           "floor" if delta <= ladder_floor(comp.interaction, comp.cases) else "cap")
            entry["max_seeds_forward_ladder"] = LADDER_MAX_SEEDS
            entry["selection_sd"] = None if sel is None else math.sqrt(sel[0])
        out["by_metric"].append(entry)
    return out
