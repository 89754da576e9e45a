"""Launchers: refusals before anything is queued, the Slurm job script, plain progress lines in a log file, the
results-database claims, and a local worker that dies being restarted."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys

import pytest
from test_runner_workers import _status, _wait, tiny

from bench.runner import state
from bench.runner.launchers.slurm import SlurmOptions, job_script
from bench.runner.plan import plan
from bench.runner.spec import parse_spec
from bench.runner.workspace import Workspace
from bench.store import open_store
from bench.store import queries as q


def test_slurm_refuses_local_stores_in_one_line(tmp_path, run_cli):
    spec = tmp_path / "s.toml"
    spec.write_text(tiny("refuse"))
    r = run_cli("run", spec, "--launcher", "slurm", "--workspace", tmp_path / "ws", "--tracking", "none")
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1
    assert "--results the workspace's SQLite file (default)" in r.err and "PostgreSQL URL" in r.err
    r = run_cli("run", spec, "--launcher", "slurm", "--results", f"sqlite:///{tmp_path}/r.db", "--workspace",
                tmp_path / "ws")
    assert r.code == 2 and "--results sqlite:///" in r.err
    r = run_cli("run", spec, "--launcher", "slurm", "--results", "postgresql://u:secret@db/x", "--storage",
                str(tmp_path / "j.journal"), "--workspace", tmp_path / "ws")
    assert r.code == 2 and "--storage" in r.err and "secret" not in r.err
    r = run_cli("run", spec, "--partition", "gpu", "--workspace", tmp_path / "ws")
    assert r.code == 2 and "--partition: only used with --launcher slurm" in r.err
    r = run_cli("run", spec, "--launcher", "slurm", "--time", "90 minutes", "--workspace", tmp_path / "ws")
    assert r.code == 2 and "--time '90 minutes'" in r.err and "HH:MM:SS" in r.err
    assert not (tmp_path / "ws" / ".bench" / "results.db").exists()  # nothing written


def test_the_job_script_execs_the_worker_with_no_secret(tmp_path):
    sl = SlurmOptions.from_cli(partition="gpu", gpus_per_worker=1, cpus_per_worker=4, time="02:00:00",
                               extra=["--qos=long"])
    text = job_script("my exp", Workspace(tmp_path), 8, sl, device="cuda", parent="", heartbeat_interval=10,
                      heartbeat_timeout=60)
    lines = text.splitlines()
    for opt in ("--array=0-7", "--signal=B:USR1@120", "--requeue", "--partition=gpu", "--time=02:00:00",
                "--cpus-per-task=4", "--gres=gpu:1", "--qos=long"):
        assert f"#SBATCH {opt}" in lines
    assert lines[-1].startswith("exec ") and "worker 'my exp'" in lines[-1] and "--device cuda" in lines[-1]
    assert "--results" not in text and "postgresql" not in text  # the URLs travel in the environment


def test_progress_in_a_log_is_plain_lines(tmp_path):
    from bench.runner.progress import Progress

    spec = parse_spec(tiny("plain", factors='["warmup"]'))
    store = open_store(tmp_path / "r.db")
    ids = [cid for cid, _ in state.register_experiment(store, spec, plan(spec))]
    log = io.StringIO()
    prog = Progress(True, store, ids, Workspace(tmp_path), stream=log, interval=0.0)
    assert state.claim_next_cell(store, "plain", "w1", "cpu", 60).cell_id == ids[0]
    assert state.finish_cell(store, ids[0], "w1", [], [])
    prog.update()
    prog.note("worker 1 (pid 1) killed by SIGKILL; restarted as pid 2 (1/3)")
    prog.close()
    text = log.getvalue()
    assert "\r" not in text
    assert "bench: cell BL fold 0 seed 0: done (1/2)" in text.splitlines()
    assert "bench: 1/2 cells finished" in text and "restarted as pid 2" in text


def test_claims_in_the_results_database(tmp_path):
    spec = parse_spec(tiny("claims"))
    store = open_store(tmp_path / "r.db")
    ids = [cid for cid, _ in state.register_experiment(store, spec, plan(spec))]
    got = [state.claim_next_cell(store, "claims", f"w{i}", "cpu", 60).cell_id for i in range(4)]
    assert got == ids  # design order, each once
    assert state.claim_next_cell(store, "claims", "w9", "cpu", 60) is None  # all held by live leases
    assert state.release_cell(store, ids[1], "w1", preempted=True)
    again = state.claim_next_cell(store, "claims", "w9", "cpu", 60)
    assert again.cell_id == ids[1] and again.attempts == 2
    # a stale lease (heartbeat older than the timeout) is taken over
    assert state.claim_next_cell(store, "claims", "w8", "cpu", -1).cell_id == ids[0]
    cells = q.cells(store, "claims").set_index("cell_id")
    assert cells.loc[ids[1], "preemptions"] == 1 and cells.loc[ids[0], "attempts"] == 2
    assert state.open_cells(store, "claims") == 4


@pytest.mark.slow
@pytest.mark.postgres
def test_a_dead_local_worker_is_restarted(tmp_path, pg_url):
    ws = tmp_path / "ws"
    spec_file = tmp_path / "restart.toml"
    spec_file.write_text(tiny("restart", iterations=200))
    p = subprocess.Popen([sys.executable, "-m", "bench", "run", str(spec_file), "--workspace", str(ws), "--results",
                          pg_url, "--tracking", "none", "--workers", "2", "--threads", "1", "--heartbeat-interval",
                          "0.5", "--heartbeat-timeout", "5"], env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        _wait(lambda: any(s.get("state") == "training" and (s.get("iteration") or 0) >= 3 for s in _status(ws)),
              300, "a training to be under way", (p,))
        victim = next(s for s in _status(ws) if s.get("state") == "training")
        os.kill(int(victim["pid"]), signal.SIGKILL)
        out, err = p.communicate(timeout=600)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err[-3000:]
    assert f"(pid {victim['pid']}) killed by SIGKILL; restarted as pid" in err
    cells = q.cells(pg_url, "restart")
    assert list(cells["state"]) == ["done"] * 4 and (cells["attempts"] >= 2).sum() == 1
    m = q.case_metrics(pg_url, "restart")
    assert len(m) == 4 * 2 * 3 and not m.duplicated(["cell_id", "case_id", "region"]).any()
    st = subprocess.run([sys.executable, "-m", "bench", "status", "restart", "--results", pg_url],
                        capture_output=True, text=True, timeout=60)
    assert "1 restart(s)" in st.stdout and "killed by SIGKILL" in st.stdout
