"""How a worker holds a cell: its identity, the heartbeat that keeps its lease alive, and the signals that make
it hand the cell back.

The results database is authoritative for who holds a cell (:mod:`bench.runner.state`): Optuna gives ask/tell
workers no heartbeat of its own, so bench keeps its own leases. A worker that is SIGKILLed stops beating and its
cell is claimable once the heartbeat is older than the timeout. A worker that gets SIGUSR1 (Slurm's warning
before a time limit or a preemption), SIGTERM (``scancel``) or SIGINT (Ctrl-C) checkpoints its training, hands its
cell back as *not failed* and exits; whoever claims the cell next resumes from the checkpoint.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

from bench.runner import locks, state

__all__ = ["Heartbeat", "worker_identity", "slurm_task", "install_stop_signals", "relay_stop"]

log = logging.getLogger(__name__)

#: signals that stop a worker after a checkpoint (the cell goes back to the queue, not failed)
STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGUSR1")


def slurm_task() -> str | None:
    """``<array job id>_<task id>`` inside a Slurm array task (``<job id>`` in a plain job), else None."""
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID") or None


def worker_identity() -> str:
    """The id a worker records on the cells it holds: ``slurm:<array job id>_<task id>`` in a Slurm task,
    ``host:pid:random`` otherwise (see :func:`bench.runner.state.worker_id`)."""
    task = slurm_task()
    return f"slurm:{task}" if task else state.worker_id()


def install_stop_signals(stop: threading.Event, received: list[str]) -> None:
    """SIGINT, SIGTERM and SIGUSR1 set ``stop`` (the running training checkpoints; the cell is handed back);
    the signal's name is appended to ``received``."""

    def _on_signal(signum: int, frame: Any) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    for name in STOP_SIGNALS:
        signal.signal(getattr(signal, name), _on_signal)


class Heartbeat(threading.Thread):
    """Refreshes the cell lease (and the training lock being held); sets ``lost`` and ``stop`` when the lease
    was taken over by another worker."""

    def __init__(self, store: Any, wid: str, cell_id: int, stop: threading.Event, interval: float):
        super().__init__(daemon=True, name=f"heartbeat-{cell_id}")
        self.store, self.wid, self.cell_id, self.stop_cell, self.interval = store, wid, cell_id, stop, interval
        self.training_key: str | None = None
        self.lost = threading.Event()
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.interval):
            try:
                if not state.heartbeat_cell(self.store, self.cell_id, self.wid):
                    self.lost.set()
                    self.stop_cell.set()
                    return
                key = self.training_key
                if key:
                    locks.heartbeat_training(self.store, key, self.wid)
            except Exception:  # noqa: BLE001 - a database hiccup: try again next beat
                log.warning("heartbeat of cell %s failed", self.cell_id, exc_info=True)

    def close(self) -> None:
        self._done.set()
        self.join(timeout=5)


def relay_stop(global_stop: threading.Event, cell_stop: threading.Event) -> None:
    """Set ``cell_stop`` when ``global_stop`` is set (until the cell ends by itself)."""
    while not cell_stop.is_set():
        if global_stop.wait(0.2):
            cell_stop.set()
            return
