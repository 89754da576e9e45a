"""Bookkeeping in the results database: experiments and cells registered from a plan, cell and training
leases with heartbeats, results written atomically.

The results database is the source of truth of "done" and the guard against double work:

- a worker *claims* a cell with a compare-and-set ``UPDATE`` (state, attempts and heartbeat unchanged since it
  read them); a cell can be claimed when ``queued``, or when ``running`` but its holder's heartbeat is older than
  the timeout (the holder died) or its holder is a dead process on this host;
- the holder refreshes ``heartbeat_at`` every few seconds; a refresh that matches no row means the lease was
  taken over, and the worker stops the cell;
- ``finish_cell`` stores the per-case metrics and flips the state to ``done`` in one transaction, only if the
  worker still holds the lease, so no cell is ever recorded twice;
- trainings are locked the same way (a row per training key, :mod:`bench.runner.locks`), so two workers never
  train one key at once.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from bench.design import design_class, traits
from bench.errors import SpecError
from bench.runner.plan import Plan, PlannedConfiguration
from bench.store.models import (
    CaseMetric,
    Cell,
    CellTraining,
    Configuration,
    Experiment,
    utcnow,
)
from bench.store.session import ResultsStore

__all__ = [
    "worker_id", "register_experiment", "add_configuration", "requeue_failed", "claim_cell", "heartbeat_cell",
    "finish_cell", "fail_cell", "release_cell",
    "CellInfo", "cell_info", "unfinished_cells", "is_stale",
    "claim_next_cell", "open_cells", "prune_cell", "skip_cell", "release_cells_of",
]

_HOST = socket.gethostname()


def worker_id() -> str:
    """``host:pid:random``: unique per worker process; the host and pid let a worker on the same host see that a
    holder process is gone without waiting for the heartbeat timeout."""
    return f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _holder_dead(holder: str | None) -> bool:
    if not holder:
        return True
    parts = holder.split(":")
    if len(parts) < 3 or parts[0] != _HOST:
        return False
    try:
        pid = int(parts[1])
    except ValueError:
        return False
    if pid == os.getpid():
        return holder not in _live_ids
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    # A zombie (killed, not yet reaped) is dead too.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


#: worker ids alive in this process (a lease held by another id of this pid belongs to an ended worker)
_live_ids: set[str] = set()


def register_live(worker: str, alive: bool = True) -> None:
    (_live_ids.add if alive else _live_ids.discard)(worker)


def _aware(t: dt.datetime | None) -> dt.datetime | None:
    if t is None:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.timezone.utc)


def is_stale(holder: str | None, heartbeat_at: dt.datetime | None, timeout: float) -> bool:
    """A lease is stale when its heartbeat is older than ``timeout`` seconds or its holder process is gone."""
    hb = _aware(heartbeat_at)
    if hb is None or (utcnow() - hb).total_seconds() > timeout:
        return True
    return _holder_dead(holder)


# ---------------------------------------------------------------------------------------------- registration


def _same_core(old_text: str, spec: Any) -> list[str]:
    from bench.runner.spec import parse_spec

    try:
        old = parse_spec(old_text, "stored spec", check_data=False)
    except Exception:  # noqa: BLE001 - a stored spec of an older version: compare nothing
        return []
    diffs = []
    a, b = old.core(), spec.core()
    for section in a:
        if a[section] != b[section]:
            if isinstance(a[section], dict) and isinstance(b[section], dict):
                for k in sorted(set(a[section]) | set(b[section])):
                    if a[section].get(k) != b[section].get(k):
                        diffs.append(f"{section}.{k}: {a[section].get(k)!r} -> {b[section].get(k)!r}")
            else:
                diffs.append(f"{section}: {a[section]!r} -> {b[section]!r}")
    return diffs


def check_extension(store: ResultsStore, spec: Any) -> None:
    """Refuse (SpecError, nothing written) a spec that reuses an experiment name with other data/budget."""
    with store.session() as s:
        exp = s.scalar(select(Experiment).where(Experiment.name == spec.name))
        if exp is None:
            return
        diffs = _same_core(exp.spec_toml, spec)
        if exp.design != spec.design and not (traits(exp.design).fixed_rows and traits(spec.design).fixed_rows):
            diffs.append(f"design: {exp.design!r} -> {spec.design!r}")
    if diffs:
        raise SpecError(
            f"{spec.source}: experiment {spec.name!r} already exists in the results database with other settings "
            f"({'; '.join(diffs[:4])}); an experiment may only be extended (factors, rows, folds, seeds). "
            "Give the spec a new name, or use another --results database"
        )


def register_experiment(store: ResultsStore, spec: Any, plan: Plan) -> list[tuple[int, str]]:
    """Create or extend the experiment and its configurations and cells; returns ``[(cell_id, state)]`` of the
    plan's cells in design order. Existing cells keep their state (finished cells are never touched).

    Launches on several machines may register the same new experiment at the same moment: the loser of an
    insert race gets a unique-constraint error, its transaction is rolled back, and it registers again,
    now finding (and extending) the winner's rows."""
    for attempt in range(8):
        try:
            return _register_experiment(store, spec, plan)
        except IntegrityError:
            if attempt == 7:
                raise
            time.sleep(0.02 * (attempt + 1))
    raise AssertionError("unreachable")


def _register_experiment(store: ResultsStore, spec: Any, plan: Plan) -> list[tuple[int, str]]:
    check_extension(store, spec)
    baseline = design_class(spec.design).baseline(spec)
    with store.session() as s:
        exp = s.scalar(select(Experiment).where(Experiment.name == spec.name))
        if exp is None:
            exp = Experiment(name=spec.name, design=spec.design, spec_toml=spec.text, spec_hash=spec.hash,
                             factors=list(spec.factors), baseline_label=baseline, objective=spec.objective)
            s.add(exp)
            s.flush()
        else:
            exp.design, exp.spec_toml, exp.spec_hash = spec.design, spec.text, spec.hash
            exp.factors, exp.baseline_label = list(spec.factors), baseline
        existing = {c.config_hash: c for c in s.scalars(
            select(Configuration).where(Configuration.experiment_id == exp.id))}
        n_planned = len(plan.configurations)
        # Configurations the spec no longer lists keep their results, after the planned ones.
        for extra, c in enumerate(sorted((c for h, c in existing.items()
                                          if h not in {p.config_hash for p in plan.configurations}),
                                         key=lambda c: c.position)):
            c.position = n_planned + extra
        conf_ids: dict[str, int] = {}
        for pc in plan.configurations:
            row = existing.get(pc.config_hash)
            if row is None:
                row = _new_configuration(exp.id, pc)
                s.add(row)
                s.flush()
            else:
                row.label, row.position, row.toggles, row.refused = pc.label, pc.position, pc.toggles, pc.refused
                row.tricks = list(pc.tricks)
            conf_ids[pc.config_hash] = row.id
        cells = {(c.configuration_id, c.fold, c.seed): c for c in s.scalars(
            select(Cell).where(Cell.experiment_id == exp.id))}
        out = []
        for pcell in plan.cells:
            cid = conf_ids[pcell.configuration.config_hash]
            cell = cells.get((cid, pcell.fold, pcell.seed))
            if cell is None:
                refused = pcell.configuration.refused
                cell = Cell(experiment_id=exp.id, configuration_id=cid, fold=pcell.fold, seed=pcell.seed,
                            state="skipped" if refused else "queued", error=refused, packages={}, attempts=0,
                            stage=pcell.stage)
                s.add(cell)
                s.flush()
            out.append((cell.id, cell.state))
    return out


def _new_configuration(experiment_id: int, pc: PlannedConfiguration) -> Configuration:
    return Configuration(experiment_id=experiment_id, label=pc.label, position=pc.position,
                         config_hash=pc.config_hash, tricks=list(pc.tricks), toggles=pc.toggles, params=pc.params,
                         refused=pc.refused)


def add_configuration(store: ResultsStore, experiment: str, pc: PlannedConfiguration, folds: Iterable[int],
                      seeds: Iterable[int]) -> list[int]:
    """Add one configuration (an Optuna trial's) with its cells, or find the existing one; returns cell ids."""
    with store.session() as s:
        exp = s.scalar(select(Experiment).where(Experiment.name == experiment))
        assert exp is not None
        conf = s.scalar(select(Configuration).where(Configuration.experiment_id == exp.id,
                                                    Configuration.config_hash == pc.config_hash))
        if conf is None:
            n = len(s.scalars(select(Configuration.id).where(Configuration.experiment_id == exp.id)).all())
            conf = _new_configuration(exp.id, pc)
            conf.position = n
            s.add(conf)
            s.flush()
        ids = []
        for fold in folds:
            for seed in seeds:
                cell = s.scalar(select(Cell).where(Cell.configuration_id == conf.id, Cell.fold == fold,
                                                   Cell.seed == seed))
                if cell is None:
                    cell = Cell(experiment_id=exp.id, configuration_id=conf.id, fold=fold, seed=seed,
                                state="queued", packages={}, attempts=0)
                    s.add(cell)
                    s.flush()
                ids.append(cell.id)
        return ids


def requeue_failed(store: ResultsStore, cell_ids: Iterable[int]) -> int:
    """``--retry-failed``: failed cells of the plan go back to queued; returns how many."""
    ids = list(cell_ids)
    with store.session() as s:
        res = s.execute(update(Cell).where(Cell.id.in_(ids), Cell.state == "failed")
                        .values(state="queued", error=None, worker=None, heartbeat_at=None))
        return int(res.rowcount or 0)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class CellInfo:
    cell_id: int
    experiment: str
    label: str
    fold: int
    seed: int
    state: str
    tricks: tuple[str, ...]
    params: dict[str, dict[str, Any]]
    toggles: dict[str, int]
    config_hash: str
    worker: str | None
    heartbeat_at: dt.datetime | None
    attempts: int


def cell_info(store: ResultsStore, cell_id: int) -> CellInfo | None:
    with store.session() as s:
        return _cell_info(s, cell_id)


def _cell_info(s: Any, cell_id: int) -> CellInfo | None:
    row = s.execute(
        select(Cell, Configuration, Experiment.name)
        .join(Configuration, Cell.configuration_id == Configuration.id)
        .join(Experiment, Cell.experiment_id == Experiment.id)
        .where(Cell.id == cell_id)
    ).first()
    if row is None:
        return None
    c, conf, name = row
    return CellInfo(c.id, name, conf.label, c.fold, c.seed, c.state, tuple(conf.tricks), dict(conf.params),
                    dict(conf.toggles), conf.config_hash, c.worker, c.heartbeat_at, c.attempts)


def unfinished_cells(store: ResultsStore, cell_ids: Iterable[int]) -> list[tuple[int, str, str | None, Any]]:
    """``[(cell_id, state, worker, heartbeat_at)]`` of the cells still queued or running."""
    ids = list(cell_ids)
    with store.session() as s:
        return [tuple(r) for r in s.execute(  # type: ignore[misc]
            select(Cell.id, Cell.state, Cell.worker, Cell.heartbeat_at)
            .where(Cell.id.in_(ids), Cell.state.in_(("queued", "running")))
        ).all()]


# ---------------------------------------------------------------------------------------------- cell leases


def claim_cell(store: ResultsStore, cell_id: int, worker: str, device: str, timeout: float) -> bool:
    """Take the lease of a cell (compare-and-set). False when it is done/failed/skipped or held by a live worker."""
    with store.session() as s:
        c = s.get(Cell, cell_id)
        if c is None:
            return False
        if c.state == "running" and c.worker == worker:
            return True
        if c.state == "running" and not is_stale(c.worker, c.heartbeat_at, timeout):
            return False
        if c.state not in ("queued", "running"):
            return False
        hb_cond = Cell.heartbeat_at.is_(None) if c.heartbeat_at is None else Cell.heartbeat_at == c.heartbeat_at
        now = utcnow()
        res = s.execute(
            update(Cell)
            .where(Cell.id == cell_id, Cell.state == c.state, Cell.attempts == c.attempts, hb_cond)
            .values(state="running", worker=worker, device=device, heartbeat_at=now, started_at=now,
                    attempts=c.attempts + 1, error=None, finished_at=None)
            .execution_options(synchronize_session=False)
        )
        return bool(res.rowcount == 1)  # type: ignore[attr-defined]


def heartbeat_cell(store: ResultsStore, cell_id: int, worker: str) -> bool:
    """Refresh the lease; False when the worker no longer holds it (it must stop the cell)."""
    with store.session() as s:
        res = s.execute(update(Cell).where(Cell.id == cell_id, Cell.worker == worker, Cell.state == "running")
                        .values(heartbeat_at=utcnow()).execution_options(synchronize_session=False))
        return bool(res.rowcount == 1)  # type: ignore[attr-defined]


LESION_KEYS = ("lesion_dice", "lesion_hd95", "legacy_dice", "legacy_hd95", "num_tp", "num_fp", "num_fn")
_METRIC_KEYS = {"case_id", "region", "dice", "hd95", "sensitivity", "specificity", "penalty", *LESION_KEYS}


def finish_cell(store: ResultsStore, cell_id: int, worker: str, metrics: list[dict[str, Any]],
                training_keys: list[str], **fields: Any) -> bool:
    """Store the per-case metrics and mark the cell done, in one transaction, if ``worker`` still holds it.

    Each metric dict holds case_id, region, dice, hd95, sensitivity, specificity, penalty and, when the spec
    asks for lesion-wise evaluation, the ``LESION_KEYS`` (missing ones are stored as NULL).
    """
    unknown = {k for m in metrics for k in m} - _METRIC_KEYS
    if unknown:
        raise ValueError(f"finish_cell: unknown metric keys {sorted(unknown)}")
    with store.session() as s:
        res = s.execute(
            update(Cell).where(Cell.id == cell_id, Cell.worker == worker, Cell.state == "running")
            .values(state="done", finished_at=utcnow(), heartbeat_at=utcnow(), error=None, **fields)
            .execution_options(synchronize_session=False)
        )
        if res.rowcount != 1:  # type: ignore[attr-defined]
            return False
        s.execute(delete(CaseMetric).where(CaseMetric.cell_id == cell_id))
        s.execute(delete(CellTraining).where(CellTraining.cell_id == cell_id))
        s.add_all(CaseMetric(cell_id=cell_id, **m) for m in metrics)
        s.add_all(CellTraining(cell_id=cell_id, training_key=k) for k in dict.fromkeys(training_keys))
    return True


def fail_cell(store: ResultsStore, cell_id: int, worker: str, error: str, **fields: Any) -> bool:
    with store.session() as s:
        res = s.execute(
            update(Cell).where(Cell.id == cell_id, Cell.worker == worker, Cell.state == "running")
            .values(state="failed", error=error[:4000], finished_at=utcnow(), **fields)
            .execution_options(synchronize_session=False)
        )
        return bool(res.rowcount == 1)  # type: ignore[attr-defined]


def release_cell(store: ResultsStore, cell_id: int, worker: str, *, preempted: bool = False) -> bool:
    """Give a cell back to the queue, not failed (Ctrl-C, SIGTERM, a Slurm warning signal): the next holder
    continues it from its training's last checkpoint. ``preempted`` counts the hand-back in ``preemptions``."""
    values: dict[str, Any] = {"state": "queued", "worker": None, "heartbeat_at": None}
    if preempted:
        values["preemptions"] = Cell.preemptions + 1
    with store.session() as s:
        res = s.execute(
            update(Cell).where(Cell.id == cell_id, Cell.worker == worker, Cell.state == "running")
            .values(**values).execution_options(synchronize_session=False)
        )
        return bool(res.rowcount == 1)  # type: ignore[attr-defined]


def prune_cell(store: ResultsStore, cell_id: int, worker: str, reason: str) -> bool:
    """An Optuna pruner stopped the cell's training: record it as pruned (if ``worker`` still holds it)."""
    with store.session() as s:
        res = s.execute(update(Cell).where(Cell.id == cell_id, Cell.worker == worker)
                        .values(state="pruned", error=reason, finished_at=utcnow())
                        .execution_options(synchronize_session=False))
        return bool(res.rowcount == 1)  # type: ignore[attr-defined]


def skip_cell(store: ResultsStore, cell_id: int, reason: str) -> None:
    """A queued cell whose configuration is refused becomes ``skipped`` with the reason."""
    with store.session() as s:
        s.execute(update(Cell).where(Cell.id == cell_id, Cell.state == "queued")
                  .values(state="skipped", error=reason).execution_options(synchronize_session=False))


_EXPERIMENT_IDS: dict[tuple[str, str], int] = {}


def _experiment_id(store: ResultsStore, experiment: str) -> int | None:
    key = (store.url, experiment)
    if key not in _EXPERIMENT_IDS:
        with store.session() as s:
            eid = s.scalar(select(Experiment.id).where(Experiment.name == experiment))
        if eid is None:
            return None
        _EXPERIMENT_IDS[key] = int(eid)
    return _EXPERIMENT_IDS[key]


def claim_next_cell(store: ResultsStore, experiment: str, worker: str, device: str,
                    timeout: float) -> CellInfo | None:
    """Take the lease of the experiment's next cell, in design order; None when none is claimable.

    Queued cells first, in one statement: ``UPDATE cells ... WHERE id = (SELECT id ... FOR UPDATE SKIP LOCKED
    LIMIT 1) RETURNING id``. On PostgreSQL the row lock means concurrent workers never wait on each other's
    claims and never get the same cell; on SQLite (no row locks) the ``state = 'queued'`` condition of the
    ``UPDATE`` decides, and a worker that lost the race tries the next cell. When nothing is queued, a
    ``running`` cell whose holder is gone (heartbeat older than ``timeout``, or a dead process on this host) is
    taken over with :func:`claim_cell`; its training resumes from the last checkpoint."""
    exp_id = _experiment_id(store, experiment)
    if exp_id is None:
        return None
    for _ in range(50):
        with store.session() as s:
            pick = (select(Cell.id).where(Cell.experiment_id == exp_id, Cell.state == "queued")
                    .order_by(Cell.id).limit(1).with_for_update(skip_locked=True).scalar_subquery())
            now = utcnow()
            claimed = s.scalar(
                update(Cell).where(Cell.id == pick, Cell.state == "queued")
                .values(state="running", worker=worker, device=device, heartbeat_at=now, started_at=now,
                        attempts=Cell.attempts + 1, error=None, finished_at=None)
                .returning(Cell.id).execution_options(synchronize_session=False)
            )
            if claimed is not None:
                return _cell_info(s, int(claimed))  # same transaction: one round trip less per claim
            if not s.scalar(select(Cell.id).where(Cell.experiment_id == exp_id, Cell.state == "queued").limit(1)):
                break
    with store.session() as s:
        running = s.execute(select(Cell.id, Cell.worker, Cell.heartbeat_at)
                            .where(Cell.experiment_id == exp_id, Cell.state == "running")
                            .order_by(Cell.id)).all()
    for cid, holder, hb in running:
        # holder == worker: a requeued Slurm task (same id) finds the cell its previous run held
        if (holder == worker or is_stale(holder, hb, timeout)) and claim_cell(store, cid, worker, device, timeout):
            return cell_info(store, cid)
    return None


def open_cells(store: ResultsStore, experiment: str) -> int:
    """How many of the experiment's cells are queued or running."""
    from sqlalchemy import func

    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(Cell).join(Experiment, Cell.experiment_id == Experiment.id)
                            .where(Experiment.name == experiment, Cell.state.in_(("queued", "running")))) or 0)


def release_cells_of(store: ResultsStore, experiment: str, worker_prefix: str) -> int:
    """Hand back every running cell of the experiment whose holder id starts with ``worker_prefix`` (the tasks
    of a cancelled Slurm job); returns how many."""
    exp_id = _experiment_id(store, experiment)
    with store.session() as s:
        res = s.execute(update(Cell).where(Cell.experiment_id == exp_id, Cell.state == "running",
                                           Cell.worker.startswith(worker_prefix))
                        .values(state="queued", worker=None, heartbeat_at=None,
                                preemptions=Cell.preemptions + 1)
                        .execution_options(synchronize_session=False))
        return int(res.rowcount or 0)  # type: ignore[attr-defined]


def experiment_cells(store: ResultsStore, experiment: str) -> list[int]:
    with store.session() as s:
        return list(s.scalars(select(Cell.id).join(Experiment, Cell.experiment_id == Experiment.id)
                              .where(Experiment.name == experiment).order_by(Cell.id)))
