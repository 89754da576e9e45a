"""Planning: a spec becomes configurations (rows) and cells (configuration x fold x seed).

The design (``bench.design``) says which configurations and cells; this module resolves them. Configurations
are identified by their resolved trick stack (names + parameters with defaults filled in), so
re-running an extended spec finds the existing rows and adds only new ones. A full grid keeps the
combinations the registry refuses as refused configurations (their cells are stored as ``skipped`` with the
reason); a ladder or list row that is refused was already rejected by spec validation.

Training keys need the data fingerprint, so :func:`training_plan` runs after the data is prepared.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from bench.design import design_for
from bench.errors import BenchError, SpecError
from bench.runner.spec import Spec

__all__ = ["PlannedConfiguration", "PlannedCell", "Plan", "plan", "training_plan", "train_job", "configuration_for"]


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
    stage: str = "main"  # the part of the design the cell belongs to (bench.design.CellRequest.stage)

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


def plan(spec: Spec) -> Plan:
    """All configurations and cells of a spec, in the design's order (for a fixed design: configurations outer,
    then fold, then seed). The design (:mod:`bench.design`) says which cells; this turns them into resolved
    configurations, keeping each cell's stage. For an adaptive design (``[replication]``, ``design =
    "forward"``) these are the cells of its first look; the runner adds the others look by look
    (:mod:`bench.runner.looks`)."""

    requests = design_for(spec).initial()
    by_row: dict[tuple[str, tuple[str, ...], str], PlannedConfiguration] = {}
    confs: list[PlannedConfiguration] = []
    cells: list[PlannedCell] = []
    seen: dict[str, str] = {}
    for req in requests:
        key = (req.row.label, req.row.tricks, json.dumps(req.row.params, sort_keys=True, default=str))
        conf = by_row.get(key)
        if conf is None:
            conf = configuration_for(spec, req.row.label, len(confs), list(req.row.tricks), req.row.params)
            if conf.config_hash in seen:
                raise SpecError(f"{spec.source}: rows {seen[conf.config_hash]!r} and {conf.label!r} are the same "
                                "configuration")
            seen[conf.config_hash] = conf.label
            by_row[key] = conf
            confs.append(conf)
        cells.append(PlannedCell(conf, req.fold, req.seed, req.stage))
    return Plan(spec, tuple(confs), tuple(cells))


def training_plan(spec: Spec, conf: PlannedConfiguration, fold: int, seed: int, fingerprint: str,
                  n_folds: int) -> list[tuple[int, str]]:
    """``[(fold, training key)]`` of every training a cell needs (the spec's engine decides which folds and
    the keys); the cell's own fold comes first."""
    from bench.runner.workspace import engine_of

    eng, options = engine_of(spec)
    stack = conf.stack()
    data = _Fingerprint(fingerprint)
    out = []
    for f in eng.folds_for(stack, fold, n_folds):
        out.append((f, eng.training_key(data, train_job(spec, stack, f, seed, options))))
    return out


def train_job(spec: Spec, stack: Any, fold: int, seed: int, options: dict[str, Any],
              machine: dict[str, Any] | None = None) -> Any:
    """The engine's :class:`bench.engines.TrainJob` of one training of a spec's cell."""
    from bench.engines import TrainJob

    return TrainJob(fold, seed, stack, model=dict(spec.model), train=dict(spec.train), options=dict(options),
                    machine=dict(machine or {}))


@dataclass(frozen=True)
class _Fingerprint:
    """What a training key reads of a prepared dataset: its fingerprint (``bench plan`` has no data yet)."""

    fingerprint: str
