"""The work queue (Optuna journal storage) and the leases in the results database, without training."""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
from pathlib import Path

import pytest
from sqlalchemy import update

from bench.runner import locks, state
from bench.runner.plan import plan
from bench.runner.queue import WorkQueue, open_storage
from bench.runner.spec import parse_spec
from bench.store import open_store
from bench.store.models import Cell

SPEC = """
name = "q"
design = "full"
factors = ["warmup", "patch_fusion", "heuristic_sampling"]
folds = [0]
seeds = [0]
[data]
path = "synthetic"
folds = 3
"""


@pytest.fixture
def registered(tmp_path):
    spec = parse_spec(SPEC)
    store = open_store(tmp_path / "r.db")
    ids = [cid for cid, _ in state.register_experiment(store, spec, plan(spec))]
    return store, ids, tmp_path


def _pop_all(folder: str, out) -> None:
    q = WorkQueue(open_storage(None, Path(folder)), "q")
    got = []
    while (t := q.pop()) is not None:
        got.append(t.user_attrs["cell_id"])
        q.finish(t, "complete", 0.5)
    out.put(got)


def test_two_processes_pop_every_cell_exactly_once(registered):
    store, ids, tmp = registered
    q = WorkQueue(open_storage(None, tmp), "q")
    assert q.enqueue(ids) == 8
    assert q.enqueue(ids) == 0  # already queued: nothing twice
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_pop_all, args=(str(tmp), out)) for _ in range(2)]
    for p in procs:
        p.start()
    got = out.get(timeout=60) + out.get(timeout=60)
    for p in procs:
        p.join(timeout=60)
    assert sorted(got) == sorted(ids)
    assert q.pop() is None and not q.active()


def test_cell_leases_are_compare_and_set(registered):
    store, ids, _ = registered
    cid = ids[0]
    a, b = "otherhost:1:aaaaaa", "otherhost:2:bbbbbb"
    assert state.claim_cell(store, cid, a, "cpu", timeout=60)
    assert not state.claim_cell(store, cid, b, "cpu", timeout=60)  # held, heartbeat fresh
    assert state.heartbeat_cell(store, cid, a)
    # a's heartbeat goes quiet for longer than the timeout: b takes over, a finds out
    with store.session() as s:
        s.execute(update(Cell).where(Cell.id == cid).values(
            heartbeat_at=state.utcnow() - dt.timedelta(seconds=120)))
    assert state.claim_cell(store, cid, b, "cpu", timeout=60)
    assert not state.heartbeat_cell(store, cid, a)
    metric = {"case_id": "c", "region": "WT", "dice": 1.0, "hd95": 0.0, "sensitivity": 1.0, "specificity": 1.0,
              "penalty": False}
    assert not state.finish_cell(store, cid, a, [metric], [])  # the stalled worker's result is discarded
    assert state.finish_cell(store, cid, b, [metric], [])
    assert not state.claim_cell(store, cid, a, "cpu", timeout=60)  # done stays done
    from bench.store import queries as q

    cells = q.cells(store, "q")
    row = cells[cells.cell_id == cid].iloc[0]
    assert row.state == "done" and row.worker == b and row.attempts == 2
    assert len(q.case_metrics(store, "q")) == 1


def test_a_dead_process_on_this_host_is_stale_at_once():
    ctx = mp.get_context("fork")
    p = ctx.Process(target=lambda: None)
    p.start()
    p.join()
    holder = f"{state._HOST}:{p.pid}:abcdef"
    fresh = state.utcnow()
    assert state.is_stale(holder, fresh, timeout=3600)
    assert not state.is_stale("elsewhere:1:abcdef", fresh, timeout=3600)
    assert state.is_stale("elsewhere:1:abcdef", fresh - dt.timedelta(seconds=10), timeout=5)


def test_recover_hands_a_dead_workers_cell_back_once(registered):
    store, ids, tmp = registered
    q1 = WorkQueue(open_storage(None, tmp), "q")
    q1.enqueue(ids[:1])
    trial = q1.pop()
    assert state.claim_cell(store, ids[0], "otherhost:9:dead00", "cpu", timeout=5)
    with store.session() as s:
        s.execute(update(Cell).where(Cell.id == ids[0]).values(
            heartbeat_at=state.utcnow() - dt.timedelta(seconds=30)))
    q2 = WorkQueue(open_storage(None, tmp), "q")
    assert q1.recover(store, timeout=5) + q2.recover(store, timeout=5) == 1
    assert not q1.finish(trial, "complete", 1.0)  # the dead worker's trial was closed by the recoverer
    again = q2.pop()
    assert again is not None and again.user_attrs["cell_id"] == ids[0]
    assert state.claim_cell(store, ids[0], "thishost:1:new000", "cpu", timeout=5)


def test_training_lock(registered):
    store, _, _ = registered
    a, b = "otherhost:1:aaaaaa", "otherhost:2:bbbbbb"
    assert locks.claim_training(store, "k1", 0, 0, a, timeout=60)[0] == "claimed"
    assert locks.claim_training(store, "k1", 0, 0, b, timeout=60)[0] == "busy"
    locks.finish_training(store, "k1", a, "/x/final.pt", 1.0, 10,
                          [{"iteration": 5, "epoch": 1, "loss": 0.5, "lr": 0.01},
                           {"iteration": 10, "epoch": 2, "loss": 0.4, "val_dice_ET": 0.1, "val_dice_TC": 0.2,
                            "val_dice_WT": 0.3}])
    status, row = locks.claim_training(store, "k1", 0, 0, b, timeout=60)
    assert status == "done" and row.checkpoint == "/x/final.pt"
    locks.fail_training(store, "k2", a, "x")  # nothing to fail: no row
    assert locks.claim_training(store, "k2", 0, 0, a, timeout=60)[0] == "claimed"
    locks.fail_training(store, "k2", a, "TrainingDiverged")
    assert locks.claim_training(store, "k2", 0, 0, b, timeout=60)[0] == "claimed"  # a failed training is retried


def _register_at_once(url: str, barrier, out) -> None:
    spec = parse_spec(SPEC.replace('name = "q"', 'name = "race"'))
    store = open_store(url)
    p = plan(spec)
    barrier.wait()
    try:
        out.put([cid for cid, _ in state.register_experiment(store, spec, p)])
    except Exception as exc:  # reported to the test, which fails on it
        out.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.slow
def test_simultaneous_first_launches_register_one_experiment(pg_url) -> None:
    """Several machines launching the same new spec at once: one experiment, the same cells for all of them."""
    open_store(pg_url)  # schema created once, as the first launch would
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(6), ctx.Queue()
    procs = [ctx.Process(target=_register_at_once, args=(pg_url, barrier, out)) for _ in range(6)]
    for pr in procs:
        pr.start()
    got = [out.get(timeout=120) for _ in procs]
    for pr in procs:
        pr.join(timeout=30)
    assert all(isinstance(g, list) for g in got), got
    assert all(g == got[0] for g in got) and len(got[0]) == 8
    store = open_store(pg_url)
    from sqlalchemy import func, select

    from bench.store.models import Experiment

    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Experiment)) == 1
        assert s.scalar(select(func.count()).select_from(Cell)) == 8
