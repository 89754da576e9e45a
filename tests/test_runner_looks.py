"""The runner side of adaptive designs with the real engine (tiny): looks taken once, after every cell of
the previous one finished; resumable; two workers on PostgreSQL take each look exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select
from tiny_spec import TINY_DATA_MODEL

from bench.design import design_for
from bench.runner import looks
from bench.runner.launch import RunOptions, launch, prepare_run
from bench.runner.spec import parse_spec
from bench.runner.worker import WorkerOptions, Workspace, run_worker
from bench.store import open_store
from bench.store import queries as q
from bench.store.models import Look

TINY = """
name = "{name}"
design = "{design}"
factors = {factors}
folds = {folds}
seeds = [0, 1]
[params]
warmup = {{ epochs = 1 }}
""" + TINY_DATA_MODEL + """[train]
iterations = 6
epoch_length = 2
val_every = 3
patch = 16
batch = 1
num_workers = 0
threads = 1
{extra}
"""
REP = "[replication]\nhalfwidth = 0.001\nlooks = [2, 3]\nmax_seeds = 3\nmargin = 0.0\n"


def tiny(name: str, design: str = "ladder", factors: str = '["warmup"]', folds: str = "[0]",
         extra: str = REP) -> str:
    return TINY.format(name=name, design=design, factors=factors, folds=folds, extra=extra)


def _looks(url: str) -> list[Look]:
    store = open_store(url)
    with store.session() as s:
        return [(lk.look, lk.complete, len(lk.cells), lk.decisions) for lk in
                s.scalars(select(Look).order_by(Look.look))]


def _check_replicated(url: str, name: str) -> None:
    cells = q.cells(url, name)
    assert set(cells["state"]) == {"done"}
    rows = _looks(url)
    assert [r[0] for r in rows] == list(range(len(rows)))  # one row per look, no gaps, no repeats
    assert rows[0][2] == 4 and rows[-1][1] and not any(r[1] for r in rows[:-1])
    first = rows[1][3]  # what look 1 decided from the first 2 seeds
    assert [d["name"] for d in first] == ["BL+warmup vs BL"]
    if first[0]["decided"]:
        assert len(cells) == 4 and len(rows) == 2
    else:  # both rows got the third seed at look 1, and look 2 ended the design at max_seeds
        assert len(cells) == 6 and sorted(cells["seed"]) == [0, 0, 1, 1, 2, 2]
        assert [r[2] for r in rows] == [4, 2, 0]
        assert rows[2][3][0]["reason"].startswith("budget") or rows[2][3][0]["decided"]
    by_seed = dict(zip(cells["seed"], cells["stage"]))
    assert by_seed[0] == by_seed[1] == "main" and by_seed.get(2, "look-2") == "look-2"


@pytest.mark.slow
def test_replicated_run_resumes_between_looks(tmp_path, capsys):
    spec = parse_spec(tiny("rep"), str(tmp_path / "rep.toml"))
    ws = tmp_path / "ws"
    url = f"sqlite:///{ws}/.bench/results.db"
    prep = prepare_run(RunOptions(spec=spec, folder=ws, tracking_uri="none", progress=False))
    assert prep.n_cells == 4  # 2 rows x the first look's 2 seeds
    # a worker that stops after the first look's cells, before the look
    run_worker(WorkerOptions(experiment="rep", workspace=Workspace(ws), results_url=url, tracking_uri="none",
                             threads=1, max_cells=4))
    assert len(q.cells(url, "rep")) == 4 and [r[0] for r in _looks(url)] == [0]
    res = launch(RunOptions(spec=spec, folder=ws, tracking_uri="none", progress=False, threads=1))
    assert res.exit_code == 0
    _check_replicated(url, "rep")
    from bench.cli import main

    assert main(["status", "rep", "--workspace", str(ws)]) == 0
    assert "BL+warmup vs BL" in capsys.readouterr().out
    assert res.counts == {"done": len(q.cells(url, "rep"))}
    # run again: nothing to do, no new look
    n = len(_looks(url))
    assert launch(RunOptions(spec=spec, folder=ws, tracking_uri="none", progress=False, threads=1)).exit_code == 0
    assert len(_looks(url)) == n


@pytest.mark.slow
def test_forward_run_end_to_end(tmp_path, capsys):
    # inference-only patch_fusion shares its training with the baseline; two CV folds pair the runs
    spec = parse_spec(tiny("fwd", "forward", '["warmup", "patch_fusion"]', "[0, 1]", ""), str(tmp_path / "f.toml"))
    ws = tmp_path / "ws"
    url = f"sqlite:///{ws}/.bench/results.db"
    res = launch(RunOptions(spec=spec, folder=ws, tracking_uri="none", progress=False, threads=1))
    assert res.exit_code == 0
    design = design_for(spec)
    r = looks.results(open_store(url), "fwd")
    steps = design.path(r)
    assert steps[0].finished and {c.trick for c in steps[0].candidates} == {"warmup", "patch_fusion"}
    cells = r.cells
    assert set(cells[cells["stage"] == "select-1"]["label"]) == {"BL", "BL+warmup", "BL+patch_fusion"}
    assert cells["objective"].notna().all()  # selection reads validation Dice
    ladder = design.ladder(r)
    confirm = cells[cells["stage"].str.startswith("confirm")]
    if ladder:
        assert set(confirm["seed"]) == set(design.confirm_seeds) and not set(confirm["seed"]) & {0, 1}
    else:
        assert confirm.empty
    assert _looks(url)[-1][1]  # the last look ended the design
    # bench status shows the decisions
    from bench.cli import main

    assert main(["status", "fwd", "--workspace", str(ws)]) == 0
    out = capsys.readouterr().out
    assert "adaptive design: look" in out and "select-1 (from BL)" in out
    # the report: Table 1 from the confirmation runs, the selection path apart
    from bench.report.build import build_report

    rep = build_report(url, "fwd", out=tmp_path / "reports", formats=("markdown", "csv"), plots=False,
                       log_mlflow=False, n_boot=50)
    sel = (rep.out_dir / "selection.md").read_text()
    assert "| select-1 | BL | BL+warmup |" in sel and "| select-1 | BL | BL+patch_fusion |" in sel
    confirmed = [c.label for c in design.confirmations(r) if c.status == "confirmed"]
    assert rep.analysis.labels == ["BL", *confirmed]


def _worker(ws: Path, experiment: str, url: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "bench", "worker", experiment, "--workspace", str(ws), "--results", url,
           "--storage", url, "--tracking", "none", "--threads", "1", "--heartbeat-interval", "0.5",
           "--heartbeat-timeout", "20", "--quiet"]
    return subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_on_postgres_take_each_look_once(tmp_path, pg_url):
    spec = parse_spec(tiny("pgrep"), str(tmp_path / "pgrep.toml"))
    ws = tmp_path / "ws"
    prepare_run(RunOptions(spec=spec, folder=ws, results_url=pg_url, storage_url=pg_url, tracking_uri="none",
                           progress=False))
    procs = [_worker(ws, "pgrep", pg_url) for _ in range(2)]
    try:
        assert [p.wait(timeout=600) for p in procs] == [0, 0]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    _check_replicated(pg_url, "pgrep")
    cells = q.cells(pg_url, "pgrep")
    assert not cells.duplicated(["label", "fold", "seed"]).any()
    m = q.case_metrics(pg_url, "pgrep")
    assert len(m) == len(cells) * 2 * 3 and not m.duplicated(["cell_id", "case_id", "region"]).any()
