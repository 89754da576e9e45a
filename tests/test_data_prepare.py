"""The prepared cache: exact crop round trip, normalisation, splits, fingerprint and rebuilds, atomicity."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import bench.data.prepare as prep
from bench.data.formats import brats_to_classes
from bench.data.prepare import (
    PreparedDataset,
    classes_to_source_labels,
    make_splits,
    prepare,
    probs_to_source_labels,
    to_source_grid,
)
from bench.data.readers import list_cases, read_case
from bench.errors import DataError, SpecError


def test_ids_and_splits(prepared: PreparedDataset) -> None:
    ids = prepared.case_ids
    assert ids == [f"BraTS19_SYN_{i:03d}" for i in range(1, 11)]
    assert prepared.unlabeled_ids == ["BRATS_U001", "BRATS_U002"]
    assert prepared.n_folds == 3
    test = prepared.test_ids()
    assert len(test) == 2
    vals = [prepared.val_ids(f) for f in range(3)]
    assert sorted(len(v) for v in vals) == [2, 3, 3]
    assert sorted(sum(vals, []) + test) == ids  # folds partition everything outside the test split
    for f in range(3):
        train = prepared.train_ids(f)
        assert not set(train) & set(test) and not set(train) & set(vals[f])
        assert sorted(train + vals[f] + test) == ids
    # stratified: the two no-ET cases do not share a split
    no_et = [c for c in ids if not prepared.has_et(c)]
    assert len(no_et) == 2
    homes = ["test" if c in test else next(f for f in range(3) if c in vals[f]) for c in no_et]
    assert homes[0] != homes[1]
    with pytest.raises(SpecError, match="fold 3 does not exist"):
        prepared.val_ids(3)


def test_splits_are_deterministic() -> None:
    ids = [f"c{i:02d}" for i in range(20)]
    et = [i % 5 != 0 for i in range(20)]
    a = make_splits(ids, et, 5, 0.2, seed=0)
    assert a == make_splits(list(reversed(ids)), list(reversed(et)), 5, 0.2, seed=0)
    assert a != make_splits(ids, et, 5, 0.2, seed=1)
    assert len(a["test"]) == 4 and sum(not et[ids.index(c)] for c in a["test"]) == 1
    with pytest.raises(SpecError, match="5 folds need at least 5 cases"):
        make_splits(ids[:5], et[:5], 5, 0.2)


def test_cases_are_cropped_normalised_and_memory_mapped(prepared: PreparedDataset, synth_raw: Path) -> None:
    for cf in list_cases(synth_raw)[:4]:
        pc = prepared.load(cf.case_id)
        assert isinstance(pc.image, np.memmap) and pc.image.dtype == np.float32
        assert pc.label is not None and pc.label.dtype == np.uint8
        case = read_case(cf)
        m = pc.meta
        assert m.source_shape == case.shape and m.format == "brats2019" and m.spacing == (1.0, 1.0, 1.0)
        np.testing.assert_array_equal(m.affine, case.affine)
        assert pc.image.shape == (4, *m.working_shape) and m.working_shape == m.crop_shape
        # the crop holds every brain voxel; outside it the source is all zero
        outside = case.image.copy()
        outside[(slice(None), *m.crop_slices)] = 0
        assert not outside.any()
        crop = case.image[(slice(None), *m.crop_slices)]
        brain = np.any(crop != 0, axis=0)
        for ax in range(3):  # tight: the first and last plane of each axis hold brain voxels
            assert np.take(brain, 0, axis=ax).any() and np.take(brain, -1, axis=ax).any()
        for c in range(4):  # min-max: exactly [0, 1], and restoring gives the source back
            assert pc.image[c].min() == 0.0 and pc.image[c].max() == 1.0
            lo, hi = crop[c].min(), crop[c].max()
            np.testing.assert_allclose(pc.image[c] * (hi - lo) + lo, crop[c], rtol=1e-6, atol=1e-3)
        np.testing.assert_array_equal(pc.label, brats_to_classes(case.label[m.crop_slices]))
        np.testing.assert_array_equal(prepared.source_label(cf.case_id), case.label)
        np.testing.assert_array_equal(classes_to_source_labels(pc.label, m), case.label)
        assert prepared.case_files(cf.case_id).files == cf.files


def test_unlabeled_cases_are_prepared(prepared: PreparedDataset) -> None:
    pc = prepared.load("BRATS_U001")
    assert pc.label is None and pc.image.shape[0] == 4 and pc.meta.format == "msd"
    assert not prepared.has_label("BRATS_U001")
    with pytest.raises(DataError, match="unlabeled"):
        prepared.source_label("BRATS_U001")
    with pytest.raises(DataError, match="no case 'nope'"):
        prepared.load("nope")


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, copy_function=shutil.copy2)
    return dst


def test_cache_is_reused_then_rebuilt_when_sources_or_params_change(synth_raw: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    src = _copy(synth_raw, tmp_path / "src")
    cache = tmp_path / "cache"
    kw = dict(folds=3, test_fraction=0.2, progress=False)
    a = prepare(src, cache, **kw)
    stamp = (a.root / "dataset.json").stat().st_mtime_ns
    again = prepare(src, cache, **kw)
    assert again.root == a.root and (a.root / "dataset.json").stat().st_mtime_ns == stamp
    assert PreparedDataset.open(a.root).case_ids == a.case_ids
    # a new working spacing, normalisation or split is a new cache folder
    roots = {a.root}
    for extra in ({"spacing": 2.0}, {"normalization": "zscore"}, {"split_seed": 1}):
        roots.add(prepare(src, cache, **{**kw, **extra}).root)
    assert len(roots) == 4
    # a source file changes (content and mtime): rebuilt, with the new data
    t1 = src / "BraTS19_SYN_003" / "BraTS19_SYN_003_t1.nii.gz"
    shutil.copy(src / "BraTS19_SYN_004" / "BraTS19_SYN_004_t1.nii.gz", t1)
    os.utime(t1, ns=(stamp + 10**9, stamp + 10**9))
    b = prepare(src, cache, **kw)
    assert b.fingerprint != a.fingerprint and b.root != a.root
    assert not np.array_equal(np.asarray(b.load("BraTS19_SYN_003").image[0]).sum(),
                              np.asarray(a.load("BraTS19_SYN_003").image[0]).sum())
    # a new preprocessing version: rebuilt
    monkeypatch.setattr(prep, "PREPROCESS_VERSION", prep.PREPROCESS_VERSION + 1)
    assert prepare(src, cache, **kw).fingerprint != b.fingerprint
    assert not [p for p in cache.iterdir() if p.name.startswith(".tmp")]


def test_a_failed_build_leaves_no_cache(synth_raw: Path, tmp_path: Path) -> None:
    src = _copy(synth_raw, tmp_path / "src")
    (src / "BraTS19_SYN_009" / "BraTS19_SYN_009_flair.nii.gz").write_bytes(b"\x1f\x8b broken")
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"BraTS19_SYN_009_flair\.nii\.gz: is a truncated or corrupt"):
        prepare(src, cache, folds=3, progress=False)
    assert list(cache.iterdir()) == []


def test_duplicate_ids_are_refused(synth_raw: Path, tmp_path: Path) -> None:
    src = _copy(synth_raw, tmp_path / "src")
    shutil.copytree(src / "BraTS19_SYN_001", src / "more" / "BraTS19_SYN_001")
    with pytest.raises(DataError, match="duplicate case ID BraTS19_SYN_001"):
        prepare(src, tmp_path / "cache", folds=3, progress=False)


def test_coarser_working_grid_and_back(synth_raw: Path, tmp_path: Path) -> None:
    ds = prepare(synth_raw, tmp_path / "cache", spacing=2.0, folds=3, progress=False)
    for cid in ds.case_ids[:3]:
        pc = ds.load(cid)
        m = pc.meta
        assert m.working_shape == tuple(int(np.floor(n / 2 + 0.5)) for n in m.crop_shape)
        assert all(1.8 < s < 2.2 for s in m.working_spacing)
        assert pc.image.shape == (4, *m.working_shape) and pc.label is not None
        assert 0.0 <= float(pc.image.min()) and float(pc.image.max()) <= 1.0
        assert set(np.unique(pc.label)) <= {0, 1, 2, 3}
        src = ds.source_label(cid)
        back = classes_to_source_labels(pc.label, m)
        onehot = np.eye(4, dtype=np.float32)[pc.label].transpose(3, 0, 1, 2)
        back_probs = probs_to_source_labels(onehot, m)
        for pred in (back, back_probs):
            assert pred.shape == src.shape
            wt_p, wt_g = pred > 0, src > 0
            assert 2 * np.sum(wt_p & wt_g) / (wt_p.sum() + wt_g.sum()) > 0.6  # tiny tumours, 2x coarser
        img = to_source_grid(np.asarray(pc.image), m)
        assert img.shape == (4, *m.source_shape) and not img[:, : m.bbox[0][0]].any()


def test_zscore_normalisation(synth_raw: Path, tmp_path: Path) -> None:
    ds = prepare(synth_raw, tmp_path / "cache", normalization="zscore", folds=3, progress=False)
    img = np.asarray(ds.load(ds.case_ids[0]).image)
    brain = np.any(img != 0, axis=0)
    for c in range(4):
        assert abs(img[c][brain].mean()) < 1e-4 and abs(img[c][brain].std() - 1) < 1e-3
        assert not img[c][~brain].any()


def test_prepare_cli(run_cli, synth_raw: Path, tmp_path: Path) -> None:
    res = run_cli("data", "prepare", synth_raw, "--cache", tmp_path / "c", "--folds", "3", "--spacing", "2")
    assert res.code == 0, res.err
    assert "prepared 10 labeled + 2 unlabeled cases" in res.out and "3 folds; test cases: 2" in res.out
    bad = run_cli("data", "prepare", synth_raw, "--cache", tmp_path / "c", "--folds", "20")
    assert bad.code == 2 and "20 folds need at least 20 cases" in bad.err
    empty = tmp_path / "empty"
    empty.mkdir()
    res = run_cli("data", "prepare", empty, "--cache", tmp_path / "c")
    assert res.code == 2 and "no BraTS or MSD cases found" in res.err


def test_parallel_workers_give_the_same_cache(synth_raw: Path, tmp_path: Path, prepared: PreparedDataset) -> None:
    par = prepare(synth_raw, tmp_path / "cache", folds=3, test_fraction=0.2, progress=False, workers=2)
    assert par.fingerprint == prepared.fingerprint
    for cid in par.case_ids + par.unlabeled_ids:
        a, b = par.load(cid), prepared.load(cid)
        np.testing.assert_array_equal(a.image, b.image)
        assert (a.label is None and b.label is None) or np.array_equal(a.label, b.label)
        assert a.meta == b.meta and hash(a.meta) == hash(b.meta)


def test_unlabeled_only_folder_can_be_prepared(synth_raw: Path, tmp_path: Path) -> None:
    """An MSD imagesTs folder (pseudo-labelling input) has no labeled case: prepared with empty splits."""
    ds = prepare(synth_raw / "unlabeled", tmp_path / "cache", progress=False)
    assert ds.case_ids == [] and ds.unlabeled_ids == ["BRATS_U001", "BRATS_U002"]
    assert ds.test_ids() == [] and ds.train_ids(0) == [] and ds.val_ids(4) == []
    assert ds.load("BRATS_U002").image.shape[0] == 4


def test_an_index_without_arrays_has_the_full_caches_identity_and_labels(
        synth_raw: Path, tmp_path: Path, prepared: PreparedDataset) -> None:
    cache = tmp_path / "cache"
    idx = prepare(synth_raw, cache, folds=3, test_fraction=0.2, progress=False, arrays=False)
    # no working-grid arrays on disk, only the source-grid labels and the metadata
    assert idx.root.name == f"{prepared.fingerprint}.index" and not idx.has_arrays and prepared.has_arrays
    assert not (idx.root / "images").exists() and not (idx.root / "labels").exists()
    assert sorted(p.stem for p in (idx.root / "source_labels").iterdir()) == prepared.case_ids
    # the same identity, splits, metadata and labels as the full cache (keys made from it do not change)
    assert idx.fingerprint == prepared.fingerprint
    assert idx.case_ids == prepared.case_ids and idx.unlabeled_ids == prepared.unlabeled_ids
    assert idx.test_ids() == prepared.test_ids() and idx.val_ids(1) == prepared.val_ids(1)
    for cid in prepared.case_ids:
        assert idx.meta(cid) == prepared.meta(cid)
        np.testing.assert_array_equal(idx.source_label(cid), prepared.source_label(cid))
        assert idx.has_et(cid) == prepared.has_et(cid) and idx.label_counts(cid) == prepared.label_counts(cid)
    with pytest.raises(DataError, match="without image arrays"):
        idx.load(prepared.case_ids[0])
    # reused, not rebuilt; and once a full cache of the same data exists, it serves instead of the index
    stamp = (idx.root / "dataset.json").stat().st_mtime_ns
    assert prepare(synth_raw, cache, folds=3, test_fraction=0.2, progress=False, arrays=False).root == idx.root
    assert (idx.root / "dataset.json").stat().st_mtime_ns == stamp
    full = prepare(synth_raw, cache, folds=3, test_fraction=0.2, progress=False)
    assert full.root.name == prepared.fingerprint and full.has_arrays
    assert prepare(synth_raw, cache, folds=3, test_fraction=0.2, progress=False, arrays=False).root == full.root
