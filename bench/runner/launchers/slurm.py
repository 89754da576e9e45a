"""Workers as a Slurm job array: ``bench run SPEC --launcher slurm --workers N`` submits N tasks, each running
``bench worker EXPERIMENT`` against the spec's shared stores.

Submission uses ``sbatch`` directly rather than submitit: a worker is already a command line (``bench worker``),
so there is nothing to pickle; a job script is plain text a user can read and resubmit by hand; and the
clusters we target need nothing on the submitting machine beyond Slurm's own client tools.

- The stores must be shared: the results database (and a search's Optuna storage) on PostgreSQL, the
  workspace on a filesystem the compute nodes see at the same path. One short probe job checks the latter
  before the array is queued.
- The store URLs travel in the job's environment (``BENCH_RESULTS``, ``BENCH_STORAGE``, ``BENCH_TRACKING``),
  never in the script or on a command line, so no password lands in a file or in ``squeue``.
- Tasks get ``--signal=B:USR1@120``: 120 s before the time limit the worker checkpoints, hands its cell back
  (not failed), requeues its own task and exits; any worker resumes the cell from the checkpoint.
- ``--wait`` follows the array: cells, tasks running and pending; a task that dies outside a preemption is
  resubmitted (at most ``--max-restarts`` times), the reason recorded in the launch's events.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.design import design_class
from bench.errors import SpecError
from bench.runner import state
from bench.runner.launchers._base import Launcher, add_event, launches, record_launch, set_launch
from bench.runner.launchers.local import worker_command
from bench.store.session import redact_url

__all__ = ["SlurmOptions", "SlurmLauncher", "task_states", "cancel", "requeue_self", "job_script", "LAUNCHER"]

#: task states that are not over yet
ALIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
         "RESIZING", "SUSPENDED", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD")
#: ends that are a death of the task, not the end of its work, a cancellation or a preemption
DIED = ("FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "TIMEOUT")

_TIME = re.compile(r"^(\d+-)?\d{1,3}:\d{2}:\d{2}$")


class SlurmError(SpecError):
    """Slurm refused a submission, or the cluster cannot run the workers as asked."""


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    gpus_per_worker: int = 0
    cpus_per_worker: int = 1
    time: str | None = None
    extra: list[str] = field(default_factory=list)
    signal_seconds: int = 120
    probe_timeout: float = 300.0
    poll: float = 5.0

    @classmethod
    def from_cli(cls, *, partition: str | None, gpus_per_worker: int, cpus_per_worker: int, time: str | None,
                 extra: list[str]) -> SlurmOptions:
        if time is not None and not _TIME.match(time):
            raise SpecError(f"--time {time!r}: not a time limit; accepted HH:MM:SS or D-HH:MM:SS")
        for arg in extra:
            if not arg.startswith("--"):
                raise SpecError(f"--slurm-arg {arg!r}: not an sbatch option; accepted a long option such as "
                                "--slurm-arg=--qos=long")
        return cls(partition=partition, gpus_per_worker=gpus_per_worker, cpus_per_worker=cpus_per_worker, time=time,
                   extra=list(extra))

    def sbatch_options(self) -> list[str]:
        """The allocation options every job of this launch gets (the probe job too)."""
        out = []
        if self.partition:
            out.append(f"--partition={self.partition}")
        if self.time:
            out.append(f"--time={self.time}")
        out.append(f"--cpus-per-task={self.cpus_per_worker}")
        if self.gpus_per_worker:
            out.append(f"--gres=gpu:{self.gpus_per_worker}")
        return [*out, *self.extra]


def _is_postgres(url: str | None) -> bool:
    return bool(url) and str(url).split("://", 1)[0].split("+", 1)[0] in ("postgresql", "postgres")


def _slurm(cmd: list[str], *, timeout: float = 60.0, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except FileNotFoundError:
        raise SlurmError(f"--launcher slurm: {cmd[0]} is not on PATH (Slurm's client tools are needed on the "
                         "submitting machine)") from None


class SlurmLauncher(Launcher):
    name = "slurm"

    @classmethod
    def precheck(cls, opts: Any) -> None:
        accepted = "accepted: a PostgreSQL URL (postgresql://user@host:5432/db) that every node reaches"
        if not _is_postgres(opts.results_url):
            given = redact_url(opts.results_url) if opts.results_url else "the workspace's SQLite file (default)"
            raise SpecError(f"--results {given}: Slurm workers on other nodes need a shared results database; "
                            f"{accepted}")
        if design_class(opts.spec.design).searches and not _is_postgres(opts.storage_url):
            given = redact_url(opts.storage_url) if opts.storage_url else "the workspace's journal file (default)"
            raise SpecError(f"--storage {given}: a search on Slurm needs a shared Optuna storage; {accepted}")
        if opts.storage_url and not _is_postgres(opts.storage_url):
            raise SpecError(f"--storage {redact_url(opts.storage_url)}: Slurm workers need a shared Optuna storage; "
                            f"{accepted}")
        if opts.slurm is None:
            opts.slurm = SlurmOptions()
        _slurm(["sbatch", "--version"])

    # ---------------------------------------------------------------------------------------- submission

    def _env(self) -> dict[str, str]:
        opts = self.ctx.opts
        env = dict(os.environ)
        env["BENCH_RESULTS"] = self.ctx.results_url
        for key, val in (("BENCH_STORAGE", opts.storage_url), ("BENCH_TRACKING", opts.tracking_uri)):
            if val:
                env[key] = val
            else:
                env.pop(key, None)
        return env

    def probe(self) -> None:
        """One short job that must see the workspace (and this interpreter) at the same path."""
        ws, sl = self.ctx.workspace, self.ctx.opts.slurm
        ws.slurm_dir.mkdir(parents=True, exist_ok=True)
        token = ws.slurm_dir / f"probe-{uuid.uuid4().hex[:8]}"
        token.write_text("bench probe\n")
        check = (f"test -f {shlex.quote(str(token))} || {{ echo 'workspace not visible'; exit 3; }}; "
                 f"{shlex.quote(sys.executable)} -c 'import bench' || {{ echo 'bench not importable'; exit 4; }}")
        out = ws.slurm_dir / "probe-%j.out"
        cmd = ["sbatch", "--parsable", "--wait", "--job-name=bench-probe", f"--output={out}", *sl.sbatch_options(),
               *([] if sl.time else ["--time=00:05:00"]), f"--wrap={check}"]
        try:
            res = _slurm(cmd, timeout=sl.probe_timeout)
        except subprocess.TimeoutExpired:
            raise SlurmError(f"--launcher slurm: the probe job did not finish within {sl.probe_timeout:.0f} s "
                             "(is the partition busy or down? `sinfo` shows it); nothing was queued") from None
        finally:
            token.unlink(missing_ok=True)
        job = res.stdout.strip().split(";")[0]
        if res.returncode == 0:
            Path(str(out).replace("%j", job)).unlink(missing_ok=True)
            return
        why = {3: f"does not see the workspace {ws.folder}", 4: f"cannot run {sys.executable} -m bench"}.get(
            res.returncode, f"failed ({(res.stderr or res.stdout).strip().splitlines()[-1:] or ['no message']})")
        raise SlurmError(f"--workspace {ws.folder}: the probe job {job or '(not submitted)'} {why}; Slurm workers "
                         "need the workspace and this Python environment on a filesystem shared with the compute "
                         "nodes, at the same path; nothing was queued")

    def script(self, workers: int) -> Path:
        """Write the array's job script (no secrets in it); returns its path."""
        ctx, sl = self.ctx, self.ctx.opts.slurm
        text = job_script(ctx.spec.name, ctx.workspace, workers, sl,
                          device="cuda" if sl.gpus_per_worker else "cpu", parent=ctx.parent_run,
                          heartbeat_interval=ctx.opts.heartbeat_interval, heartbeat_timeout=ctx.opts.heartbeat_timeout)
        ctx.workspace.slurm_dir.mkdir(parents=True, exist_ok=True)
        path = ctx.workspace.slurm_dir / f"{_safe(ctx.spec.name)}-{time.strftime('%Y%m%d-%H%M%S')}.sh"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        return path

    def submit(self, script: Path, array: str | None = None) -> str:
        cmd = ["sbatch", "--parsable"] + ([f"--array={array}"] if array else []) + [str(script)]
        res = _slurm(cmd, env=self._env())  # the store URLs reach the tasks through sbatch's --export=ALL
        if res.returncode != 0:
            msg = (res.stderr or res.stdout).strip().splitlines()
            raise SlurmError(f"--launcher slurm: sbatch refused the job array: {msg[-1] if msg else 'no message'}")
        return res.stdout.strip().split(";")[0]

    def run(self) -> bool:
        ctx, opts = self.ctx, self.ctx.opts
        self.probe()
        script = self.script(opts.workers)
        job = self.submit(script)
        self.launch_id = record_launch(ctx.store, ctx.spec.name, "slurm", opts.workers, [job],
                                       f"submitted Slurm job array {job} ({opts.workers} tasks, {script.name})")
        self.script_path = script
        if not opts.wait:
            self.submitted = f"Slurm job array {job} ({opts.workers} tasks)"
            return False
        return self.follow([job])

    # ---------------------------------------------------------------------------------------- following

    def follow(self, jobs: list[str]) -> bool:
        """Until no cell is open: show cells and tasks, resubmit tasks that died. True when interrupted."""
        ctx, opts = self.ctx, self.ctx.opts
        handled: set[str] = set()
        restarts = 0
        try:
            while True:
                open_cells = state.open_cells(ctx.store, ctx.spec.name)
                tasks = task_states(jobs) or {}
                alive = {t: s for t, (s, _) in tasks.items() if s in ALIVE}
                running = sum(1 for s in alive.values() if s == "RUNNING")
                pending = len(alive) - running
                for task, (st, reason) in sorted(tasks.items()):
                    if task in handled or st in ALIVE:
                        continue
                    handled.add(task)
                    if st in DIED and open_cells and restarts < opts.max_restarts:
                        restarts += 1
                        array_job, _, index = task.partition("_")
                        new = self.submit(self.script_path, index or None)
                        jobs.append(new)
                        text = (f"slurm:{task} {st}" + (f" ({reason})" if reason and reason != "None" else "")
                                + f"; resubmitted as job {new} ({restarts}/{opts.max_restarts})")
                        ctx.progress.note(text)
                        add_event(ctx.store, self.launch_id, text, restart=True, job_id=new)
                        pending += 1
                ctx.progress.update(extra=f"Slurm: {running} running, {pending} pending")
                if open_cells == 0:
                    set_launch(ctx.store, self.launch_id, "finished")
                    return False
                if not alive:
                    ctx.progress.note(f"no Slurm task of job {', '.join(jobs)} is left and {open_cells} cell(s) are "
                                      "not finished; `bench run` again to submit new workers")
                    set_launch(ctx.store, self.launch_id, "ended")
                    return False
                if opts.stop.wait(opts.slurm.poll):
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            ctx.progress.note(f"stopped following; job {', '.join(jobs)} keeps running "
                              f"(`bench cancel {ctx.spec.name}` stops it)")
            return True


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60] or "experiment"


def job_script(experiment: str, ws: Any, workers: int, sl: SlurmOptions, *, device: str, parent: str,
               heartbeat_interval: float, heartbeat_timeout: float) -> str:
    """The array's sbatch script: one ``bench worker`` per task, exec'd so that it gets Slurm's signals."""
    cmd = worker_command(experiment, results_url=None, storage_url=None, tracking_uri=None, workspace=ws.folder,
                         device=device, threads=sl.cpus_per_worker, parent=parent,
                         heartbeat_interval=heartbeat_interval, heartbeat_timeout=heartbeat_timeout)
    cmd.remove("--quiet")
    lines = ["#!/bin/bash", f"#SBATCH --job-name=bench-{_safe(experiment)}", f"#SBATCH --array=0-{workers - 1}",
             f"#SBATCH --output={ws.slurm_dir}/{_safe(experiment)}-%A_%a.out", "#SBATCH --open-mode=append",
             f"#SBATCH --signal=B:USR1@{sl.signal_seconds}", "#SBATCH --requeue"]
    lines += [f"#SBATCH {o}" for o in sl.sbatch_options()]
    lines += ["# the store URLs come from the environment of the submitting `bench run` "
              "(BENCH_RESULTS, BENCH_STORAGE, BENCH_TRACKING)",
              f"export OMP_NUM_THREADS={sl.cpus_per_worker} MKL_NUM_THREADS={sl.cpus_per_worker}",
              f"cd {shlex.quote(str(ws.folder))}",
              "exec " + " ".join(shlex.quote(c) for c in cmd), ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- queries


def task_states(jobs: list[str]) -> dict[str, tuple[str, str]] | None:
    """``{"<array job>_<task>": (state, reason)}`` of the jobs' tasks that Slurm still knows (pending ranges
    as ``<array job>_<a-b>``); None when Slurm does not answer."""
    out: dict[str, tuple[str, str]] = {}
    for job in jobs:
        try:
            res = subprocess.run(["scontrol", "show", "job", "-o", str(job)], capture_output=True, text=True,
                                 timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        if res.returncode != 0:
            if "Invalid job id" in res.stderr:
                continue
            return None
        for line in res.stdout.splitlines():
            f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
            if "JobId" not in f:
                continue
            task = f"{f['ArrayJobId']}_{f['ArrayTaskId']}" if f.get("ArrayTaskId") else f["JobId"]
            out[task] = (f.get("JobState", "UNKNOWN"), f.get("Reason", ""))
    return out


def cancel(store: Any, experiment: str) -> tuple[list[str], int]:
    """Cancel the experiment's running Slurm launches (SIGTERM: the workers hand back their cells) and hand back
    what is still held by their tasks; returns (job ids, cells handed back)."""
    jobs: list[str] = []
    released = 0
    for ln in launches(store, experiment):
        if ln["launcher"] != "slurm" or ln["state"] != "running":
            continue
        res = _slurm(["scancel", *ln["job_ids"]])
        if res.returncode != 0:
            raise SlurmError(f"bench cancel: scancel {' '.join(ln['job_ids'])} failed: "
                             f"{(res.stderr or res.stdout).strip()}")
        jobs += ln["job_ids"]
        set_launch(store, ln["id"], "cancelled")
        add_event(store, ln["id"], "cancelled by bench cancel")
    if jobs:
        time.sleep(1.0)  # the workers' own hand-back (with the checkpoint) usually lands first
        for job in jobs:
            released += state.release_cells_of(store, experiment, f"slurm:{job}_")
    return jobs, released


def requeue_self(opts: Any) -> bool:
    """In an array task warned of its time limit (SIGUSR1): requeue this task when cells are left, so the
    array keeps its width. True when requeued."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    job = f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")
    if not job:
        return False
    try:
        from bench.store import open_store

        if state.open_cells(open_store(opts.results_url), opts.experiment) == 0:
            return False
        return subprocess.run(["scontrol", "requeue", job], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


LAUNCHER = SlurmLauncher
