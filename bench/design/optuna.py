"""``design = "optuna"``: a search. Its configurations are created by the sampler, trial by trial, so the
design registers no cells up front; a trial's suggestions become a row (toggles + conditional parameters).
"""

from __future__ import annotations

from typing import Any

from bench.design import register
from bench.design._base import CellRequest, Design, RowRequest

__all__ = ["OptunaDesign", "row_from_trial", "suggest"]


@register
class OptunaDesign(Design):
    name = "optuna"

    def initial(self) -> list[CellRequest]:
        return []  # the sampler creates configurations as trials start

    def describe(self) -> dict[str, Any]:
        o = self.spec.optuna
        return {"trials": o.trials, "sampler": o.sampler, "pruner": o.pruner, "search_params": o.search_params}


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


def row_from_trial(spec: Any, trial: Any) -> RowRequest:
    """The row of one trial: TPE over the factors' 0/1 toggles and, conditionally, the parameters of the enabled tricks (parameters
    the spec sets explicitly stay fixed)."""
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
    return RowRequest(f"{spec.row_label(enabled)} #{trial.number}", tuple(tricks), params)
