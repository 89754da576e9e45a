"""``design = "optuna"``: a search. Its configurations are created by the sampler, trial by trial, so the
design registers no cells up front; a trial's suggestions become a row (toggles + conditional parameters).
"""

from __future__ import annotations

from typing import Any

from bench.design import register
from bench.design._base import CellRequest, Design, RowRequest
from bench.spec.checks import err
from bench.spec.model import Spec

__all__ = ["OptunaDesign", "row_from_trial", "suggest"]


@register
class OptunaDesign(Design):
    name = "optuna"
    searches = True
    replicable = False
    fixed_rows = False

    @classmethod
    def check(cls, spec: Spec) -> None:
        if not spec.factors:
            raise err(spec.source, "design = 'optuna' needs factors (the tricks to search over)")
        if spec.train.get("val_every", 0) < 1:
            raise err(spec.source, "design = 'optuna' needs train.val_every >= 1 (the objective and pruning use "
                                   "validation Dice; test cases are never used to choose)")

    @classmethod
    def planned_size(cls, spec: Spec, cells: int, trainings: int) -> tuple[int, int]:
        # the configurations are chosen as the search runs: one training per cell (model fusion needs more)
        n = spec.optuna.trials * len(spec.folds) * len(spec.seeds)
        return n, n

    @classmethod
    def plan_rows(cls, spec: Spec, configurations: int) -> str:
        return f"{spec.optuna.trials} trials (configurations chosen by the sampler)"

    @classmethod
    def launch_cells(cls, spec: Spec, cells: int) -> int:
        return spec.optuna.trials

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
