"""multitask: CE + soft Dice + w * BCE on the regrouped ET/WT/TC maps, checked by hand on 2x2x2 voxels."""

from __future__ import annotations

import math

import pytest
import torch

from bench.engine.recipe import StepState, baseline_recipe
from tricks import resolve
from tricks.multitask import MultitaskLoss, grouped_region_bce, region_bce, region_targets

# a hand-made 2x2x2 label map in engine classes: 0 BG, 1 NCR/NET, 2 ED, 3 ET
TARGET = torch.tensor([[[[0, 1], [2, 3]], [[3, 3], [0, 2]]]])  # (1, 2, 2, 2)


def test_region_maps_by_hand() -> None:
    r = region_targets(TARGET)
    assert r.shape == (1, 3, 2, 2, 2)
    flat_t = TARGET.reshape(-1).tolist()
    et = [1.0 if c == 3 else 0.0 for c in flat_t]
    wt = [1.0 if c in (1, 2, 3) else 0.0 for c in flat_t]
    tc = [1.0 if c in (1, 3) else 0.0 for c in flat_t]
    assert r[0, 0].reshape(-1).tolist() == et
    assert r[0, 1].reshape(-1).tolist() == wt
    assert r[0, 2].reshape(-1).tolist() == tc


def test_region_bce_by_hand() -> None:
    logits = torch.linspace(-2, 2, 24).reshape(1, 3, 2, 2, 2)
    r = region_targets(TARGET)
    total = 0.0
    for z, y in zip(logits.reshape(-1).tolist(), r.reshape(-1).tolist()):
        s = 1 / (1 + math.exp(-z))
        total += -(y * math.log(s) + (1 - y) * math.log(1 - s))
    assert region_bce(logits, TARGET).item() == pytest.approx(total / 24, rel=1e-6)
    assert region_bce(logits, TARGET).shape == (1,)


def _state(recipe) -> StepState:
    return StepState(
        iteration=0,
        total=10,
        epoch=0,
        epoch_length=5,
        lr=0.01,
        patch=(2, 2, 2),
        batch=1,
        voxel_weighting=recipe.voxel_weighting,
    )


def _by_hand(logits: torch.Tensor, w: float) -> float:
    """CE + soft Dice (engine's definition: smooth 1, classes 1..3) + w * grouped region BCE, in plain Python."""
    z = logits[0].reshape(4, -1).T.tolist()  # 8 voxels x 4 logits
    t = TARGET.reshape(-1).tolist()
    probs = []
    for v in z:
        e = [math.exp(a) for a in v]
        probs.append([a / sum(e) for a in e])
    ce = sum(-math.log(p[c]) for p, c in zip(probs, t)) / 8
    dices = []
    for k in (1, 2, 3):
        inter = sum(p[k] for p, c in zip(probs, t) if c == k)
        denom = sum(p[k] for p in probs) + sum(1 for c in t if c == k)
        dices.append((2 * inter + 1) / (denom + 1))
    dice = 1 - sum(dices) / 3
    members = {"ET": (3,), "WT": (1, 2, 3), "TC": (1, 3)}
    bce = 0.0
    for region in ("ET", "WT", "TC"):
        for p, c in zip(probs, t):
            q = sum(p[k] for k in members[region])
            y = 1.0 if c in members[region] else 0.0
            bce += -(y * math.log(q) + (1 - y) * math.log(1 - q))
    bce /= 24
    return ce + dice + w * bce


@pytest.mark.parametrize("w", [0.0, 0.5, 1.0, 2.0])
def test_full_loss_equals_ce_plus_dice_plus_w_bce_by_hand(w: float) -> None:
    stack = resolve(["multitask"], {"multitask": {"weight": w}})
    recipe = stack.build(baseline_recipe())
    assert isinstance(recipe.loss, MultitaskLoss)
    logits = torch.tensor(
        [
            [0.5, -1.0, 2.0, 0.1],
            [1.5, 0.2, -0.3, 0.0],
            [-0.7, 0.9, 1.1, 0.4],
            [0.0, 0.0, 0.0, 2.5],
            [2.2, -0.5, 0.3, 1.0],
            [-1.2, 1.7, 0.6, 0.8],
            [0.9, 0.1, -1.5, -0.2],
            [0.3, 0.4, 1.9, -0.6],
        ]
    ).T.reshape(1, 4, 2, 2, 2)
    got = recipe.loss(logits, TARGET, _state(recipe))
    assert got.shape == (1,)
    assert got.item() == pytest.approx(_by_hand(logits, w), rel=1e-5)
    # the BCE term is really there: w changes the loss by w * BCE
    base = baseline_recipe()
    plain = base.loss(logits, TARGET, _state(base)).item()
    assert got.item() - plain == pytest.approx(
        w * grouped_region_bce(logits, TARGET).item(), rel=1e-5, abs=1e-7
    )


def test_sigmoid_outputs_are_used_when_present() -> None:
    # logits with 7 channels (4 classes + ET/WT/TC sigmoid outputs): loss = base(4 classes) + w * sigmoid BCE
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 7, 2, 2, 2, generator=g)
    recipe = baseline_recipe()
    loss = MultitaskLoss(recipe.loss, 0.7)
    base = recipe.loss(logits[:, :4], TARGET, _state(recipe))
    assert loss(logits, TARGET, _state(recipe)).item() == pytest.approx(
        (base + 0.7 * region_bce(logits[:, 4:], TARGET)).item(), rel=1e-6
    )
