"""Fixed splits (test IDs, nnU-Net's splits_final.json, bench's splits.json), their validation, and small sets
(1-4 cases) that train with as many folds as the cases allow."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench.data.prepare import prepare
from bench.errors import DataError, SpecError

ALL = [f"BraTS19_SYN_{i:03d}" for i in range(1, 11)]
TINY = ["--iterations", "2", "--epoch-length", "1", "--patch", "16", "--batch", "1", "--width", "4", "--depth", "2",
        "--workers", "0"]


def _subset(synth_raw: Path, root: Path, n: int) -> Path:
    root.mkdir()
    for cid in ALL[:n]:
        os.symlink(synth_raw / cid, root / cid)
    return root


def _splits_json(ds) -> dict:
    return json.loads((ds.root / "splits.json").read_text())


def test_test_ids_reproduce_the_test_set_exactly(synth_raw: Path, tmp_path: Path) -> None:
    ids = [ALL[7], ALL[2], ALL[4]]
    (tmp_path / "test.txt").write_text("# held out\n" + "\n".join(ids) + "\n\n")
    ds = prepare(synth_raw, tmp_path / "c", folds=3, test_ids=tmp_path / "test.txt", progress=False)
    saved = _splits_json(ds)
    assert saved["test"] == sorted(ids) and ds.test_ids() == sorted(ids) and saved["source"] == "test_ids"
    folds = [set(ds.val_ids(f)) for f in range(3)]
    assert set().union(*folds) == set(ALL) - set(ids) and sum(map(len, folds)) == 7
    for f in range(3):
        assert set(ds.train_ids(f)) == set(ALL) - set(ids) - folds[f]
    same = prepare(synth_raw, tmp_path / "c", folds=3, test_ids=list(reversed(ids)), progress=False)
    assert same.root == ds.root  # the same split, the same cache
    other = prepare(synth_raw, tmp_path / "c", folds=3, test_ids=ids[:2], progress=False)
    assert other.fingerprint != ds.fingerprint and other.test_ids() == sorted(ids[:2])
    drawn = prepare(synth_raw, tmp_path / "c", folds=3, progress=False)
    assert drawn.fingerprint not in (ds.fingerprint, other.fingerprint)


def test_nnunet_splits_final_sets_train_and_val(synth_raw: Path, tmp_path: Path) -> None:
    folds = [{"train": ALL[2:6], "val": ALL[6:8]}, {"train": ALL[4:8], "val": ALL[2:4]}]
    path = tmp_path / "splits_final.json"
    path.write_text(json.dumps(folds))
    ds = prepare(synth_raw, tmp_path / "c", splits=path, test_ids=ALL[:2], progress=False)
    assert ds.n_folds == 2 and ds.test_ids() == ALL[:2]
    assert ds.train_ids(0) == ALL[2:6] and ds.val_ids(0) == ALL[6:8]
    assert ds.train_ids(1) == ALL[4:8] and ds.val_ids(1) == ALL[2:4]
    assert ds.unassigned_ids() == ALL[8:] and ds.split_source == "nnunet"
    path.write_text(json.dumps([{"train": ALL[2:6], "val": ALL[6:9]}, folds[1]]))  # a changed file: a new cache
    assert prepare(synth_raw, tmp_path / "c", splits=path, test_ids=ALL[:2], progress=False).root != ds.root


def test_bench_splits_json_round_trips(synth_raw: Path, tmp_path: Path) -> None:
    first = prepare(synth_raw, tmp_path / "c", folds=3, split_seed=4, progress=False)
    again = prepare(synth_raw, tmp_path / "c2", splits=first.root / "splits.json", progress=False)
    assert again.test_ids() == first.test_ids() and again.split_source == "bench"
    for f in range(3):
        assert again.val_ids(f) == first.val_ids(f) and again.train_ids(f) == first.train_ids(f)
    assert again.unassigned_ids() == []


@pytest.mark.parametrize("content,fragment", [
    ([{"train": ALL[2:6], "val": ["BraTS19_SYN_0077"]}], "--splits: fold 0 val: 1 unknown case ID(s): "
     "BraTS19_SYN_0077; closest existing ID to BraTS19_SYN_0077: BraTS19_SYN_007"),
    ([{"train": ALL[0:6], "val": ALL[6:8]}], "--splits: fold 0 holds test case(s) BraTS19_SYN_001"),
    ([{"train": ALL[2:6], "val": ALL[5:8]}], "fold 0 has case(s) BraTS19_SYN_006 in both train and val"),
    ([{"train": ALL[2:6], "val": ALL[6:8]}, {"train": ALL[2:8], "val": []}], "fold 1 has no validation case"),
    ([{"train": [], "val": ALL[6:8]}], "fold 0 has no training case"),
    ({"folds": 3}, "expected nnU-Net's splits_final.json"),
])
def test_bad_split_files_are_one_line_errors(content, fragment: str, synth_raw: Path, tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps(content))
    with pytest.raises(DataError) as err:
        prepare(synth_raw, tmp_path / "c", splits=path, test_ids=ALL[:2], progress=False)
    assert fragment in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())


def test_unknown_test_id_names_the_closest(synth_raw: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"--test-ids: 1 unknown case ID\(s\): BraTS19_SYN_01; closest existing "
                                        r"ID to BraTS19_SYN_01: BraTS19_SYN_010"):
        prepare(synth_raw, tmp_path / "c", test_ids=["BraTS19_SYN_01", ALL[0]], progress=False)


def test_too_few_cases_name_the_callers_options(synth_raw: Path, tmp_path: Path) -> None:
    root = _subset(synth_raw, tmp_path / "four", 4)
    with pytest.raises(SpecError, match="lower --folds or --test-fraction"):
        prepare(root, tmp_path / "c", progress=False)
    with pytest.raises(SpecError, match="lower data.folds or data.test_fraction"):
        prepare(root, tmp_path / "c", options=("data.folds", "data.test_fraction"), progress=False)
    ds = prepare(root, tmp_path / "c", lower_folds=True, progress=False)
    assert ds.n_folds == 3 and len(ds.test_ids()) == 1


@pytest.mark.parametrize("n,folds,n_test,n_train", [(1, 1, 0, 1), (2, 2, 0, 1), (3, 2, 1, 1), (4, 3, 1, 2)])
def test_train_and_predict_on_one_to_four_cases(n: int, folds: int, n_test: int, n_train: int, synth_raw: Path,
                                               run_cli, tmp_path: Path) -> None:
    root = _subset(synth_raw, tmp_path / f"set{n}", n)
    out, cache = tmp_path / "o", tmp_path / "c"
    r = run_cli("train", "--data", str(root), "--out", str(out), "--cache", str(cache), *TINY)
    assert r.code == 0, r.err
    assert f"{n} labeled cases allow only {folds} fold(s)" in r.err and "trained 2 iterations" in r.out
    from bench.data.prepare import PreparedDataset

    ds = PreparedDataset.open(next(p for p in cache.iterdir() if not p.name.startswith(".")))
    assert ds.n_folds == folds and len(ds.test_ids()) == n_test and len(ds.train_ids(0)) == n_train
    r = run_cli("predict", "--model", str(out / "final.pt"), "--data", str(root), "--cache", str(cache),
                "--out", str(tmp_path / "pred"))
    assert r.code == 0, r.err
    assert len(list((tmp_path / "pred").glob("*.nii.gz"))) == n


def test_train_with_explicit_folds_names_only_train_options(synth_raw: Path, run_cli, tmp_path: Path) -> None:
    root = _subset(synth_raw, tmp_path / "three", 3)
    r = run_cli("train", "--data", str(root), "--folds", "5", "--out", str(tmp_path / "o"),
                "--cache", str(tmp_path / "c"), *TINY)
    assert r.code == 2 and r.err.count("\n") == 1
    assert "lower --folds or --test-fraction" in r.err
    r = run_cli("predict", "--model", str(tmp_path / "x.pt"), "--data", str(root), "--out", str(tmp_path / "p"))
    assert r.code == 2  # a missing model is refused before any data work


def test_cli_test_ids_and_splits(synth_raw: Path, run_cli, tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text(f"{ALL[0]}\n{ALL[9]}\n")
    (tmp_path / "s.json").write_text(json.dumps([{"train": ALL[1:5], "val": ALL[5:7]}]))
    r = run_cli("data", "prepare", str(synth_raw), "--cache", str(tmp_path / "c"), "--test-ids",
                str(tmp_path / "t.txt"), "--splits", str(tmp_path / "s.json"))
    assert r.code == 0, r.err
    assert "1 folds; test cases: 2" in r.out
    assert "2 labeled case(s) are in no split and are not used: BraTS19_SYN_008, BraTS19_SYN_009\n" in r.err
    r = run_cli("data", "prepare", str(synth_raw), "--cache", str(tmp_path / "c"), "--test-ids",
                str(tmp_path / "missing.txt"))
    assert r.code == 2 and "--test-ids" in r.err and "cannot be read" in r.err and r.err.count("\n") == 1


def test_spec_keys_test_ids_and_splits(tmp_path: Path, synth_raw: Path) -> None:
    from bench.runner.spec import parse_spec

    (tmp_path / "test.txt").write_text(f"{ALL[0]}\n")
    (tmp_path / "splits_final.json").write_text(json.dumps([{"train": ALL[1:5], "val": ALL[5:7]},
                                                             {"train": ALL[3:7], "val": ALL[1:3]}]))
    spec_file = tmp_path / "exp.toml"
    base = f'name = "x"\nfactors = ["warmup"]\n[data]\npath = "{synth_raw}"\n'
    spec = parse_spec(base + 'test_ids = "test.txt"\nsplits = "splits_final.json"\n', str(spec_file))
    assert spec.data.test_ids == str(tmp_path / "test.txt") and spec.data.folds == 2
    spec = parse_spec(base + f'test_ids = ["{ALL[0]}", "{ALL[1]}"]\n', str(spec_file))
    assert spec.data.test_ids == (ALL[0], ALL[1])
    with pytest.raises(SpecError, match="data.test_ids = 3 must be a list of case IDs"):
        parse_spec(base + "test_ids = 3\n", str(spec_file))
    with pytest.raises(SpecError, match="data.splits = 'nope.json': no such file"):
        parse_spec(base + 'splits = "nope.json"\n', str(spec_file))


def test_run_test_ids_file_errors_name_the_option(run_cli, tmp_path: Path) -> None:
    r = run_cli("run", "demo", "--workspace", str(tmp_path), "--test-ids", str(tmp_path / "none.txt"))
    assert r.code == 2 and r.err.count("\n") == 1
    assert f"--test-ids {tmp_path / 'none.txt'}: cannot be read" in r.err
