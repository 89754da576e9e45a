"""Sliding-window inference, fusion of models, mirror averaging, the way back to the source grid."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.engine import api
from bench.engine.config import InferenceConfig, ModelConfig, TrainConfig
from bench.engine.infer import (
    load_models,
    predict_probabilities,
    sliding_window,
    to_source_grid,
    window_starts,
    window_weights,
)
from bench.engine.synthetic import SimpleMeta

TINY = ModelConfig(width=4, depth=2)


@pytest.mark.parametrize("size,window,overlap", [(40, 16, 0.0), (48, 16, 0.0), (40, 16, 0.5), (16, 16, 0.5),
                                                 (100, 32, 0.25), (17, 16, 0.0)])
def test_window_starts_cover_the_axis(size: int, window: int, overlap: float) -> None:
    starts = window_starts(size, window, overlap)
    assert starts[0] == 0 and starts[-1] == size - window
    covered = np.zeros(size, bool)
    for s in starts:
        covered[s:s + window] = True
    assert covered.all()
    steps = np.diff(starts)
    assert (steps <= window * (1 - overlap) + 1e-9).all()
    if overlap == 0 and size % window == 0:
        assert list(steps) == [window] * (len(starts) - 1)  # exact tiles


def test_stride_placement_follows_monai_and_even_placement_spreads() -> None:
    # MONAI's sliding_window_inference on a 240x240x155 BraTS volume, window 64, overlap 0.5: interval 32,
    # starts at multiples of 32, the last window moved back to end at the border
    assert window_starts(240, 64, 0.5, "stride") == [0, 32, 64, 96, 128, 160, 176]
    assert window_starts(155, 64, 0.5, "stride") == [0, 32, 64, 91]
    assert window_starts(155, 64, 0.0, "stride") == [0, 64, 91]
    # the default spreads the same number of windows evenly (nnU-Net)
    assert window_starts(240, 64, 0.5) == [0, 29, 59, 88, 117, 147, 176]
    assert window_starts(155, 64, 0.5) == [0, 30, 61, 91]
    with pytest.raises(ValueError, match="accepted even, stride"):
        window_starts(100, 32, 0.5, "corner")


def _voxelwise(x: torch.Tensor) -> torch.Tensor:
    """A position-independent 'model': per-voxel softmax of a fixed mixing of the channels."""
    mix = torch.tensor([[1.0, 0.0, 0.5, 0.0], [0.0, 1.0, 0.0, -1.0], [0.3, 0.3, 0.3, 0.3]])
    return torch.softmax(torch.einsum("oc,bcxyz->boxyz", mix, x), 1)


@pytest.mark.parametrize("weights", ["constant", "gaussian"])
@pytest.mark.parametrize("overlap", [0.0, 0.5])
def test_sliding_window_of_a_voxelwise_model_equals_the_whole_volume(weights: str, overlap: float) -> None:
    x = torch.randn(4, 37, 30, 21)
    got = sliding_window(_voxelwise, x, 16, 3, overlap=overlap, weights=weights, window_batch=3)
    assert got.shape == (3, 37, 30, 21)
    assert torch.allclose(got, _voxelwise(x[None])[0], atol=1e-5)


def test_sliding_window_averages_overlapping_windows_with_their_weights() -> None:
    # output = position inside the window: the fused value is the weighted mean over covering windows
    def positional(batch: torch.Tensor) -> torch.Tensor:
        w = batch.shape[2]
        pos = torch.arange(w, dtype=torch.float32)[:, None, None].expand(w, w, w)
        return pos.expand(batch.shape[0], 1, w, w, w).clone()

    x = torch.zeros(1, 24, 8, 8)
    got = sliding_window(positional, x, 8, 1, overlap=0.5, weights="gaussian", sigma=0.25)
    g = window_weights([8, 8, 8], "gaussian", 0.25)[:, 0, 0]
    starts = window_starts(24, 8, 0.5)
    for i in range(24):
        num = den = 0.0
        for s in starts:
            if s <= i < s + 8:
                num += float(g[i - s]) * (i - s)
                den += float(g[i - s])
        assert got[0, i, 0, 0].item() == pytest.approx(num / den, rel=1e-5)


def test_window_smaller_than_volume_is_padded() -> None:
    x = torch.randn(4, 10, 12, 9)
    got = sliding_window(_voxelwise, x, 16, 3)
    assert got.shape == (3, 10, 12, 9)
    assert torch.allclose(got, _voxelwise(x[None])[0], atol=1e-5)


def test_to_source_grid_places_labels_in_the_bbox() -> None:
    probs = torch.zeros(4, 4, 5, 6)
    probs[0] = 1
    probs[2, 1:3, 1:4, 2:5] = 5  # edema block
    probs[3, 0, 0, 0] = 9  # enhancing voxel
    meta = SimpleMeta("c", "brats2019", (10, 12, 14), np.eye(4), (1.0, 1.0, 1.0), ((3, 7), (2, 7), (4, 10)),
                      (4, 5, 6), (1.0, 1.0, 1.0))
    out = to_source_grid(probs, meta)
    assert out.shape == (10, 12, 14) and out.dtype == np.uint8
    assert out[3, 2, 4] == 4
    assert (out[4:6, 3:6, 6:9] == 2).all()
    assert (out == 2).sum() == 2 * 3 * 3 and (out == 4).sum() == 1
    # a coarser working grid is resampled to the bbox size first
    meta2 = dataclasses.replace(meta, bbox=((0, 8), (0, 10), (0, 12)))
    assert (to_source_grid(probs, meta2)[2:6, 2:8, 4:10] == 2).all()


@pytest.fixture(scope="module")
def two_models(prepared, tmp_path_factory) -> list[Path]:
    out = tmp_path_factory.mktemp("models")
    cfg = TrainConfig(iterations=2, epoch_length=2, patch=16, batch=1, num_workers=0)
    return [api.train(prepared, out / str(s), TINY, dataclasses.replace(cfg, seed=s)).checkpoint for s in (0, 1)]


@pytest.mark.slow
def test_predict_fuses_models_by_averaging_probabilities(prepared, two_models: list[Path]) -> None:
    cid = prepared.test_ids()[0]
    case = prepared.load(cid)
    cfg = InferenceConfig(window=16, overlap=0.5, weights="gaussian")
    models, window, device = load_models(two_models, cfg)
    p0 = predict_probabilities(models[:1], case.image, window, cfg, device)
    p1 = predict_probabilities(models[1:], case.image, window, cfg, device)
    fused = predict_probabilities(models, case.image, window, cfg, device)
    assert torch.allclose(fused, (p0 + p1) / 2, atol=1e-6)
    (got_id, labels), = list(api.predict(two_models, prepared, [cid], cfg))
    assert got_id == cid
    np.testing.assert_array_equal(labels, to_source_grid(fused, case.meta))
    meta = case.meta
    assert labels.shape == tuple(meta.source_shape) and set(np.unique(labels)) <= {0, 1, 2, 4}
    outside = np.ones(meta.source_shape, bool)
    outside[tuple(slice(a, b) for a, b in meta.bbox)] = False
    assert not labels[outside].any()


@pytest.mark.slow
def test_mirror_averaging_is_symmetric(prepared, two_models: list[Path]) -> None:
    case = prepared.load(prepared.test_ids()[0])
    cfg = InferenceConfig(window=16, mirror=True)
    models, window, device = load_models(two_models[:1], cfg)
    p = predict_probabilities(models, case.image, window, cfg, device)
    flipped = np.ascontiguousarray(np.flip(np.asarray(case.image), axis=1))
    pf = predict_probabilities(models, flipped, window, cfg, device)
    assert torch.allclose(p, torch.flip(pf, dims=(1,)), atol=1e-5)
    plain = predict_probabilities(models, case.image, window, dataclasses.replace(cfg, mirror=False), device)
    assert not torch.allclose(p, plain, atol=1e-4)


@pytest.mark.slow
def test_extra_outputs_are_trained_recorded_and_dropped_at_inference(prepared, tmp_path: Path) -> None:
    from bench.engine.checkpoint import load_checkpoint
    from bench.engine.losses import CEDiceLoss
    from bench.engine.recipe import TrainContext, baseline_recipe
    from bench.engine.train import run_training

    cfg = TrainConfig(iterations=2, epoch_length=2, patch=16, batch=1, num_workers=0, val_every=1, val_cases=1)
    recipe = baseline_recipe(cfg)
    recipe.extra_outputs = 3
    inner = CEDiceLoss()
    seen = []

    def loss(logits, target, state):
        seen.append(logits.shape[1])
        return inner(logits[:, :4], target, state) + logits[:, 4:].float().pow(2).flatten(1).mean(1)

    recipe.loss = loss
    res = run_training(TrainContext(prepared, tmp_path, TINY, cfg, recipe))
    assert seen == [7, 7]
    assert load_checkpoint(res.checkpoint)["arch"]["extra_outputs"] == 3
    (cid, labels), = list(api.predict([res.checkpoint], prepared, prepared.test_ids()[:1], InferenceConfig()))
    assert set(np.unique(labels)) <= {0, 1, 2, 4}
