"""``bench run --launcher slurm`` on a real Slurm (the one-node cluster of .ci/slurm-up.sh in CI): a 4-cell grid
through a 2-task array, a task warned with SIGUSR1 mid-training (its cell is handed back and finishes from the
checkpoint), a task SIGKILLed (its lease expires and the cell runs again elsewhere). Nothing is duplicated.

They skip with a reason only when CI is unset and no Slurm answers; in CI a missing Slurm is a failure."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_runner_workers import tiny

from bench.store import queries as q


def _slurm_answers() -> str | None:
    """None when a Slurm controller answers with a usable node, else why not."""
    if shutil.which("sinfo") is None:
        return "sinfo is not on PATH"
    try:
        res = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"sinfo failed: {exc}"
    if res.returncode != 0:
        return f"sinfo failed: {(res.stderr or res.stdout).strip().splitlines()[-1:]}"
    states = set(res.stdout.split())
    if not states & {"idle", "mixed", "allocated", "completing"}:
        return f"no usable Slurm node (states: {', '.join(sorted(states)) or 'none'})"
    return None


@pytest.fixture(scope="module")
def slurm() -> None:
    why = _slurm_answers()
    if why is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but Slurm does not answer: {why} (.ci/slurm-up.sh starts it)")
    pytest.skip(f"no Slurm here ({why}); CI runs these on the cluster of .ci/slurm-up.sh")


def _run(ws: Path, spec: Path, pg_url: str, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "bench", "run", str(spec), "--workspace", str(ws), "--results", pg_url,
           "--tracking", "none", "--launcher", "slurm", "--workers", "2", "--wait", "--heartbeat-interval", "0.5",
           "--heartbeat-timeout", "6", *extra]
    return subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _statuses(ws: Path) -> list[dict]:
    out = []
    for f in (ws / ".bench" / "workers").glob("slurm_*.json"):
        try:
            out.append(json.loads(f.read_text()))
        except (OSError, ValueError):
            pass
    return out


def _training_task(ws: Path, p: subprocess.Popen, timeout: float = 300) -> tuple[str, int]:
    """The Slurm task (``job_task``) training a cell past iteration 5, and that cell's id."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        for s in _statuses(ws):
            if s.get("state") == "training" and (s.get("iteration") or 0) >= 5:
                return s["worker"].split(":", 1)[1], int(s["cell_id"])
        if p.poll() is not None:
            raise AssertionError(f"bench run ended early ({p.returncode}): {p.communicate()[1][-2000:]}")
        time.sleep(0.3)
    raise AssertionError("no Slurm task started training")


def _finish(p: subprocess.Popen, timeout: float = 600) -> tuple[str, str]:
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError(f"bench run did not finish: {err[-3000:]}") from None
    assert p.returncode == 0, err[-3000:]
    return out, err


def _cleanup(ws: Path, pg_url: str, name: str) -> None:
    from bench.runner.launchers._base import launches
    from bench.store import open_store

    for ln in launches(open_store(pg_url), name):
        subprocess.run(["scancel", *ln["job_ids"]], capture_output=True)


def _check_complete(pg_url: str, name: str) -> object:
    cells = q.cells(pg_url, name)
    assert list(cells["state"]) == ["done"] * 4, cells[["label", "state", "error", "worker"]]
    assert all(str(w).startswith("slurm:") for w in cells["worker"])
    m = q.case_metrics(pg_url, name)
    assert len(m) == 4 * 2 * 3 and not m.duplicated(["cell_id", "case_id", "region"]).any()
    return cells


@pytest.mark.slow
@pytest.mark.postgres
def test_a_grid_runs_through_a_two_task_array(slurm, tmp_path, pg_url):
    ws = tmp_path / "ws"
    spec = tmp_path / "sgrid.toml"
    spec.write_text(tiny("sgrid", iterations=8))
    p = _run(ws, spec, pg_url)
    try:
        out, err = _finish(p)
    finally:
        _cleanup(ws, pg_url, "sgrid")
    cells = _check_complete(pg_url, "sgrid")
    assert list(cells["attempts"]) == [1] * 4  # every cell done exactly once
    assert "submitted Slurm job array" not in out and "BL+warmup" in out
    st = subprocess.run([sys.executable, "-m", "bench", "status", "sgrid", "--results", pg_url],
                        capture_output=True, text=True, timeout=60)
    assert st.returncode == 0 and "launch 1: slurm job" in st.stdout and "slurm:" in st.stdout


@pytest.mark.slow
@pytest.mark.postgres
def test_a_warned_task_hands_its_cell_back_and_it_resumes_from_the_checkpoint(slurm, tmp_path, pg_url):
    ws = tmp_path / "ws"
    spec = tmp_path / "susr1.toml"
    spec.write_text(tiny("susr1", iterations=300))
    p = _run(ws, spec, pg_url)
    try:
        task, cell_id = _training_task(ws, p)
        res = subprocess.run(["scancel", "--batch", "--signal=USR1", task], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        _finish(p)
    finally:
        _cleanup(ws, pg_url, "susr1")
    cells = _check_complete(pg_url, "susr1")
    cell = cells[cells["cell_id"] == cell_id].iloc[0]
    assert cell["preemptions"] == 1 and cell["attempts"] == 2  # the hand-back is recorded, not a failure
    logs = "".join(f.read_text() for f in (ws / ".bench" / "slurm").glob("susr1-*.out"))
    assert "SIGUSR1: cell handed back to the queue" in logs
    assert "resumes from its checkpoint" in logs  # continued, not retrained from scratch


def _training_pid(ws: Path, task: str) -> int:
    return next(int(s["pid"]) for s in _statuses(ws) if s["worker"] == f"slurm:{task}")


@pytest.mark.slow
@pytest.mark.postgres
def test_a_killed_task_loses_its_lease_and_the_cell_runs_again_once(slurm, tmp_path, pg_url):
    # SIGKILL of the task's worker process (what a node crash does; `scancel` itself sends SIGTERM first, which
    # the worker answers with a hand-back): no hand-back, the lease expires, the task is resubmitted
    ws = tmp_path / "ws"
    spec = tmp_path / "skill.toml"
    spec.write_text(tiny("skill", iterations=300))
    p = _run(ws, spec, pg_url)
    try:
        task, cell_id = _training_task(ws, p)
        os.kill(_training_pid(ws, task), signal.SIGKILL)
        out, err = _finish(p)
    finally:
        _cleanup(ws, pg_url, "skill")
    cells = _check_complete(pg_url, "skill")
    cell = cells[cells["cell_id"] == cell_id].iloc[0]
    assert cell["attempts"] == 2 and cell["preemptions"] == 0 and cell["worker"] != f"slurm:{task}"
    assert (cells["attempts"] == 1).sum() == 3
    assert f"slurm:{task} FAILED" in err and "resubmitted as job" in err  # the dead task was replaced


@pytest.mark.slow
@pytest.mark.postgres
def test_cancel_hands_cells_back_and_a_new_run_continues(slurm, tmp_path, pg_url):
    ws = tmp_path / "ws"
    spec = tmp_path / "scancel.toml"
    spec.write_text(tiny("scancel", iterations=300))
    cmd = [sys.executable, "-m", "bench", "run", str(spec), "--workspace", str(ws), "--results", pg_url,
           "--tracking", "none", "--launcher", "slurm", "--workers", "2", "--heartbeat-interval", "0.5",
           "--heartbeat-timeout", "6"]
    try:
        sub = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert sub.returncode == 0 and "submitted Slurm job array" in sub.stdout, sub.stderr
        p = subprocess.Popen(["sleep", "600"])  # a stand-in process for _training_task's liveness check
        try:
            _training_task(ws, p)
        finally:
            p.kill()
            p.wait()
        res = subprocess.run([sys.executable, "-m", "bench", "cancel", "scancel", "--results", pg_url],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0 and "cancelled Slurm job" in res.stderr, res.stderr
        time.sleep(12)  # KillWait: the tasks end
        mid = q.cells(pg_url, "scancel")
        assert "running" not in set(mid["state"]) and mid["preemptions"].sum() >= 1
        assert (mid["state"] == "failed").sum() == 0
        p = _run(ws, spec, pg_url)  # the same command continues the experiment
        _finish(p)
    finally:
        _cleanup(ws, pg_url, "scancel")
    cells = _check_complete(pg_url, "scancel")
    assert (cells["preemptions"] >= 1).sum() >= 1
