"""Workers on this machine: one worker in this process (``--workers 1``), or N ``bench worker`` processes.

A worker process that dies (killed by a signal, or an unexpected exit status) while cells are left is
restarted, at most ``max_restarts`` times per run; every restart is said on the progress line and recorded with
its reason in the launch's events (``bench status``). Its cell is taken over once its lease is stale (at once
on this host: the holder process is gone) and resumes from its checkpoint.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from bench.runner import state
from bench.runner.launchers._base import Launcher, add_event, record_launch, set_launch
from bench.runner.worker import WorkerOptions, run_worker

__all__ = ["LocalLauncher", "worker_command", "LAUNCHER"]

#: exit statuses of ``bench worker`` that end it normally: 0 all done, 1 some cell failed, 130 interrupted
NORMAL_EXIT = (0, 1, 130)


def worker_command(experiment: str, *, results_url: str | None, storage_url: str | None,
                   tracking_uri: str | None, workspace: Any, device: str, threads: int, parent: str,
                   heartbeat_interval: float, heartbeat_timeout: float) -> list[str]:
    """The ``bench worker`` command line of one worker (store URLs omitted when None: taken from the
    environment, ``BENCH_RESULTS`` / ``BENCH_STORAGE`` / ``BENCH_TRACKING``)."""
    cmd = [sys.executable, "-m", "bench", "worker", experiment, "--workspace", str(workspace), "--device", device,
           "--threads", str(threads), "--heartbeat-interval", str(heartbeat_interval), "--heartbeat-timeout",
           str(heartbeat_timeout), "--quiet"]
    if results_url:
        cmd += ["--results", results_url]
    if storage_url:
        cmd += ["--storage", storage_url]
    if tracking_uri:
        cmd += ["--tracking", tracking_uri]
    if parent:
        cmd += ["--parent-run", parent]
    return cmd


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


class LocalLauncher(Launcher):
    name = "local"

    def run(self) -> bool:
        ctx = self.ctx
        if ctx.opts.workers <= 1:
            return self._in_process()
        return self._processes()

    # ---------------------------------------------------------------------------------------- one worker

    def _in_process(self) -> bool:
        ctx, opts = self.ctx, self.ctx.opts
        wopts = self._options(opts.devices[0])
        last = [0.0]

        def on_progress(info: dict[str, Any]) -> None:
            now = time.time()
            if now - last[0] > 0.5 or info.get("state") in ("done", "released"):
                last[0] = now
                ctx.progress.update(info)

        wopts.on_progress = on_progress
        main = threading.current_thread() is threading.main_thread()
        previous = signal.getsignal(signal.SIGINT)

        def _on_sigint(signum: int, frame: Any) -> None:
            if opts.stop.is_set():
                raise KeyboardInterrupt
            opts.stop.set()
            print("\nbench: stopping after a checkpoint (Ctrl-C again to abort)", file=sys.stderr)

        if main:
            signal.signal(signal.SIGINT, _on_sigint)
        try:
            run_worker(wopts)
        finally:
            if main:
                signal.signal(signal.SIGINT, previous)
        return opts.stop.is_set()

    def _options(self, device: str) -> WorkerOptions:
        ctx, opts = self.ctx, self.ctx.opts
        return WorkerOptions(experiment=ctx.spec.name, workspace=ctx.workspace, results_url=ctx.results_url,
                             storage_url=opts.storage_url, tracking_uri=opts.tracking_uri, parent_run_id=ctx.parent_run,
                             device=device, threads=ctx.threads, heartbeat_interval=opts.heartbeat_interval,
                             heartbeat_timeout=opts.heartbeat_timeout, stop=opts.stop)

    # ---------------------------------------------------------------------------------------- processes

    def _start(self, slot: int, env: dict[str, str]) -> subprocess.Popen:
        ctx, opts = self.ctx, self.ctx.opts
        cmd = worker_command(ctx.spec.name, results_url=ctx.results_url, storage_url=opts.storage_url,
                             tracking_uri=opts.tracking_uri, workspace=ctx.workspace.folder,
                             device=opts.devices[slot % len(opts.devices)], threads=ctx.threads,
                             parent=ctx.parent_run, heartbeat_interval=opts.heartbeat_interval,
                             heartbeat_timeout=opts.heartbeat_timeout)
        return subprocess.Popen(cmd, env=env)

    def _processes(self) -> bool:
        ctx, opts = self.ctx, self.ctx.opts
        env = dict(os.environ)
        if ctx.threads:
            env.update(OMP_NUM_THREADS=str(ctx.threads), MKL_NUM_THREADS=str(ctx.threads))
        procs = [self._start(i, env) for i in range(opts.workers)]
        launch_id = record_launch(ctx.store, ctx.spec.name, "local", opts.workers, [],
                                  f"{opts.workers} local worker processes (pids "
                                  f"{', '.join(str(p.pid) for p in procs)})")
        restarts = 0
        interrupted = False
        try:
            while any(pr.poll() is None for pr in procs):
                if opts.stop.wait(1.0):
                    interrupted = True
                    break
                for i, pr in enumerate(procs):
                    code = pr.poll()
                    if code is None or code in NORMAL_EXIT:
                        continue
                    if restarts >= opts.max_restarts or state.open_cells(ctx.store, ctx.spec.name) == 0:
                        continue
                    restarts += 1
                    procs[i] = self._start(i, env)
                    text = (f"worker {i + 1} (pid {pr.pid}) {describe_exit(code)}; restarted as pid {procs[i].pid} "
                            f"({restarts}/{opts.max_restarts})")
                    ctx.progress.note(text)
                    add_event(ctx.store, launch_id, text, restart=True)
                ctx.progress.update(extra=f"{restarts} restart(s)" if restarts else "")
        except KeyboardInterrupt:
            interrupted = True
        if interrupted:
            for pr in procs:
                if pr.poll() is None:
                    pr.send_signal(signal.SIGINT)
        for pr in procs:
            try:
                pr.wait()
            except KeyboardInterrupt:
                pr.kill()
                pr.wait()
        set_launch(ctx.store, launch_id, "interrupted" if interrupted else "finished")
        return interrupted


LAUNCHER = LocalLauncher
