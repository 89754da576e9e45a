"""patch_fusion: overlapping windows averaged (constant or Gaussian); off = non-overlapping tiles."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from bench.engine.config import InferenceConfig
from bench.engine.infer import sliding_window
from tricks import get, resolve

WIN = 8
SIZE = (20, 16, 12)  # (size - window) is a multiple of the step (4) on every axis


def _position_model(batch: torch.Tensor) -> torch.Tensor:
    """Output depends only on the position inside the window (and a little on the input)."""
    i, j, k = torch.meshgrid(*(torch.arange(WIN, dtype=torch.float32),) * 3, indexing="ij")
    pos = (i + 10 * j + 100 * k)[None, None]
    return pos.expand(batch.shape[0], 1, WIN, WIN, WIN) + batch[:, :1]


def _hand_fused(image: np.ndarray, step: int, weight: np.ndarray) -> np.ndarray:
    """For every voxel, the weighted average over the windows that cover it, enumerated by hand."""
    num = np.zeros(SIZE)
    den = np.zeros(SIZE)
    starts = [range(0, s - WIN + 1, step) for s in SIZE]
    for a, b, c in itertools.product(*starts):
        for x, y, z in itertools.product(range(WIN), repeat=3):
            value = x + 10 * y + 100 * z + image[0, a + x, b + y, c + z]
            num[a + x, b + y, c + z] += weight[x, y, z] * value
            den[a + x, b + y, c + z] += weight[x, y, z]
    return num / den


def _gaussian(sigma: float = 0.125) -> np.ndarray:
    x = np.arange(WIN) - (WIN - 1) / 2
    g1 = np.exp(-0.5 * (x / (sigma * WIN)) ** 2)
    g = g1[:, None, None] * g1[None, :, None] * g1[None, None, :]
    return np.maximum(g / g.max(), 1e-3)


def _run(cfg: InferenceConfig, image: np.ndarray) -> np.ndarray:
    out = sliding_window(
        _position_model,
        torch.from_numpy(image),
        WIN,
        1,
        overlap=cfg.overlap,
        weights=cfg.weights,
        sigma=cfg.sigma,
        window_batch=3,
    )
    return out[0].numpy()


@pytest.mark.parametrize("weights", ["constant", "gaussian"])
def test_fused_output_equals_hand_average_of_covering_windows(weights: str) -> None:
    image = np.random.default_rng(0).random((4, *SIZE)).astype(np.float32)
    cfg = resolve(["patch_fusion"], {"patch_fusion": {"weights": weights}}).inference_config(
        InferenceConfig()
    )
    assert cfg.overlap == 0.5 and cfg.weights == weights
    w = np.ones((WIN,) * 3) if weights == "constant" else _gaussian(cfg.sigma)
    expected = _hand_fused(image, 4, w)
    got = _run(cfg, image)
    assert np.allclose(got, expected, rtol=1e-5, atol=1e-4)
    # a voxel inside several windows is not just the value of one of them
    assert not np.allclose(got, _run(InferenceConfig(), image))


def test_off_means_non_overlapping_tiles() -> None:
    image = np.zeros((4, 16, 16, 16), np.float32)
    cfg = resolve([]).inference_config(InferenceConfig())
    assert cfg.overlap == 0.0
    out = sliding_window(
        _position_model, torch.from_numpy(image), WIN, 1, overlap=cfg.overlap, weights=cfg.weights
    )[0].numpy()
    # each voxel is covered by exactly one tile: its value is its position inside that tile
    x, y, z = np.meshgrid(*(np.arange(16),) * 3, indexing="ij")
    assert np.array_equal(out, (x % WIN) + 10 * (y % WIN) + 100 * (z % WIN))


def test_declaration() -> None:
    t = get("patch_fusion")
    assert t.phase == "inference" and t.replaces == ("window_fusion",)
    assert resolve(["patch_fusion"]).training_items() == []  # never part of the training key
    cfg = resolve(["patch_fusion"], {"patch_fusion": {"overlap": 0.25}}).inference_config()
    assert cfg.overlap == 0.25 and cfg.weights == "constant"
