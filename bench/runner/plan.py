"""Planning: a spec becomes configurations (rows) and cells (configuration x fold x seed).

Configurations are identified by their resolved trick stack (names + parameters with defaults filled in), so
re-running an extended spec finds the existing rows and adds only new ones. A full grid keeps the
combinations the registry refuses as refused configurations (their cells are stored as ``skipped`` with the
reason); a ladder or list row that is refused was already rejected by spec validation.

Training keys need the data fingerprint, so :func:`training_plan` runs after the data is prepared.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from typing import Any

from bench.errors import BenchError, SpecError
from bench.runner.spec import Spec

__all__ = ["PlannedConfiguration", "PlannedCell", "Plan", "plan", "fixed_plan", "training_plan",
           "configuration_for"]


@dataclass(frozen=True)
class PlannedConfiguration:
    label: str
    position: int
    tricks: tuple[str, ...]  # enabled trick names (fixed + enabled factors), in spec order
    toggles: dict[str, int]  # factor -> 0/1
    params: dict[str, dict[str, Any]]  # resolved parameters of every enabled trick
    config_hash: str
    refused: str | None = None  # the registry's reason, for a refused full-grid combination

    def stack(self) -> Any:
        from tricks import resolve

        return resolve(list(self.tricks), self.params)


@dataclass(frozen=True)
class PlannedCell:
    configuration: PlannedConfiguration
    fold: int
    seed: int

    @property
    def label(self) -> str:
        return self.configuration.label


@dataclass(frozen=True)
class Plan:
    spec: Spec
    configurations: tuple[PlannedConfiguration, ...]
    cells: tuple[PlannedCell, ...]

    @property
    def refused(self) -> list[PlannedConfiguration]:
        return [c for c in self.configurations if c.refused]


def config_hash(stack_items: list[tuple[str, dict[str, Any]]]) -> str:
    text = json.dumps(stack_items, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def configuration_for(spec: Spec, label: str, position: int, tricks: list[str],
                      params: dict[str, dict[str, Any]]) -> PlannedConfiguration:
    """Resolve one row; a refusal is returned as a refused configuration (never raised)."""
    from tricks import resolve

    toggles = {f: int(f in tricks) for f in spec.factors}
    own = {k: v for k, v in params.items() if k in tricks}
    try:
        stack = resolve(tricks, own)
    except BenchError as exc:
        refused_hash = config_hash([(t, own.get(t, {})) for t in sorted(tricks)] + [("__refused__", {})])
        return PlannedConfiguration(label, position, tuple(tricks), toggles, own, refused_hash, refused=str(exc))
    return PlannedConfiguration(label, position, tuple(tricks), toggles, stack.to_dict(), config_hash(stack.items()))


def _rows(spec: Spec) -> list[tuple[str, list[str], dict[str, dict[str, Any]]]]:
    fixed = list(spec.fixed)
    if spec.design == "full":
        out = []
        k = len(spec.factors)
        for i in range(2 ** k):
            on = [f for j, f in enumerate(spec.factors) if i >> j & 1]
            out.append((spec.row_label(on), fixed + on, spec.params))
        return out
    if spec.design == "ladder":
        out = [(spec.baseline_label, list(fixed), spec.params)]
        for n in range(1, len(spec.factors) + 1):
            on = list(spec.factors[:n])
            out.append((spec.row_label(on), fixed + on, spec.params))
        return out
    if spec.design == "list":
        return [(r.label, fixed + [t for t in r.tricks if t not in fixed], {**spec.params, **r.params})
                for r in spec.rows]
    return []  # optuna: configurations are created by the sampler, trial by trial


def plan(spec: Spec) -> Plan:
    """All configurations and cells of a spec, in design order (configurations outer, then fold, then seed).

    For an adaptive design (``[replication]``, ``design = "forward"``): the cells of its first look; the
    runner adds the others look by look (:mod:`bench.runner.looks`)."""
    from bench.runner.looks import initial_plan, is_adaptive

    if is_adaptive(spec):
        return initial_plan(spec)
    return fixed_plan(spec)


def fixed_plan(spec: Spec) -> Plan:
    """Every configuration and cell of a fixed design (the spec's folds x seeds)."""
    confs = [configuration_for(spec, label, i, tricks, params) for i, (label, tricks, params) in
             enumerate(_rows(spec))]
    seen: dict[str, str] = {}
    for c in confs:
        if c.config_hash in seen:
            raise SpecError(f"{spec.source}: rows {seen[c.config_hash]!r} and {c.label!r} are the same "
                             "configuration")
        seen[c.config_hash] = c.label
    cells = tuple(PlannedCell(c, fold, seed) for c in confs for fold, seed in itertools.product(spec.folds, spec.seeds))
    return Plan(spec, tuple(confs), cells)


def training_plan(spec: Spec, conf: PlannedConfiguration, fold: int, seed: int, fingerprint: str,
                  n_folds: int) -> list[tuple[int, str]]:
    """``[(fold, training key)]`` of every training a cell needs; the cell's own fold comes first."""
    from bench.engine.api import training_key

    stack = conf.stack()
    folds = stack.folds_for(fold, n_folds)
    folds = [fold] + [f for f in folds if f != fold] if fold in folds else list(folds)
    model_cfg = spec.model_config()
    out = []
    for f in folds:
        out.append((f, training_key(fingerprint, model_cfg, spec.train_config(f, seed), stack)))
    return out
