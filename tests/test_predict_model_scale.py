"""Prediction prepares data with the model's own preprocessing (working spacing, normalisation, crop rule)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

TINY = ["--iterations", "4", "--epoch-length", "2", "--patch", "16", "--batch", "1", "--width", "4", "--depth", "2",
        "--norm", "instance", "--workers", "0", "--val-every", "0", "--folds", "3"]


@pytest.fixture(scope="module")
def coarse(synth_raw: Path, tmp_path_factory) -> tuple[Path, Path]:
    """A tiny model trained on a 2 mm working grid (the source is 1 mm) and the cache it was trained on."""
    from bench.cli import main

    base = tmp_path_factory.mktemp("coarse")
    out, cache = base / "run", base / "cache"
    assert main(["train", "--data", str(synth_raw), "--spacing", "2", "--out", str(out), "--cache", str(cache),
                 *TINY]) == 0
    _spread(out / "final.pt", _cache_dir(cache, 2.0))
    return out / "final.pt", cache


def _spread(path: Path, cache: Path) -> None:
    """A model trained a few iterations predicts background everywhere, which would hide any difference of scale:
    shift its oedema bias so that the oedema logit wins in the 30 % of brain voxels where it is closest."""
    import torch

    from bench.data.prepare import PreparedDataset
    from bench.engine.checkpoint import load_checkpoint, save_checkpoint
    from bench.engine.infer import model_from_checkpoint

    ck = load_checkpoint(path)
    model = model_from_checkpoint(path, ck).eval()
    ds = PreparedDataset.open(cache)
    image = torch.from_numpy(np.array(ds.load(ds.test_ids()[0]).image))[None, :, :16, :16, :16]
    with torch.no_grad():
        logits = model(image)[0]
    brain = image[0].abs().sum(0) > 0
    gap = (torch.cat([logits[:2], logits[3:]]).max(0).values - logits[2])[brain]
    ck["model"]["heads.0.bias"][2] += float(torch.quantile(gap, 0.7))
    save_checkpoint(path, {k: v for k, v in ck.items() if k != "format"})


def _labels(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(nib.load(p).dataobj) for p in sorted(folder.glob("*.nii.gz"))}


def _cache_dir(cache: Path, spacing: float | None) -> Path:
    import json

    for d in cache.iterdir():
        info = json.loads((d / "dataset.json").read_text())
        if info["params"]["spacing"] == spacing:
            return d
    raise AssertionError(f"no cache at spacing {spacing} under {cache}")


def test_raw_folder_and_model_cache_predict_the_same_labels(coarse, synth_raw: Path, run_cli,
                                                              tmp_path: Path) -> None:
    ckpt, cache = coarse
    trained_on = _cache_dir(cache, 2.0)
    raw = run_cli("predict", "--model", ckpt, "--data", synth_raw, "--cache", tmp_path / "cache2",
                  "--out", tmp_path / "raw", "--cases", "test", "--folds", "3")
    assert raw.code == 0, raw.err
    cached = run_cli("predict", "--model", ckpt, "--data", trained_on, "--out", tmp_path / "cached",
                     "--cases", "test")
    assert cached.code == 0, cached.err
    a, b = _labels(tmp_path / "raw"), _labels(tmp_path / "cached")
    assert sorted(a) == sorted(b) and len(a) == 2
    for name in a:
        assert len(np.unique(b[name])) > 1, "the model predicts one label everywhere: the test would prove nothing"
        np.testing.assert_array_equal(a[name], b[name])


def _variant(src: Path, dst: Path, preprocessing: dict | None, drop: bool = False) -> Path:
    """A copy of checkpoint ``src`` whose preprocessing record says ``preprocessing`` (``drop``: no record at all,
    as an older bench saved them)."""
    from bench.engine.checkpoint import load_checkpoint, save_checkpoint

    ck = {k: v for k, v in load_checkpoint(src).items() if k != "format"}
    if drop:
        ck.pop("preprocessing")
    else:
        ck["preprocessing"] = preprocessing
    return save_checkpoint(dst, ck)


def test_checkpoint_records_the_training_preprocessing(coarse) -> None:
    from bench.engine.checkpoint import load_checkpoint

    ckpt, _ = coarse
    assert load_checkpoint(ckpt)["preprocessing"] == {"spacing": 2.0, "normalization": "minmax",
                                                       "crop": "nonzero-bbox", "version": 1}


def test_cache_prepared_otherwise_is_refused_in_one_line(coarse, synth_raw: Path, run_cli, tmp_path: Path) -> None:
    from bench.data.prepare import prepare

    ckpt, _ = coarse
    source_grid = prepare(synth_raw, tmp_path / "c", folds=3, progress=False)
    r = run_cli("predict", "--model", ckpt, "--data", source_grid.root, "--out", tmp_path / "p")
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1, r.err
    assert f"--data {source_grid.root}: prepared on the source grid" in r.err and "2 mm grid" in r.err
    assert not (tmp_path / "p").exists() or not list((tmp_path / "p").iterdir())


def test_spacing_other_than_the_models_is_refused(coarse, synth_raw: Path, run_cli, tmp_path: Path) -> None:
    ckpt, cache = coarse
    r = run_cli("predict", "--model", ckpt, "--data", synth_raw, "--cache", cache, "--out", tmp_path / "p",
                "--spacing", "1", "--folds", "3")
    assert r.code == 2 and "--spacing 1: the model was trained on a 2 mm grid" in r.err, r.err


def test_fused_models_must_share_their_preprocessing(coarse, synth_raw: Path, run_cli, tmp_path: Path) -> None:
    ckpt, cache = coarse
    other = _variant(ckpt, tmp_path / "other.pt", {"spacing": None, "normalization": "minmax",
                                                   "crop": "nonzero-bbox", "version": 1})
    r = run_cli("predict", "--model", f"{ckpt},{other}", "--data", synth_raw, "--cache", cache,
                "--out", tmp_path / "p", "--folds", "3")
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1, r.err
    assert "were trained on differently prepared data" in r.err and str(other) in r.err
    same = _variant(ckpt, tmp_path / "same.pt", load_checkpoint_record(ckpt))
    r = run_cli("predict", "--model", f"{ckpt},{same}", "--data", synth_raw, "--cache", cache,
                "--out", tmp_path / "fused", "--cases", "test", "--folds", "3")
    assert r.code == 0, r.err


def load_checkpoint_record(path: Path) -> dict:
    from bench.engine.checkpoint import load_checkpoint

    return load_checkpoint(path)["preprocessing"]


def test_older_checkpoint_falls_back_to_spacing_with_one_line(coarse, synth_raw: Path, run_cli,
                                                              tmp_path: Path) -> None:
    ckpt, cache = coarse
    old = _variant(ckpt, tmp_path / "old.pt", None, drop=True)
    r = run_cli("predict", "--model", old, "--data", synth_raw, "--cache", cache, "--out", tmp_path / "old",
                "--cases", "test", "--spacing", "2", "--folds", "3")
    assert r.code == 0, r.err
    assert "records no preprocessing (saved by an older bench)" in r.err and "--spacing 2 mm" in r.err
    new = run_cli("predict", "--model", ckpt, "--data", synth_raw, "--cache", cache, "--out", tmp_path / "new",
                  "--cases", "test", "--folds", "3")
    a, b = _labels(tmp_path / "old"), _labels(tmp_path / "new")
    assert new.code == 0 and sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_engine_predict_refuses_data_prepared_otherwise(coarse, synth_raw: Path, tmp_path: Path) -> None:
    """The path every caller shares (``bench run``'s cells, a run on a second dataset): bench.engine.api.predict."""
    from bench.data.prepare import prepare
    from bench.engine.api import predict
    from bench.errors import DataError

    ckpt, _ = coarse
    ds = prepare(synth_raw, tmp_path / "c", folds=3, normalization="zscore", spacing=2.0, progress=False)
    with pytest.raises(DataError, match="minmax normalisation"):
        next(predict([ckpt], ds, ds.test_ids()[:1]))


def test_predict_applies_post_processing_tricks(coarse, synth_raw: Path, run_cli, tmp_path: Path) -> None:
    """`bench predict --tricks drop_stray_components --set ...min_fraction=1`: only the largest component stays."""
    from scipy import ndimage

    ckpt, cache = coarse
    common = ("--model", ckpt, "--data", synth_raw, "--cache", cache, "--cases", "test", "--folds", "3")
    plain = run_cli("predict", *common, "--out", tmp_path / "plain")
    kept = run_cli("predict", *common, "--out", tmp_path / "pp", "--tricks", "drop_stray_components",
                   "--set", "drop_stray_components.min_fraction=1", "--set", "drop_stray_components.max_distance=0")
    assert plain.code == 0 and kept.code == 0, kept.err
    a, b = _labels(tmp_path / "plain"), _labels(tmp_path / "pp")
    full = np.ones((3, 3, 3), bool)
    assert any(ndimage.label(v > 0, structure=full)[1] > 1 for v in a.values())  # something to remove
    for name in a:
        comps, n = ndimage.label(b[name] > 0, structure=full)
        assert n <= 1 and np.array_equal(b[name][b[name] > 0], a[name][b[name] > 0])
    bad = run_cli("predict", *common, "--out", tmp_path / "x", "--tricks", "warmup")
    assert bad.code == 2 and "--tricks warmup: a training trick" in bad.err


def test_older_checkpoint_on_a_cache_says_it_cannot_check(coarse, run_cli, tmp_path: Path) -> None:
    ckpt, cache = coarse
    old = _variant(ckpt, tmp_path / "old.pt", None, drop=True)
    r = run_cli("predict", "--model", old, "--data", _cache_dir(cache, 2.0), "--out", tmp_path / "p",
                "--cases", "test")
    assert r.code == 0, r.err
    assert "cannot be checked" in r.err and "a raw --data folder" not in r.err
