"""The launcher contract and the launch records every launcher keeps in the results database.

A launcher starts the experiment's workers (:meth:`Launcher.run`) and returns whether the run was interrupted.
Each launch is one ``launches`` row: its job ids, the worker restarts with their reasons, and its state, so
``bench status`` and ``bench cancel`` find it from any machine that reaches the results database.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from bench.errors import SpecError
from bench.store.models import Experiment, Launch, utcnow

__all__ = ["Launcher", "LaunchContext", "LAUNCHERS", "get_launcher", "record_launch", "add_event", "set_launch",
           "launches"]

#: launcher name -> module under bench.runner.launchers holding its ``LAUNCHER`` class
LAUNCHERS = {"local": "local", "slurm": "slurm"}


@dataclass
class LaunchContext:
    """What a launcher needs: the run's options, the workspace, the registered experiment and its progress."""

    opts: Any  # bench.runner.launch.RunOptions
    workspace: Any  # bench.runner.workspace.Workspace
    spec: Any
    results_url: str
    parent_run: str
    threads: int
    progress: Any  # bench.runner.progress.Progress
    store: Any
    cell_ids: list[int]


class Launcher(ABC):
    """Starts and watches the workers of one ``bench run``."""

    name: str = ""

    def __init__(self, ctx: LaunchContext):
        self.ctx = ctx
        #: set by a launcher whose :meth:`run` returned with its workers still running elsewhere (job ids)
        self.submitted = ""

    @classmethod
    def precheck(cls, opts: Any) -> None:
        """Refuse (SpecError) options this launcher cannot run with, before any store is written."""
        return None

    @abstractmethod
    def run(self) -> bool:
        """Start the workers and (unless the launcher returns after submitting) watch them; True when the run
        was interrupted."""


def get_launcher(name: str) -> type[Launcher]:
    if name not in LAUNCHERS:
        raise SpecError(f"--launcher {name!r}: not a launcher; accepted: {', '.join(LAUNCHERS)}")
    module = importlib.import_module(f"bench.runner.launchers.{LAUNCHERS[name]}")
    return module.LAUNCHER  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------------- records


def record_launch(store: Any, experiment: str, launcher: str, workers: int, job_ids: list[str],
                  text: str) -> int:
    """A new ``launches`` row; returns its id."""
    with store.session() as s:
        exp_id = s.scalar(select(Experiment.id).where(Experiment.name == experiment))
        row = Launch(experiment_id=exp_id, launcher=launcher, job_ids=list(job_ids), workers=workers,
                     state="running", restarts=0, events=[_event(text)])
        s.add(row)
        s.flush()
        return int(row.id)


def _event(text: str) -> dict[str, str]:
    return {"time": utcnow().isoformat(timespec="seconds"), "text": text}


def add_event(store: Any, launch_id: int, text: str, *, restart: bool = False, job_id: str | None = None) -> None:
    """Append an event (a restart counts in ``restarts``; a resubmitted job's id joins ``job_ids``)."""
    with store.session() as s:
        row = s.get(Launch, launch_id)
        if row is None:
            return
        row.events = [*row.events, _event(text)]
        if restart:
            row.restarts = row.restarts + 1
        if job_id:
            row.job_ids = [*row.job_ids, job_id]


def set_launch(store: Any, launch_id: int, state: str) -> None:
    with store.session() as s:
        row = s.get(Launch, launch_id)
        if row is not None:
            row.state = state


def launches(store: Any, experiment: str) -> list[dict[str, Any]]:
    """The experiment's launches, oldest first, as dicts."""
    with store.session() as s:
        rows = s.scalars(select(Launch).join(Experiment, Launch.experiment_id == Experiment.id)
                         .where(Experiment.name == experiment).order_by(Launch.id)).all()
        return [{"id": r.id, "launcher": r.launcher, "job_ids": list(r.job_ids), "workers": r.workers,
                 "state": r.state, "restarts": r.restarts, "events": list(r.events),
                 "submitted_at": r.submitted_at} for r in rows]

