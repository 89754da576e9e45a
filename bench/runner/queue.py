"""The work queue: an Optuna study per experiment whose trials carry cell ids.

Every cell to run is enqueued as a WAITING trial (``user_attrs["cell_id"]``); a worker pops one by moving it to
RUNNING with the storage's compare-and-set (exactly what ``study.ask()`` does with enqueued trials, without ever
creating a stray trial when the queue is empty). A search (``design = "optuna"``) asks the sampler for new
trials instead. GridSampler is never used: with two workers it repeats points at the end of a grid.

Storage: a journal file (``<workspace>/.bench/optuna.journal``, safe for several local processes) or any
database URL Optuna accepts (PostgreSQL for several machines). Who holds a cell and whether it is done is
decided by the results database (:mod:`bench.runner.state`); :meth:`WorkQueue.recover` reconciles the two after
a worker died: the dead worker's RUNNING trial is failed (compare-and-set, so only one recoverer wins) and a new
WAITING trial is enqueued for its cell.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.errors import SpecError
from bench.store.session import normalize_url, redact_url

__all__ = ["WorkQueue", "study_name", "open_storage"]

log = logging.getLogger(__name__)

CELL_ATTR = "cell_id"


def study_name(experiment: str) -> str:
    return f"bench:{experiment}"


def open_storage(url: str | None, workspace: Path) -> Any:
    """An Optuna storage: journal file by default, or RDB for a database URL."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if not url:
        path = workspace / "optuna.journal"
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if "://" not in url:
        path = Path(url).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if url.startswith("sqlite"):
        log.warning("Optuna storage %s is SQLite: Optuna advises against it with parallel workers", url)
    try:
        return optuna.storages.RDBStorage(normalize_url(url), engine_kwargs={"pool_pre_ping": True})
    except Exception as exc:  # noqa: BLE001 - any connection/URL problem is a user error here
        raise SpecError(f"--storage {redact_url(url)}: cannot open the Optuna storage ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''})") from None


class WorkQueue:
    """One experiment's queue in an Optuna storage."""

    def __init__(self, storage: Any, experiment: str, *, sampler: Any = None, pruner: Any = None):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.storage = storage
        self.experiment = experiment
        self.study = optuna.create_study(study_name=study_name(experiment), storage=storage,
                                         load_if_exists=True, direction="maximize", sampler=sampler,
                                         pruner=pruner)

    # -------------------------------------------------------------------------------------------- reading

    def _trials(self, states: Iterable[Any] | None = None) -> list[Any]:
        return self.study.get_trials(deepcopy=False, states=tuple(states) if states is not None else None)

    def active(self) -> list[Any]:
        """WAITING and RUNNING trials."""
        from optuna.trial import TrialState

        return self._trials((TrialState.WAITING, TrialState.RUNNING))

    def active_cells(self) -> set[int]:
        return {int(t.user_attrs[CELL_ATTR]) for t in self.active() if CELL_ATTR in t.user_attrs}

    def n_waiting(self) -> int:
        from optuna.trial import TrialState

        return len(self._trials((TrialState.WAITING,)))

    # -------------------------------------------------------------------------------------------- writing

    def enqueue(self, cell_ids: Iterable[int]) -> int:
        """Enqueue the cells that have no WAITING/RUNNING trial yet; returns how many were enqueued."""
        have = self.active_cells()
        n = 0
        for cid in cell_ids:
            if cid not in have:
                self.study.enqueue_trial({}, user_attrs={CELL_ATTR: int(cid)})
                have.add(cid)
                n += 1
        return n

    def pop(self) -> Any | None:
        """Take a WAITING trial (compare-and-set to RUNNING); None when the queue is empty."""
        import optuna
        from optuna.trial import TrialState

        for t in self._trials((TrialState.WAITING,)):
            try:
                # FrozenTrial has no public id accessor; _trial_id is what study.ask() itself uses.
                if self.storage.set_trial_state_values(t._trial_id, TrialState.RUNNING):
                    return optuna.Trial(self.study, t._trial_id)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
        return None

    def ask(self) -> Any:
        """A new trial from the sampler (search designs only)."""
        return self.study.ask()

    def finish(self, trial: Any, state: str, value: float | None = None) -> bool:
        """Close a trial: state ``complete`` (with the objective), ``fail`` or ``pruned``. False if it was
        already closed (a recoverer took it)."""
        import optuna
        from optuna.trial import TrialState

        st = {"complete": TrialState.COMPLETE, "fail": TrialState.FAIL, "pruned": TrialState.PRUNED}[state]
        values = [float(value)] if (st == TrialState.COMPLETE and value is not None) else None
        trial_id = trial._trial_id
        try:
            return bool(self.storage.set_trial_state_values(trial_id, st, values=values))
        except optuna.exceptions.UpdateFinishedTrialError:
            return False

    def set_attr(self, trial: Any, key: str, value: Any) -> None:
        try:
            self.storage.set_trial_user_attr(trial._trial_id, key, value)
        except Exception:  # noqa: BLE001 - informational only
            log.debug("could not set user attr %s on trial %s", key, trial.number, exc_info=True)

    def recover(self, store: Any, timeout: float) -> int:
        """Hand the cells of dead workers back to the queue; close trials of cells finished elsewhere.

        Returns how many cells were re-enqueued."""
        import optuna
        from optuna.trial import TrialState

        from bench.runner.state import is_stale
        from bench.store.models import Cell

        running = self._trials((TrialState.RUNNING,))
        if not running:
            return 0
        ids = {t._trial_id: int(t.user_attrs[CELL_ATTR]) for t in running if CELL_ATTR in t.user_attrs}
        with store.session() as s:
            rows = {c.id: (c.state, c.worker, c.heartbeat_at, c.objective)
                    for c in s.query(Cell).filter(Cell.id.in_(set(ids.values())))}
        now = time.time()
        n = 0
        for t in running:
            if t._trial_id not in ids:
                continue
            cid = ids[t._trial_id]
            state, worker, hb, objective = rows.get(cid, ("missing", None, None, None))
            try:
                if state == "done":
                    values = [float(objective)] if objective is not None else None
                    self.storage.set_trial_state_values(t._trial_id, TrialState.COMPLETE, values=values)
                elif state in ("failed", "skipped", "missing"):
                    self.storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
                elif state == "pruned":
                    self.storage.set_trial_state_values(t._trial_id, TrialState.PRUNED)
                elif state == "running" and is_stale(worker, hb, timeout) or (
                    state == "queued" and t.datetime_start is not None
                    and now - t.datetime_start.timestamp() > timeout
                ):
                    # Only the recoverer whose compare-and-set wins re-enqueues the cell.
                    if self.storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                        self.study.enqueue_trial({}, user_attrs={CELL_ATTR: cid, "recovers_trial": t.number})
                        n += 1
                        log.info("cell %s: holder %s is gone; handed back to the queue", cid, worker)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
        return n
