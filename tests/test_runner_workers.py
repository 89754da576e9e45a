"""Workers with the real engine: several workers on PostgreSQL with one killed by SIGKILL mid-cell, an
interrupted `bench run` that resumes to the same results, failures recorded, and the MLflow mirror."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_spec import TINY_DATA_MODEL

from bench.runner.launch import RunOptions, prepare_run
from bench.runner.spec import parse_spec
from bench.store import queries as q

TINY = """
name = "{name}"
design = "full"
fixed = []
factors = {factors}
folds = [0]
seeds = {seeds}
[params]
warmup = {{ epochs = 1 }}
""" + TINY_DATA_MODEL + """[train]
iterations = {iterations}
epoch_length = 2
patch = 16
batch = 1
num_workers = 0
threads = 1
"""


def tiny(name: str = "tiny", factors: str = '["warmup", "patch_fusion"]', seeds: str = "[0]",
         iterations: int = 8) -> str:
    text = TINY.format(name=name, factors=factors, seeds=seeds, iterations=iterations)
    return text if "warmup" in factors else text.replace("[params]\nwarmup = { epochs = 1 }\n", "")




def _worker(ws: Path, experiment: str, results: str, storage: str | None, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "bench", "worker", experiment, "--workspace", str(ws), "--results", results,
           "--tracking", "none", "--threads", "1", "--heartbeat-interval", "0.5", "--heartbeat-timeout", "4",
           "--quiet", *extra]
    if storage:
        cmd += ["--storage", storage]
    return subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _wait(pred, timeout: float, what: str, procs=()):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return
        for p in procs:
            if p.poll() not in (None, 0):
                raise AssertionError(f"a worker exited with {p.returncode} while waiting for {what}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _status(ws: Path) -> list[dict]:
    out = []
    for f in (ws / ".bench" / "workers").glob("*.json"):
        try:
            out.append(json.loads(f.read_text()))
        except (OSError, ValueError):
            pass
    return out


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_on_postgres_survive_a_sigkill(tmp_path, pg_url):
    ws = tmp_path / "ws"
    # a few seconds of training, so that the SIGKILL below lands mid-cell even on an idle machine
    spec = parse_spec(tiny("pgkill", iterations=200), str(tmp_path / "pgkill.toml"))
    prep = prepare_run(RunOptions(spec=spec, folder=ws, results_url=pg_url, storage_url=pg_url,
                                  tracking_uri="none", progress=False, heartbeat_timeout=4))
    assert len(prep.cell_ids) == 4 and prep.n_trainings == 2
    a = _worker(ws, "pgkill", pg_url, pg_url)
    b = _worker(ws, "pgkill", pg_url, pg_url)
    try:
        # kill the worker that is training, in the middle of its cell
        def training() -> bool:
            return any(s.get("state") == "training" and (s.get("iteration") or 0) >= 3 for s in _status(ws))

        _wait(training, 240, "a training to be under way", (a, b))
        victim_id = next(s["worker"] for s in _status(ws) if s.get("state") == "training")
        victim_pid = int(victim_id.split(":")[1])
        victim = a if a.pid == victim_pid else b
        other = b if victim is a else a
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        assert other.wait(timeout=400) == 0
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.kill()
                p.wait()
    cells = q.cells(pg_url, "pgkill")
    assert list(cells["state"]) == ["done"] * 4
    killed = cells[cells["attempts"] > 1]
    assert len(killed) >= 1  # the killed worker's cell was handed over and run again
    assert (cells["worker"] == victim_id).sum() == 0  # every cell was finished by the survivor
    m = q.case_metrics(pg_url, "pgkill")
    assert len(m) == 4 * 2 * 3  # 4 cells x 2 test cases x 3 regions, each exactly once
    assert not m.duplicated(["cell_id", "case_id", "region"]).any()
    # a grid's cells are claimed in the results database: no Optuna study was created for it
    import optuna

    names = optuna.study.get_all_study_names(storage=pg_url.replace("postgresql://", "postgresql+psycopg://"))
    assert "bench:pgkill" not in names


def _bench_run(ws: Path, spec_file: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bench", "run", str(spec_file), "--workspace", str(ws), *extra],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_results(tmp_path):
    spec_file = tmp_path / "resume.toml"
    # long enough (a few seconds) that the Ctrl-C below lands mid-training even on an idle machine, where a
    # tiny iteration takes ~10 ms and 12 of them ended before the signal arrived
    spec_file.write_text(tiny("resume", factors='["patch_fusion"]', iterations=200))
    # uninterrupted, with the MLflow mirror on
    ws1 = tmp_path / "ws1"
    p = _bench_run(ws1, spec_file)
    out, err = p.communicate(timeout=400)
    assert p.returncode == 0, err
    assert "BL+patch_fusion" in out and "done" in out

    # interrupted with Ctrl-C (SIGINT) in the middle of the training, then run again
    ws2 = tmp_path / "ws2"
    p = _bench_run(ws2, spec_file, "--tracking", "none")
    _wait(lambda: any(s.get("state") == "training" and (s.get("iteration") or 0) >= 5 for s in _status(ws2)),
          300, "the training to pass iteration 5", (p,))
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "interrupted" in err
    mid = q.cells(f"sqlite:///{ws2}/.bench/results.db", "resume")
    assert "queued" in set(mid["state"]) and "running" not in set(mid["state"])
    assert list((ws2 / ".bench" / "trainings").glob("*/last.pt"))  # the checkpoint it continues from
    p = _bench_run(ws2, spec_file, "--tracking", "none")
    out, err = p.communicate(timeout=400)
    assert p.returncode == 0, err

    m1 = q.case_metrics(f"sqlite:///{ws1}/.bench/results.db", "resume")
    m2 = q.case_metrics(f"sqlite:///{ws2}/.bench/results.db", "resume")
    cols = ["label", "case_id", "region", "dice", "hd95", "sensitivity", "specificity", "penalty"]
    assert len(m1) == 2 * 2 * 3
    assert m1[cols].reset_index(drop=True).equals(m2[cols].reset_index(drop=True))

    # a third run finds nothing to do and trains nothing
    p = _bench_run(ws2, spec_file, "--tracking", "none")
    out, err = p.communicate(timeout=200)
    assert p.returncode == 0 and "0 trainings to run" in err

    # the MLflow mirror of the first workspace: one child run per cell with the trick params and final metrics
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{ws1}/.bench/mlflow.db")
    exp = client.get_experiment_by_name("resume")
    runs = client.search_runs([exp.experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 2
    by_label = {r.data.tags.get("label"): r for r in children}
    assert by_label["BL+patch_fusion"].data.params["trick.patch_fusion"] == "1"
    assert by_label["BL"].data.params["trick.patch_fusion"] == "0"
    wt = m1[(m1.label == "BL") & (m1.region == "WT")]["dice"].mean()
    assert by_label["BL"].data.metrics["dice_wt"] == pytest.approx(wt)
    cells = q.cells(f"sqlite:///{ws1}/.bench/results.db", "resume")
    assert set(cells["mlflow_run_id"]) == {r.info.run_id for r in children}


@pytest.mark.slow
def test_a_failed_cell_is_recorded_and_the_run_goes_on(tmp_path):
    # lr = 1e30 makes the loss explode: TrainingDiverged on every training of this spec
    spec_file = tmp_path / "diverge.toml"
    spec_file.write_text(tiny("diverge", factors='["patch_fusion"]', iterations=4).replace(
        "num_workers = 0", "num_workers = 0\nlr = 1e30\ngrad_clip = 0.0"))
    ws = tmp_path / "ws"
    p = _bench_run(ws, spec_file, "--tracking", "none")
    out, err = p.communicate(timeout=300)
    assert p.returncode == 1, err
    cells = q.cells(f"sqlite:///{ws}/.bench/results.db", "diverge")
    assert list(cells["state"]) == ["failed", "failed"]
    assert all("TrainingDiverged" in e or "not finite" in e for e in cells["error"])
    st = subprocess.run([sys.executable, "-m", "bench", "status", "diverge", "--workspace", str(ws)],
                        capture_output=True, text=True)
    assert st.returncode == 0 and st.stdout.count("failed") >= 2 and "not finite" in st.stdout
    # --retry-failed runs them again (and they fail again, for the same reason)
    p = _bench_run(ws, spec_file, "--tracking", "none", "--retry-failed")
    out, err = p.communicate(timeout=300)
    assert p.returncode == 1 and "retrying 2 failed cell(s)" in err
    cells = q.cells(f"sqlite:///{ws}/.bench/results.db", "diverge")
    assert list(cells["state"]) == ["failed", "failed"] and list(cells["attempts"]) == [2, 2]


@pytest.mark.slow
def test_optuna_search_asks_the_sampler_and_records_every_trial(tmp_path):
    spec_file = tmp_path / "search.toml"
    spec_file.write_text(tiny("srch", factors='["warmup", "focal_loss", "patch_fusion"]', iterations=4)
                         .replace('design = "full"', 'design = "optuna"')
                         .replace("threads = 1", "threads = 1\nval_every = 1\nval_cases = 1")
                         + "[optuna]\ntrials = 2\nsampler = \"random\"\npruner = \"none\"\n")
    ws = tmp_path / "ws"
    p = _bench_run(ws, spec_file, "--tracking", "none", "--trials", "3")
    out, err = p.communicate(timeout=400)
    assert p.returncode == 0, err
    url = f"sqlite:///{ws}/.bench/results.db"
    cells = q.cells(url, "srch")
    assert len(cells) == 3 and set(cells["state"]) == {"done"}  # --trials overrides the spec's 2
    assert cells["objective"].between(0, 1).all()  # mean validation Dice, not test
    conf = q.configurations(url, "srch")
    assert all(set(t) == {"warmup", "focal_loss", "patch_fusion"} for t in conf["toggles"])
    assert all(label.split(" #")[0].startswith("BL") for label in conf["label"])
    assert "trials = 3" in q.experiment_record(url, "srch").spec_toml
    import optuna

    study = optuna.load_study(study_name="bench:srch",
                              storage=optuna.storages.JournalStorage(
                                  optuna.storages.journal.JournalFileBackend(str(ws / ".bench/optuna.journal"))))
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 3
    assert sorted(t.value for t in complete) == pytest.approx(sorted(cells["objective"]))
    assert all("trick.warmup" in t.params for t in complete)
