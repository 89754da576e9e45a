"""The three tricks of the paper's baseline BL: dense_blocks, self_ensemble, warmup."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import tricks
from bench.engine import api
from bench.engine.config import ModelConfig, TrainConfig
from bench.engine.model import DenseBlock, PlainBlock, build_model
from bench.engine.recipe import baseline_recipe
from tricks.warmup import WarmupSchedule

TINY = ModelConfig(width=4, depth=2)


def _model(names: list[str], params: dict | None = None, cfg: ModelConfig = TINY) -> torch.nn.Module:
    recipe = tricks.resolve(names, params).build(baseline_recipe())
    return build_model(cfg, recipe.block, recipe.head, recipe.block_options)


# ------------------------------------------------------------------------------------------ dense_blocks
def test_dense_blocks_replace_every_level_and_follow_their_parameters() -> None:
    plain = _model([])
    dense = _model(["dense_blocks"], {"dense_blocks": {"layers": 4, "growth": 1.0}})
    blocks = list(plain.enc) + list(plain.dec)
    assert all(isinstance(b, PlainBlock) for b in blocks)
    dblocks = list(dense.enc) + list(dense.dec)
    assert len(dblocks) == len(blocks) and all(isinstance(b, DenseBlock) for b in dblocks)
    for b, width in zip(dense.enc, dense.widths):
        assert len(b.layers) == 4
        growth = max(4, round(1.0 * width))
        # layer i sees the block input and all i previous outputs (dense connectivity)
        for i, layer in enumerate(b.layers):
            assert layer[0].in_channels == b.layers[0][0].in_channels + i * growth
        assert b.transition[0].out_channels == width
    x = torch.randn(1, 4, 16, 16, 16)
    assert dense(x).shape == plain(x).shape == (1, 4, 16, 16, 16)


def test_dense_block_output_uses_all_previous_feature_maps() -> None:
    torch.manual_seed(0)
    block = DenseBlock(3, 6, dataclasses.replace(TINY, norm="batch"), layers=2, growth=1.0).eval()
    x = torch.randn(1, 3, 6, 6, 6)
    f1 = block.layers[0](x)
    f2 = block.layers[1](torch.cat([x, f1], 1))
    expected = block.transition(torch.cat([x, f1, f2], 1))
    assert torch.allclose(block(x), expected)


# ------------------------------------------------------------------------------------------ self_ensemble
@pytest.mark.parametrize("size", [32, 24, 20])
def test_self_ensemble_output_is_the_recursion_over_scales(size: int) -> None:
    torch.manual_seed(0)
    model = _model(["self_ensemble"], cfg=ModelConfig(width=4, depth=3)).eval()
    x = torch.randn(1, 4, size, size, size)
    with torch.no_grad():
        per_scale = model(x, all_scales=True)  # [ỹ_1 (finest), ..., ỹ_S]
        y = model(x)
    assert len(per_scale) == 3
    assert [t.shape[-1] for t in per_scale] == [size, -(-size // 2), -(-size // 4)]
    # by hand: y_S = ỹ_S; y_s = Up(y_{s+1}, 2) + ỹ_s, output y_1
    by_hand = per_scale[2]
    for s in (1, 0):
        up = F.interpolate(by_hand, scale_factor=2, mode="trilinear", align_corners=False)
        up = up[..., : per_scale[s].shape[2], : per_scale[s].shape[3], : per_scale[s].shape[4]]
        if size % 8 == 0:  # exact halving: Up is a plain x2 up-sampling
            by_hand = up + per_scale[s]
        else:  # the model aligns the up-sampled map to the finer scale's size
            by_hand = F.interpolate(by_hand, size=per_scale[s].shape[2:], mode="trilinear",
                                    align_corners=False) + per_scale[s]
    assert torch.allclose(y, by_hand, atol=1e-6)
    assert not torch.allclose(y, per_scale[0], atol=1e-3)  # the coarse scales do contribute


def test_without_self_ensemble_only_the_finest_scale_predicts() -> None:
    model = _model([])
    assert len(model.heads) == 1
    with pytest.raises(ValueError, match="finest scale"):
        model(torch.randn(1, 4, 16, 16, 16), all_scales=True)


# ------------------------------------------------------------------------------------------ warmup
def _expected_lr(i: int, total: int, lr: float, w: int, k: float, power: float = 0.9) -> float:
    if i < w:
        return lr * (1 / k + (1 - 1 / k) * i / w)
    return lr * (1 - (i - w) / (total - w)) ** power


def test_warmup_schedule_values() -> None:
    sched = WarmupSchedule(baseline_recipe().schedule, epochs=2, k=4)
    got = [sched(i, 20, 5) for i in range(20)]
    want = [_expected_lr(i, 20, 1.0, 10, 4.0) for i in range(20)]
    assert got == pytest.approx(want, abs=1e-12)
    assert got[0] == pytest.approx(0.25) and got[10] == pytest.approx(1.0)
    # linear: equal increments during warm-up
    assert [round(b - a, 12) for a, b in zip(got[:10], got[1:11])] == [0.075] * 10


def test_warmup_learning_rate_curve_in_training_and_across_a_resume(prepared, tmp_path: Path) -> None:
    stack = tricks.resolve(["warmup"], {"warmup": {"epochs": 2, "k": 5}})
    cfg = TrainConfig(iterations=10, epoch_length=2, patch=16, batch=1, lr=0.02, num_workers=0, val_every=0)
    want = [_expected_lr(i, 10, 0.02, 4, 5.0) for i in range(10)]

    lrs: list[float] = []
    api.train(prepared, tmp_path / "full", TINY, cfg, stack, progress=lambda info: lrs.append(info["lr"]))
    assert lrs == pytest.approx(want, rel=1e-12)

    stop = threading.Event()
    resumed: list[float] = []

    def progress(info: dict) -> None:
        resumed.append(info["lr"])
        if info["iteration"] == 3:  # in the middle of the warm-up, mid-epoch
            stop.set()

    with pytest.raises(api.TrainingStopped) as exc:
        api.train(prepared, tmp_path / "cut", TINY, cfg, stack, progress=progress, stop=stop)
    assert exc.value.iteration == 3
    api.train(prepared, tmp_path / "cut", TINY, cfg, stack, progress=lambda info: resumed.append(info["lr"]))
    assert resumed == pytest.approx(want, rel=1e-12)
