"""semi_supervised: views, refusal without unlabeled data, two rounds with stored pseudo-labels, alpha-weighted
pseudo-labelled samples, resuming after an interruption. Tiny data, tiny model, three iterations per student."""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.engine.api import TrainingStopped
from bench.engine.config import ModelConfig, TrainConfig
from bench.engine.recipe import Hook, TrainContext, baseline_recipe
from bench.engine.synthetic import MemoryDataset
from bench.errors import TrickError
from tricks import resolve
from tricks.semi_supervised import MAX_VIEWS, STATE_FILE, View, converged, default_views, view_subset


def test_views_invert_and_differ() -> None:
    x = np.arange(2 * 4 * 5 * 6, dtype=np.float32).reshape(2, 4, 5, 6)
    views = default_views(MAX_VIEWS)
    assert views[0].is_identity and not any(v.is_identity for v in views[1:])
    outs = []
    for v in views:
        y = v.apply(x)
        assert np.array_equal(v.invert(y), x)
        t = torch.from_numpy(x)
        assert torch.equal(v.invert(v.apply(t)), t)
        assert np.array_equal(v.apply(t).numpy(), y)  # same map on tensors and arrays
        outs.append(y.tobytes() + str(y.shape).encode())
    assert len(set(outs)) == len(views)
    assert View((1, 0, 2), ()).apply(x).shape == (2, 5, 4, 6)
    with pytest.raises(ValueError):
        default_views(MAX_VIEWS + 1)


def test_view_subsets_and_convergence() -> None:
    ids = [f"c{i}" for i in range(10)]
    assert view_subset(ids, 0, 0.5, 0) == ids
    a = view_subset(ids, 1, 0.5, 0)
    assert len(a) == 5 and set(a) < set(ids) and a == view_subset(ids, 1, 0.5, 0)
    assert a != view_subset(ids, 2, 0.5, 0)
    assert not converged(None, 0.5, 0.01) and converged(0.5, 0.505, 0.01) and not converged(0.5, 0.52, 0.01)


def test_refused_without_unlabeled_source(tmp_path: Path) -> None:
    with pytest.raises(TrickError, match="unlabeled"):
        resolve(["semi_supervised"], {"semi_supervised": {"unlabeled": str(tmp_path / "missing")}})
    ds = MemoryDataset(cases=4, shape=(24, 24, 16), unlabeled=0)
    stack = resolve(["semi_supervised"])
    cfg = TrainConfig(iterations=1, patch=16, batch=1, num_workers=0, device="cpu")
    ctx = TrainContext(
        ds, tmp_path / "t", ModelConfig(width=4, depth=2), cfg, stack.build(baseline_recipe(cfg)), stack
    )
    with pytest.raises(TrickError, match="semi_supervised.unlabeled"):
        ctx.recipe.procedure(ctx)
    assert not (tmp_path / "t").exists()  # refused before anything ran


class _Recorder(Hook):
    """Records, per student training, the sample weights of every step."""

    def __init__(self) -> None:
        self.current = ""
        self.weights: dict[str, list[float]] = {}

    def before_train(self, ctx: TrainContext) -> None:
        self.current = f"{Path(ctx.out_dir).parent.name}/{Path(ctx.out_dir).name}"
        self.weights.setdefault(self.current, [])

    def before_step(self, state) -> None:
        self.weights[self.current].extend(state.sample_weight.tolist())


ALPHA = 0.3


def _context(out: Path, ds: MemoryDataset, stop: threading.Event | None = None, progress=None):
    stack = resolve(
        ["semi_supervised"], {"semi_supervised": {"views": 2, "rounds": 1, "alpha": ALPHA, "eps": 0.0}}
    )
    cfg = TrainConfig(iterations=3, epoch_length=3, patch=16, batch=3, num_workers=0, device="cpu", seed=1)
    recipe = stack.build(baseline_recipe(cfg))
    rec = _Recorder()
    recipe.add_hook(rec)
    return TrainContext(
        ds, out, ModelConfig(width=4, depth=2), cfg, recipe, stack, progress=progress, stop=stop
    ), rec


@pytest.mark.slow
def test_two_rounds_pseudo_labels_alpha_and_resume(tmp_path: Path) -> None:
    ds = MemoryDataset(cases=5, shape=(24, 24, 16), unlabeled=2, folds=2, seed=3)
    ctx, rec = _context(tmp_path / "a", ds)
    result = ctx.recipe.procedure(ctx)

    state = json.loads((tmp_path / "a" / STATE_FILE).read_text())
    assert [r["round"] for r in state["rounds"]] == [0, 1] and state["done"]
    # pseudo-labels of round 0 are stored with the round that made them; the last round labels nothing
    manifest = json.loads((tmp_path / "a" / "round0" / "pseudo" / "manifest.json").read_text())
    assert manifest["round"] == 0 and manifest["cases"] == ds.unlabeled_ids
    for cid in ds.unlabeled_ids:
        lab = np.load(tmp_path / "a" / "round0" / "pseudo" / f"{cid}.npy")
        assert lab.dtype == np.uint8 and lab.shape == ds.load(cid).image.shape[1:] and lab.max() <= 3
    assert not (tmp_path / "a" / "round1" / "pseudo").exists()
    # round 0 students saw only labeled samples (weight 1); round 1 students also alpha-weighted pseudo-labels
    assert set(rec.weights) == {f"round{r}/student{v}" for r, v in itertools.product((0, 1), (0, 1))}
    for v in (0, 1):
        assert set(rec.weights[f"round0/student{v}"]) == {1.0}
    both = rec.weights["round1/student0"] + rec.weights["round1/student1"]
    assert set(np.round(both, 6)) == {1.0, round(ALPHA, 6)}
    assert result.checkpoint == tmp_path / "a" / "final.pt" and result.checkpoint.exists()
    final_a = torch.load(result.checkpoint, weights_only=True)["model"]

    # interrupted in round 1, then resumed: finished work is kept, the result equals the uninterrupted run
    stop = threading.Event()

    def progress(info: dict) -> None:
        if info.get("round") == 1 and info.get("student") == 0 and info["iteration"] == 1:
            stop.set()

    ctx_b, _ = _context(tmp_path / "b", ds, stop, progress)
    with pytest.raises(TrainingStopped):
        ctx_b.recipe.procedure(ctx_b)
    r0 = tmp_path / "b" / "round0"
    kept = {p: p.stat().st_mtime_ns for p in [*r0.glob("student*/final.pt"), *r0.glob("pseudo/*")]}
    assert len(kept) == 2 + 2 + 1
    assert (tmp_path / "b" / "round1" / "student0" / "last.pt").exists()
    stop.clear()
    ctx_c, rec_c = _context(tmp_path / "b", ds)
    result_b = ctx_c.recipe.procedure(ctx_c)
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # round 0 not redone
    assert rec_c.weights["round1/student0"] == rec.weights["round1/student0"][3:]  # resumed at iteration 1
    final_b = torch.load(result_b.checkpoint, weights_only=True)["model"]
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)
    # a finished procedure called again returns at once
    assert ctx_c.recipe.procedure(dataclasses.replace(ctx_c)).checkpoint == result_b.checkpoint


@pytest.mark.slow
def test_msd_folder_as_unlabeled_source(prepared, synth_raw: Path, tmp_path: Path) -> None:
    folder = synth_raw / "unlabeled"  # MSD 4D layout: imagesTs/BRATS_U*.nii.gz, no labels
    assert sorted(p.name for p in (folder / "imagesTs").iterdir()) == ["BRATS_U001.nii.gz", "BRATS_U002.nii.gz"]
    stack = resolve(["semi_supervised"], {"semi_supervised": {"unlabeled": str(folder), "views": 2, "rounds": 1,
                                                              "eps": 0.0}})
    cfg = TrainConfig(iterations=2, epoch_length=2, patch=16, batch=2, num_workers=0, device="cpu")
    ctx = TrainContext(prepared, tmp_path / "t", ModelConfig(width=4, depth=2), cfg,
                       stack.build(baseline_recipe(cfg)), stack)
    cache = Path(prepared.root).parent
    before = {p.name for p in cache.iterdir()}
    result = ctx.recipe.procedure(ctx)
    assert result.checkpoint.exists()
    made = {p.name for p in cache.iterdir()} - before  # the folder was prepared into the dataset's cache
    manifest = json.loads((tmp_path / "t" / "round0" / "pseudo" / "manifest.json").read_text())
    assert manifest["round"] == 0 and manifest["cases"] == ["BRATS_U001", "BRATS_U002"]
    from bench.data.prepare import prepare

    # ... with the labeled dataset's preprocessing, and every unlabeled case was pseudo-labelled
    uds = prepare(folder, cache, progress=False)
    assert made == {Path(uds.root).name}
    assert (uds.params["spacing"], uds.params["normalization"]) == (prepared.params["spacing"],
                                                                    prepared.params["normalization"])
    for cid in manifest["cases"]:
        lab = np.load(tmp_path / "t" / "round0" / "pseudo" / f"{cid}.npy")
        assert lab.dtype == np.uint8 and lab.shape == uds.load(cid).image.shape[1:] and lab.max() <= 3


def test_unlabeled_folder_prepared_on_the_coarse_grid_of_the_labeled_data(synth_raw: Path, tmp_path: Path) -> None:
    """Pseudo-labels are made at the students' scale: a 2 mm labeled dataset gets a 2 mm unlabeled cache."""
    from bench.data.prepare import prepare

    coarse = prepare(synth_raw, tmp_path / "cache", spacing=2.0, folds=3, progress=False)
    folder = synth_raw / "unlabeled"
    stack = resolve(["semi_supervised"], {"semi_supervised": {"unlabeled": str(folder), "views": 2, "rounds": 1,
                                                              "eps": 0.0}})
    cfg = TrainConfig(iterations=2, epoch_length=2, patch=8, batch=2, num_workers=0, device="cpu", val_every=0)
    ctx = TrainContext(coarse, tmp_path / "t", ModelConfig(width=4, depth=2), cfg,
                       stack.build(baseline_recipe(cfg)), stack)
    ctx.recipe.procedure(ctx)
    uds = prepare(folder, tmp_path / "cache", spacing=2.0, progress=False)
    assert uds.preprocessing == coarse.preprocessing and uds.preprocessing["spacing"] == 2.0
    for cid in ("BRATS_U001", "BRATS_U002"):
        lab = np.load(tmp_path / "t" / "round0" / "pseudo" / f"{cid}.npy")
        assert lab.shape == uds.load(cid).image.shape[1:]
        assert lab.shape[0] < uds.meta(cid).crop_shape[0]  # the 2 mm grid, not the 1 mm source
