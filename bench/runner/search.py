"""Optuna searches in the runner: the study's sampler and pruner (:func:`search_settings`) and trials as planned
configurations (what a trial suggests is :mod:`bench.design.optuna`)."""

from __future__ import annotations

from typing import Any

from bench.design import design_class
from bench.design.optuna import row_from_trial
from bench.runner.plan import PlannedConfiguration, configuration_for
from bench.runner.spec import Spec

__all__ = ["configuration_from_trial", "search_settings"]


def configuration_from_trial(spec: Spec, trial: Any) -> PlannedConfiguration:
    """The configuration of a trial's suggestions; a combination the registry refuses comes back refused."""
    row = row_from_trial(spec, trial)
    return configuration_for(spec, row.label, trial.number, list(row.tricks), row.params)


def search_settings(spec: Spec) -> dict[str, Any]:
    """Sampler and pruner of the queue's study: only a search design has them (grids are only enqueued)."""
    if not design_class(spec.design).searches:
        return {}
    import optuna

    sampler = (optuna.samplers.TPESampler(seed=spec.optuna.seed) if spec.optuna.sampler == "tpe"
               else optuna.samplers.RandomSampler(seed=spec.optuna.seed))
    pruner: Any = {"median": optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0),
                   "hyperband": optuna.pruners.HyperbandPruner(),
                   "none": optuna.pruners.NopPruner()}[spec.optuna.pruner]
    return {"sampler": sampler, "pruner": pruner}
