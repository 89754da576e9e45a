"""Optuna search designs: a trial's suggestions become a configuration (toggles + conditional parameters)."""

from __future__ import annotations

from typing import Any

from bench.runner.plan import PlannedConfiguration, configuration_for
from bench.runner.spec import Spec

__all__ = ["configuration_from_trial", "suggest"]


def suggest(trial: Any, name: str, spec: tuple[Any, ...]) -> Any:
    """Ask ``trial`` for one value of a trick parameter's ``metadata["optuna"]`` spec."""
    kind = spec[0]
    opts = dict(spec[3]) if len(spec) > 3 else {}
    if kind == "float":
        return trial.suggest_float(name, float(spec[1]), float(spec[2]), log=bool(opts.get("log", False)),
                                   step=opts.get("step"))
    if kind == "int":
        return trial.suggest_int(name, int(spec[1]), int(spec[2]), log=bool(opts.get("log", False)),
                                 step=int(opts.get("step", 1)))
    choices = list(spec[1])
    # Optuna stores categorical choices as JSON-able scalars; tuples (patch pools) go through their index.
    if any(isinstance(c, (tuple, list)) for c in choices):
        return choices[trial.suggest_categorical(name + ".index", list(range(len(choices))))]
    return trial.suggest_categorical(name, choices)


def configuration_from_trial(spec: Spec, trial: Any) -> PlannedConfiguration:
    """TPE over the factors' 0/1 toggles and, conditionally, the parameters of the enabled tricks (parameters
    the spec sets explicitly stay fixed). A combination the registry refuses comes back refused."""
    from tricks import get, optuna_space

    enabled = [f for f in spec.factors if trial.suggest_categorical(f"trick.{f}", [0, 1])]
    tricks = list(spec.fixed) + enabled
    params: dict[str, dict[str, Any]] = {k: dict(v) for k, v in spec.params.items() if k in tricks}
    if spec.optuna.search_params:
        for name in tricks:
            for pname, pspec in optuna_space(get(name).Params).items():
                if pname in spec.params.get(name, {}):
                    continue
                params.setdefault(name, {})[pname] = suggest(trial, f"{name}.{pname}", pspec)
    label = f"{spec.row_label(enabled)} #{trial.number}"
    return configuration_for(spec, label, trial.number, tricks, params)
