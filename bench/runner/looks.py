"""Looks of adaptive designs: when every cell a design asked for is finished, ask it for more, once.

The runner knows no design by name. A spec's design is adaptive when its class says so (``forward``) or when
the spec has ``[replication]`` (the wrapper of :mod:`bench.design.adaptive` around the fixed design). For those:

- the planner registers the design's first cells (``design.initial()``) and :func:`record_initial` stores
  them as look 0;
- :func:`take_look` is called by a worker that finds the queue empty: if every cell of the experiment is
  finished and the last look did not end the design, it builds :class:`~bench.design.Results` from the store,
  calls ``design.next``, and registers the new configurations and cells **in the same transaction** as the
  unique ``(experiment, look)`` row. Two workers (or machines, or Slurm jobs) reaching the same look both
  compute it; the second insert violates the constraint, its transaction rolls back, and only the first
  look's cells exist. Queued cells that no queue trial holds (the winner died between its commit and its
  enqueue) are enqueued by whoever looks next, so a resumed run continues.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from bench.design import CellRequest, Design, Results, design_for, is_adaptive
from bench.errors import SpecError
from bench.runner.plan import configuration_for
from bench.runner.state import new_configuration

if TYPE_CHECKING:
    from bench.runner.spec import Spec

__all__ = ["record_initial", "take_look", "pending", "results", "decisions",
           "status_lines"]

log = logging.getLogger(__name__)

_FINISHED = ("done", "failed", "skipped", "pruned")


def _configurations(spec: Spec, requests: list[CellRequest], start: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for r in requests:
        if r.row.label not in out:
            out[r.row.label] = configuration_for(spec, r.row.label, start + len(out), list(r.row.tricks),
                                                 dict(r.row.params))
    return out


def _experiment_id(s: Any, name: str) -> int | None:
    from bench.store.models import Experiment

    return s.scalar(select(Experiment.id).where(Experiment.name == name))


def _cell_keys(s: Any, exp_id: int) -> dict[tuple[str, int, int], int]:
    from bench.store.models import Cell, Configuration

    rows = s.execute(select(Cell.id, Configuration.label, Cell.fold, Cell.seed)
                     .join(Configuration, Cell.configuration_id == Configuration.id)
                     .where(Cell.experiment_id == exp_id)).all()
    return {(str(lab), int(f), int(sd)): int(cid) for cid, lab, f, sd in rows}


def record_initial(store: Any, spec: Spec) -> None:
    """Store the stages of the initial cells as look 0 (once; a later call finds the row)."""
    from bench.store.models import Look

    if not is_adaptive(spec):
        return
    reqs = design_for(spec).initial()
    try:
        with store.session() as s:
            exp_id = _experiment_id(s, spec.name)
            if exp_id is None or s.scalar(select(Look.id).where(Look.experiment_id == exp_id, Look.look == 0)):
                return
            keys = _cell_keys(s, exp_id)
            cells = [[keys[(r.row.label, r.fold, r.seed)], r.stage] for r in reqs
                     if (r.row.label, r.fold, r.seed) in keys]
            s.add(Look(experiment_id=exp_id, look=0, complete=False, cells=cells, decisions=[]))
    except IntegrityError:
        pass  # another launch recorded it


def results(store: Any, experiment: str) -> Results:
    """The experiment's cells (with ``stage`` and ``toggles``) and per-case metrics (with ``stage``)."""
    from bench.store import queries as q

    cells = q.cells(store, experiment)
    confs = q.configurations(store, experiment).set_index("configuration_id")["toggles"].to_dict()
    cells["toggles"] = [confs.get(c, {}) for c in cells["configuration_id"]]
    return Results(cells, q.case_metrics(store, experiment))


def decisions(design: Design, res: Results) -> list[dict[str, Any]]:
    """The design's decisions as dicts (empty for a design without any)."""
    fn = getattr(design, "decisions", None)
    if not callable(fn):
        return []
    return [d if isinstance(d, dict) else d.as_dict() for d in fn(res)]


def _state(s: Any, exp_id: int) -> tuple[dict[str, int], Any]:
    from bench.store.models import Cell, Look

    counts = dict(s.execute(select(Cell.state, func.count()).where(Cell.experiment_id == exp_id)
                            .group_by(Cell.state)).all())
    last = s.scalars(select(Look).where(Look.experiment_id == exp_id).order_by(Look.look.desc()).limit(1)).first()
    return counts, last


def pending(store: Any, spec: Spec) -> bool:
    """True while an adaptive experiment may still get cells: some are unfinished, or no look ended it."""
    if not is_adaptive(spec):
        return False
    with store.session() as s:
        exp_id = _experiment_id(s, spec.name)
        if exp_id is None:
            return False
        counts, last = _state(s, exp_id)
        unfinished = sum(n for st, n in counts.items() if st not in _FINISHED)
        return bool(unfinished) or last is None or not last.complete


def _enqueue_orphans(store: Any, exp_id: int, queue: Any) -> int:
    """Queued cells made claimable: put in the Optuna queue of a search, or (``queue`` None: cells are claimed
    straight from the results database) just counted."""
    from bench.store.models import Cell

    with store.session() as s:
        queued = list(s.scalars(select(Cell.id).where(Cell.experiment_id == exp_id, Cell.state == "queued")))
    if not queued:
        return 0
    return len(queued) if queue is None else int(queue.enqueue(queued))


def take_look(store: Any, spec: Spec, queue: Any, worker: str | None = None) -> bool:
    """Take the next look if it is due; True when cells were added to the queue (the caller pops again)."""
    from bench.store.models import Look

    if not is_adaptive(spec):
        return False
    with store.session() as s:
        exp_id = _experiment_id(s, spec.name)
        if exp_id is None:
            return False
        counts, last = _state(s, exp_id)
        last_look, complete = (last.look, last.complete) if last is not None else (None, False)
    if any(st not in _FINISHED for st in counts):
        return _enqueue_orphans(store, exp_id, queue) > 0
    if complete:
        return False
    if last_look is None:
        record_initial(store, spec)
        last_look = 0
    design = design_for(spec)
    res = results(store, spec.name)
    new = design.next(res)
    if new is not None and not new:
        log.warning("%s: the design asked for nothing more with every cell finished; ending it", spec.name)
        new = None
    seen = decisions(design, res)
    try:
        with store.session() as s:
            look = Look(experiment_id=exp_id, look=last_look + 1, complete=new is None, cells=[], decisions=seen,
                        worker=worker)
            s.add(look)
            s.flush()  # the unique (experiment, look) row: a second worker's look fails here or at commit
            look.cells = _register(s, spec, exp_id, new or [])
    except IntegrityError:
        return False
    if new is None:
        log.info("%s: look %d: design complete", spec.name, last_look + 1)
        return False
    return _enqueue_orphans(store, exp_id, queue) > 0


def _register(s: Any, spec: Spec, exp_id: int, requests: list[CellRequest]) -> list[list[Any]]:
    """Add the requested configurations and cells inside the look's transaction; returns [[cell_id, stage]]."""
    from bench.store.models import Cell, Configuration

    existing = {c.config_hash: c for c in s.scalars(select(Configuration)
                                                      .where(Configuration.experiment_id == exp_id))}
    n = len(existing)
    confs = _configurations(spec, requests, n)
    ids: dict[str, int] = {}
    for label, pc in confs.items():
        row = existing.get(pc.config_hash)
        if row is None:
            row = new_configuration(exp_id, pc)
            row.position = n
            n += 1
            s.add(row)
            s.flush()
            existing[pc.config_hash] = row
        ids[label] = row.id
    have = {(c.configuration_id, c.fold, c.seed): c.id for c in s.scalars(select(Cell)
                                                                            .where(Cell.experiment_id == exp_id))}
    out: list[list[Any]] = []
    for r in requests:
        key = (ids[r.row.label], r.fold, r.seed)
        if key not in have:
            refused = confs[r.row.label].refused
            cell = Cell(experiment_id=exp_id, configuration_id=key[0], fold=r.fold, seed=r.seed,
                        state="skipped" if refused else "queued", error=refused, packages={}, attempts=0,
                        stage=r.stage)
            s.add(cell)
            s.flush()
            have[key] = cell.id
            out.append([cell.id, r.stage])
    return out


def status_lines(store: Any, experiment: str) -> list[str]:
    """What ``bench status`` adds for an adaptive experiment: the look reached and every comparison, decided
    or not, and why (computed now from the finished cells)."""
    from bench.runner.spec import parse_spec
    from bench.store.models import Experiment

    with store.session() as s:
        exp = s.scalar(select(Experiment).where(Experiment.name == experiment))
        if exp is None:
            return []
        text = exp.spec_toml
        _, last = _state(s, exp.id)
        last_look, complete = (last.look, last.complete) if last is not None else (None, False)
    try:
        spec = parse_spec(text, f"experiment {experiment} (stored spec)", check_data=False)
    except SpecError:
        return []
    if not is_adaptive(spec):
        return []
    design = design_for(spec)
    seen = decisions(design, results(store, experiment))
    where = "no look yet" if last_look is None else (
        f"look {last_look}{' (design complete)' if complete else ''}")
    n_done = sum(1 for d in seen if d.get("decided"))
    lines = [f"adaptive design: {where}; {n_done} of {len(seen)} decided"]
    width = max([len(str(d["name"])) for d in seen] + [10])
    for d in seen:
        verdict = d.get("verdict") or ("decided" if d.get("decided") else "undecided")
        lines.append(f"  {str(d['name']):{width}s}  {verdict:10s} {d.get('reason', '')}")
    return lines
