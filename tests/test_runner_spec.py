"""Specs and planning: validation messages, shipped specs, designs, labels, training-key sharing, and bad specs
leaving every database untouched."""

from __future__ import annotations

import hashlib
import importlib.resources
import re
from pathlib import Path

import pytest

from bench.cli import main
from bench.errors import SpecError
from bench.runner.plan import plan, training_plan
from bench.runner.spec import load_spec, packaged_specs, parse_spec

SHIPPED = ("demo", "table1", "table1-cpu", "search", "brats-cpu")

BASE = """
name = "t"
design = "full"
fixed = ["dense_blocks"]
factors = ["warmup", "patch_fusion"]
folds = [0]
seeds = [0, 1]
[data]
path = "synthetic"
folds = 3
[train]
iterations = 4
"""


def test_every_shipped_spec_validates_and_plans():
    assert set(SHIPPED) <= set(packaged_specs())
    # the same files are reachable from any folder through the installed package
    assert (importlib.resources.files("bench.runs") / "demo.toml").is_file()
    for name in SHIPPED:
        spec = load_spec(name, check_data=False)
        assert spec.name == name
        p = plan(spec)
        if spec.design != "optuna":
            assert len(p.cells) == len(p.configurations) * len(spec.folds) * len(spec.seeds) > 0
            assert not p.refused
    demo = load_spec(None)
    assert demo.name == "demo" and demo.design == "full" and len(demo.factors) >= 4
    from tricks import get

    assert any(get(f).phase == "inference" for f in demo.factors)


def test_real_data_specs_name_the_missing_folder():
    with pytest.raises(SpecError, match=r"runs/table1.toml: data.path = .*no such folder"):
        load_spec("table1")


def test_ladder_rows_and_labels_like_the_paper():
    spec = load_spec("table1-cpu")
    p = plan(spec)
    assert [c.label for c in p.configurations] == ["BL", "BL+warmup", "BL+warmup+fuse", "BL+warmup+fuse+pseudo label"]
    assert p.configurations[2].tricks == ("dense_blocks", "self_ensemble", "warmup", "model_fusion")
    assert p.configurations[1].toggles == {"warmup": 1, "model_fusion": 0, "semi_supervised": 0}
    assert p.configurations[1].params["warmup"]["epochs"] == 1  # from the spec
    assert "layers" in p.configurations[0].params["dense_blocks"]  # defaults filled in


def test_full_grid_design_order_and_inference_tricks_share_trainings():
    spec = parse_spec(BASE)
    p = plan(spec)
    assert [c.label for c in p.configurations] == ["BL", "BL+warmup", "BL+patch_fusion", "BL+warmup+patch_fusion"]
    assert len(p.cells) == 8
    keys = {training_plan(spec, c.configuration, c.fold, c.seed, "fp", 3)[0][1] for c in p.cells}
    assert len(keys) == 4  # 2 training configurations x 2 seeds: patch_fusion shares checkpoints


def test_model_fusion_needs_every_fold_training():
    spec = load_spec("table1-cpu")
    p = plan(spec)
    fuse = next(c for c in p.cells if c.label == "BL+warmup+fuse" and c.fold == 1)
    tp = training_plan(spec, fuse.configuration, 1, 0, "fp", 3)
    assert [f for f, _ in tp] == [1, 0, 2]
    warm = {training_plan(spec, c.configuration, c.fold, 0, "fp", 3)[0][1]
            for c in p.cells if c.label == "BL+warmup"}
    assert {k for _, k in tp} == warm  # fusion reuses the BL+warmup fold trainings


def test_refused_grid_combinations_are_listed_with_the_reason():
    spec = parse_spec(BASE.replace('factors = ["warmup", "patch_fusion"]', 'factors = ["focal_loss", "hard_mining"]'))
    p = plan(spec)
    assert len(p.configurations) == 4
    (refused,) = p.refused
    assert refused.label == "BL+focal_loss+hard_mining"
    assert "focal_loss" in refused.refused and "hard_mining" in refused.refused and "conflict" in refused.refused


BAD = [
    ("seed = [1]\n" + BASE, r"unknown key 'seed' in the top level; did you mean 'seeds'\?"),
    (BASE.replace("iterations = 4", "iteration = 4"), r"unknown key 'iteration' in \[train\]; did you mean 'iterations'"),
    (BASE.replace('"warmup"', '"warmpu"', 1), r"factors: unknown trick 'warmpu'; did you mean 'warmup'"),
    (BASE.replace("iterations = 4", 'iterations = "many"'), r"train.iterations = 'many' must be an integer"),
    (BASE.replace("iterations = 4", "lr = -1.0"), r"train.lr: -1.0 must be > 0"),
    (BASE.replace("iterations = 4", "fold = 1"), r"train.fold cannot be set in a spec"),
    (BASE.replace("folds = [0]", "folds = [3]"), r"folds = \[3\]: fold 3 does not exist"),
    (BASE.replace('design = "full"', 'design = "grid"'), r"design = 'grid' is not one of"),
    (BASE.replace('design = "full"', 'design = "ladder"').replace('"warmup", "patch_fusion"', '"focal_loss", "hard_mining"'),
     r"ladder row 'BL\+focal_loss\+hard_mining'.*conflict"),
    (BASE.replace('path = "synthetic"', 'path = "/no/such/folder"'), r"data.path = '/no/such/folder': no such folder"),
    (BASE + "[params]\nwarmup = { epochs = -3 }\n", r"warmup.*epochs"),
    (BASE.replace("seeds = [0, 1]", "seeds = 2"), r"seeds = 2 must be a non-empty list"),
    ('name = "a b"\n' + BASE.replace('name = "t"\n', ""), r"name = 'a b'"),
]


@pytest.mark.parametrize("text,message", BAD, ids=[m[:30] for _, m in BAD])
def test_bad_specs_name_the_key(text, message):
    with pytest.raises(SpecError, match=message) as exc:
        parse_spec(text, "bad.toml")
    assert str(exc.value).startswith("bad.toml: ")


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.endswith(("-wal", "-shm"))}


def test_bad_specs_exit_2_and_leave_the_databases_unchanged(tmp_path, capsys):
    from bench.runner import state
    from bench.runner.queue import WorkQueue, open_storage
    from bench.store import open_store

    ws = tmp_path / "ws"
    (ws / ".bench").mkdir(parents=True)
    good = parse_spec(BASE)
    store = open_store(f"sqlite:///{ws}/.bench/results.db")
    ids = [cid for cid, _ in state.register_experiment(store, good, plan(good))]
    WorkQueue(open_storage(None, ws / ".bench"), good.name).enqueue(ids)
    store.engine.dispose()
    before = _digest(ws)
    for i, (text, message) in enumerate(BAD):
        f = tmp_path / f"bad{i}.toml"
        f.write_text(text)
        rc = main(["run", str(f), "--workspace", str(ws), "--tracking", "none"])
        err = capsys.readouterr().err.strip()
        assert rc == 2, err
        assert len(err.splitlines()) == 1 and err.startswith("bench: error: ") and str(f) in err
        assert re.search(message, err), err
    # same name, other budget: refused before anything is written
    f = tmp_path / "changed.toml"
    f.write_text(BASE.replace("iterations = 4", "iterations = 5"))
    assert main(["run", str(f), "--workspace", str(ws), "--tracking", "none"]) == 2
    assert "train.iterations: 4 -> 5" in capsys.readouterr().err
    assert main(["run", "--workers", "0", "--workspace", str(ws)]) == 2
    assert main(["run", "--devices", "gpu7", "--workspace", str(ws)]) == 2
    assert main(["run", "nosuchspec", "--workspace", str(ws)]) == 2
    capsys.readouterr()
    from bench.store.session import dispose_engines

    dispose_engines()  # closing the last connection folds any WAL content into the database file
    assert _digest(ws) == before


def test_register_is_idempotent_and_extending_adds_only_new_cells(tmp_path):
    from bench.runner import state
    from bench.store import open_store
    from bench.store import queries as q

    store = open_store(tmp_path / "r.db")
    spec = parse_spec(BASE)
    first = state.register_experiment(store, spec, plan(spec))
    assert state.register_experiment(store, spec, plan(spec)) == first
    bigger = parse_spec(BASE.replace('"warmup", "patch_fusion"', '"warmup", "patch_fusion", "heuristic_sampling"')
                        .replace("seeds = [0, 1]", "seeds = [0, 1, 2]"))
    second = state.register_experiment(store, bigger, plan(bigger))
    assert len(second) == 8 * 3
    assert {cid for cid, _ in first} <= {cid for cid, _ in second}
    conf = q.configurations(store, "t")
    assert list(conf["label"][:4]) == ["BL", "BL+warmup", "BL+patch_fusion", "BL+warmup+patch_fusion"]
    assert conf.loc[1, "toggles"] == {"warmup": 1, "patch_fusion": 0, "heuristic_sampling": 0}
