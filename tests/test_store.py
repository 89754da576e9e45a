"""The results database: migrations, the ORM, the query helpers (SQLite here; PostgreSQL in the runner tests)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import inspect

from bench.errors import StoreError
from bench.store import open_store, redact_url
from bench.store import queries as q
from bench.store.models import (
    Base,
    CaseMetric,
    Cell,
    CellTraining,
    Configuration,
    CurvePoint,
    Experiment,
    Training,
)
from bench.store.session import VERSION_TABLE, current_revision, head_revision


def _fill(url: str) -> None:
    store = open_store(url)
    with store.session() as s:
        e = Experiment(name="demo", design="ladder", spec_toml='name = "demo"\n', spec_hash="h",
                       factors=["warmup", "patch_fusion"], baseline_label="BL")
        s.add(e)
        s.flush()
        labels = ["BL", "BL+warmup"]
        for pos, label in enumerate(labels):
            c = Configuration(experiment_id=e.id, label=label, position=pos, config_hash=f"c{pos}",
                              tricks=["dense_blocks"] + (["warmup"] if pos else []),
                              toggles={"warmup": pos, "patch_fusion": 0},
                              params={"warmup": {"epochs": 2}} if pos else {})
            s.add(c)
            s.flush()
            for fold in (0, 1):
                key = f"k{pos}{fold}"
                s.add(Training(key=key, fold=fold, seed=0, state="done", checkpoint=f"/x/{key}.pt"))
                cell = Cell(experiment_id=e.id, configuration_id=c.id, fold=fold, seed=0,
                            state="done" if fold == 0 else "failed", training_key=key,
                            error=None if fold == 0 else "TrainingDiverged: loss is not finite",
                            train_seconds=1.5, packages={"torch": "2"},
                            finished_at=dt.datetime.now(dt.timezone.utc))
                s.add(cell)
                s.flush()
                s.add(CellTraining(cell_id=cell.id, training_key=key))
                for case in ("c1", "c2"):
                    for region, d in zip(("ET", "TC", "WT"), (0.5, 0.6, 0.7)):
                        s.add(CaseMetric(cell_id=cell.id, case_id=case, region=region, dice=d + 0.1 * pos,
                                         hd95=373.13 if region == "ET" and case == "c2" else 3.0,
                                         sensitivity=0.9, specificity=0.99,
                                         penalty=region == "ET" and case == "c2"))
                for it in (10, 20):
                    s.add(CurvePoint(training_key=key, epoch=it // 10, iteration=it, train_loss=1.0 / it, lr=0.01,
                                     val_dice_et=None if it == 10 else 0.4, val_dice_tc=0.5, val_dice_wt=0.6))


def test_migrations_create_the_schema_of_the_models(tmp_path):
    url = f"sqlite:///{tmp_path}/r.db"
    store = open_store(url)
    assert current_revision(store.engine) == head_revision()
    tables = set(inspect(store.engine).get_table_names())
    assert set(Base.metadata.tables) <= tables and VERSION_TABLE in tables

    # The migration and the ORM models agree column by column (autogenerate finds nothing to do).
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        diff = [d for d in compare_metadata(ctx, Base.metadata) if VERSION_TABLE not in str(d)]
    assert diff == []
    # Opening again is a no-op and keeps the data.
    _fill(url)
    assert len(q.cells(open_store(url), "demo")) == 4


def test_queries_read_back_what_the_orm_wrote(tmp_path):
    url = f"sqlite:///{tmp_path}/r.db"
    _fill(url)
    ex = q.experiments(url)
    assert ex.loc[0, "name"] == "demo" and ex.loc[0, "n_cells"] == 4
    assert ex.loc[0, "n_done"] == 2 and ex.loc[0, "n_failed"] == 2

    conf = q.configurations(url, "demo")
    assert list(conf["label"]) == ["BL", "BL+warmup"]
    assert conf.loc[1, "toggles"] == {"warmup": 1, "patch_fusion": 0}
    assert conf.loc[1, "params"] == {"warmup": {"epochs": 2}}
    assert conf.loc[1, "tricks"] == ["dense_blocks", "warmup"]

    cl = q.cells(url, "demo")
    assert list(zip(cl["label"], cl["fold"], cl["state"])) == [
        ("BL", 0, "done"), ("BL", 1, "failed"), ("BL+warmup", 0, "done"), ("BL+warmup", 1, "failed")]
    assert cl.loc[1, "error"].startswith("TrainingDiverged")
    assert cl.loc[0, "packages"] == {"torch": "2"}

    m = q.case_metrics(url, "demo")
    assert len(m) == 2 * 2 * 3  # done cells only x cases x regions
    assert m["penalty"].dtype == bool and int(m["penalty"].sum()) == 2
    bl = m[(m.label == "BL+warmup") & (m.region == "WT")]
    assert bl["dice"].tolist() == pytest.approx([0.8, 0.8])
    assert len(q.case_metrics(url, "demo", only_done=False)) == 24

    cv = q.curves(url, "demo")
    assert len(cv) == 8 and cv["val_dice_et"].isna().sum() == 4
    assert list(cv[cv.cell_id == cl.loc[0, "cell_id"]]["iteration"]) == [10, 20]

    tr = q.trainings(url, "demo")
    assert list(tr["training_key"]) == ["k00", "k01", "k10", "k11"]
    assert tr.loc[0, "cells"] == [int(cl.loc[0, "cell_id"])] and tr.loc[0, "state"] == "done"

    rec = q.experiment_record(url, "demo")
    assert rec.design == "ladder" and rec.baseline_label == "BL" and rec.factors == ["warmup", "patch_fusion"]
    assert rec.labels == ["BL", "BL+warmup"] and rec.spec_toml.startswith("name")


def test_unknown_experiment_names_the_known_ones(tmp_path):
    url = f"sqlite:///{tmp_path}/r.db"
    _fill(url)
    with pytest.raises(StoreError, match=r"'nope'.*known: demo"):
        q.cells(url, "nope")


def test_session_rolls_back_on_error(tmp_path):
    store = open_store(tmp_path / "r.db")
    with pytest.raises(RuntimeError), store.session() as s:
        s.add(Experiment(name="x", design="full", spec_toml="", spec_hash="h", factors=[]))
        s.flush()
        raise RuntimeError("boom")
    assert q.experiments(store).empty


def test_redact_url_hides_passwords():
    assert redact_url("postgresql://bob:s3cret@db:5432/bench") == "postgresql://bob:***@db:5432/bench"
    assert "s3cret" not in redact_url("postgresql+psycopg://bob:s3cret@db/bench")
    assert redact_url("sqlite:///.bench/results.db") == "sqlite:///.bench/results.db"
    assert "pw" not in redact_url("http://u:pw@host:5000/x")


def test_a_bad_url_is_a_store_error(tmp_path):
    with pytest.raises(StoreError, match="cannot open"):
        open_store("postgresql://nobody:pw@127.0.0.1:1/nothing")
    with pytest.raises(StoreError, match="not a valid"):
        open_store("nota://url:with:colons")
