"""Optuna search trials as planned configurations (the sampling itself is :mod:`bench.design.optuna`)."""

from __future__ import annotations

from typing import Any

from bench.design.optuna import row_from_trial
from bench.runner.plan import PlannedConfiguration, configuration_for
from bench.runner.spec import Spec

__all__ = ["configuration_from_trial"]


def configuration_from_trial(spec: Spec, trial: Any) -> PlannedConfiguration:
    """The configuration of a trial's suggestions; a combination the registry refuses comes back refused."""
    row = row_from_trial(spec, trial)
    return configuration_for(spec, row.label, trial.number, list(row.tricks), row.params)
