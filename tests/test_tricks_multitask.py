"""multitask: CE + soft Dice + w * BCE on the regrouped ET/WT/TC maps, checked by hand on 2x2x2 voxels, and a
tiny training of the default (sigmoid: 7 output channels) whose checkpoint predicts BraTS labels."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.engine import api
from bench.engine.checkpoint import load_checkpoint
from bench.engine.config import InferenceConfig, ModelConfig, TrainConfig
from bench.engine.recipe import StepState, baseline_recipe
from tricks import get, resolve
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


# 8 voxels x 4 class logits (voxel order = TARGET.reshape(-1))
CLASS_LOGITS = [
    [0.5, -1.0, 2.0, 0.1],
    [1.5, 0.2, -0.3, 0.0],
    [-0.7, 0.9, 1.1, 0.4],
    [0.0, 0.0, 0.0, 2.5],
    [2.2, -0.5, 0.3, 1.0],
    [-1.2, 1.7, 0.6, 0.8],
    [0.9, 0.1, -1.5, -0.2],
    [0.3, 0.4, 1.9, -0.6],
]
# 8 voxels x 3 region logits (ET, WT, TC) for the sigmoid mode
REGION_LOGITS = [
    [-1.0, 0.5, 0.2],
    [0.3, 1.2, -0.4],
    [-0.8, 2.0, -1.1],
    [1.6, 0.7, 0.9],
    [0.4, -0.6, 1.3],
    [2.1, -0.2, 0.0],
    [-1.5, -0.9, -0.3],
    [0.1, 1.4, -2.0],
]
MEMBERS = {"ET": (3,), "WT": (1, 2, 3), "TC": (1, 3)}


def _logits(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows).T.reshape(1, len(rows[0]), 2, 2, 2)


def _by_hand(w: float, regions: str) -> float:
    """CE + soft Dice (engine's definition: smooth 1, classes 1..3) + w * region BCE, in plain Python.

    ``regions="grouped"``: region probability = sum of the member class probabilities;
    ``"sigmoid"``: region probability = sigmoid of its own logit (REGION_LOGITS)."""
    t = TARGET.reshape(-1).tolist()
    probs = []
    for v in CLASS_LOGITS:
        e = [math.exp(a) for a in v]
        probs.append([a / sum(e) for a in e])
    ce = sum(-math.log(p[c]) for p, c in zip(probs, t)) / 8
    dices = []
    for k in (1, 2, 3):
        inter = sum(p[k] for p, c in zip(probs, t) if c == k)
        denom = sum(p[k] for p in probs) + sum(1 for c in t if c == k)
        dices.append((2 * inter + 1) / (denom + 1))
    dice = 1 - sum(dices) / 3
    bce = 0.0
    for r, region in enumerate(("ET", "WT", "TC")):
        for v, (p, c) in enumerate(zip(probs, t)):
            if regions == "grouped":
                q = sum(p[k] for k in MEMBERS[region])
            else:
                q = 1 / (1 + math.exp(-REGION_LOGITS[v][r]))
            y = 1.0 if c in MEMBERS[region] else 0.0
            bce += -(y * math.log(q) + (1 - y) * math.log(1 - q))
    bce /= 24
    return ce + dice + w * bce


def test_default_is_sigmoid_with_three_extra_outputs() -> None:
    t = get("multitask")
    assert t.Params().regions == "sigmoid"
    assert "model.extra_outputs" in t.wraps and "loss" in t.wraps
    recipe = resolve(["multitask"]).build(baseline_recipe())
    assert recipe.extra_outputs == 3
    assert isinstance(recipe.loss, MultitaskLoss) and recipe.loss.regions == "sigmoid"
    grouped = resolve(["multitask"], {"multitask": {"regions": "grouped"}}).build(baseline_recipe())
    assert grouped.extra_outputs == 0 and grouped.loss.regions == "grouped"


def test_regions_value_is_checked() -> None:
    from bench.errors import TrickError

    with pytest.raises(TrickError, match="regions"):
        resolve(["multitask"], {"multitask": {"regions": "softmax"}})


@pytest.mark.parametrize("w", [0.0, 0.5, 1.0, 2.0])
def test_sigmoid_loss_equals_ce_plus_dice_plus_w_bce_by_hand(w: float) -> None:
    recipe = resolve(["multitask"], {"multitask": {"weight": w}}).build(baseline_recipe())
    logits = torch.cat([_logits(CLASS_LOGITS), _logits(REGION_LOGITS)], 1)
    assert logits.shape == (1, 7, 2, 2, 2)
    got = recipe.loss(logits, TARGET, _state(recipe))
    assert got.shape == (1,)
    assert got.item() == pytest.approx(_by_hand(w, "sigmoid"), rel=1e-5)
    # the base loss sees the 4 class channels only; the BCE term is w * sigmoid BCE of channels 4-6
    base = baseline_recipe()
    plain = base.loss(logits[:, :4], TARGET, _state(base)).item()
    assert got.item() - plain == pytest.approx(w * region_bce(logits[:, 4:], TARGET).item(), rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("w", [0.0, 0.5, 2.0])
def test_grouped_loss_equals_ce_plus_dice_plus_w_bce_by_hand(w: float) -> None:
    stack = resolve(["multitask"], {"multitask": {"weight": w, "regions": "grouped"}})
    recipe = stack.build(baseline_recipe())
    assert isinstance(recipe.loss, MultitaskLoss)
    logits = _logits(CLASS_LOGITS)
    got = recipe.loss(logits, TARGET, _state(recipe))
    assert got.shape == (1,)
    assert got.item() == pytest.approx(_by_hand(w, "grouped"), rel=1e-5)
    # the BCE term is really there: w changes the loss by w * BCE
    base = baseline_recipe()
    plain = base.loss(logits, TARGET, _state(base)).item()
    assert got.item() - plain == pytest.approx(
        w * grouped_region_bce(logits, TARGET).item(), rel=1e-5, abs=1e-7
    )


def test_sigmoid_mode_refuses_logits_without_region_channels() -> None:
    recipe = resolve(["multitask"]).build(baseline_recipe())
    with pytest.raises(ValueError, match="extra_outputs"):
        recipe.loss(_logits(CLASS_LOGITS), TARGET, _state(recipe))


def test_region_channels_come_after_extra_outputs_of_earlier_tricks() -> None:
    # another trick applied before multitask added 2 extra outputs: the regions are channels 6-8, and the
    # wrapped loss receives channels 0-5 (classes + the other trick's outputs)
    g = torch.Generator().manual_seed(0)
    recipe = baseline_recipe()
    recipe.extra_outputs = 2
    seen: list[torch.Tensor] = []
    inner = recipe.loss

    def base(logits, target, state):
        seen.append(logits)
        return inner(logits[:, :4], target, state)

    recipe.loss = base
    resolve(["multitask"], {"multitask": {"weight": 0.7}}).build(recipe)
    assert recipe.extra_outputs == 5
    logits = torch.randn(1, 9, 2, 2, 2, generator=g)
    got = recipe.loss(logits, TARGET, _state(recipe))
    assert torch.equal(seen[0], logits[:, :6])
    expected = inner(logits[:, :4], TARGET, _state(recipe)) + 0.7 * region_bce(logits[:, 6:9], TARGET)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


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


@pytest.mark.slow
def test_default_multitask_trains_seven_outputs_and_predicts_brats_labels(prepared, tmp_path: Path) -> None:
    stack = resolve(["multitask"])
    train_cfg = TrainConfig(iterations=2, epoch_length=1, patch=16, batch=1, num_workers=0, val_every=0,
                            checkpoint_every=0)
    losses: list[float] = []
    result = api.train(prepared, tmp_path / "t", ModelConfig(width=4, depth=2), train_cfg, stack,
                       progress=lambda info: losses.append(info["loss"]))
    assert len(losses) >= 2 and all(math.isfinite(v) for v in losses), losses
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt["arch"]["extra_outputs"] == 3
    heads = [v for k, v in ckpt["model"].items() if k.endswith("heads.0.weight")]
    assert heads and heads[0].shape[0] == 7  # 4 classes + ET/WT/TC
    case_id = prepared.test_ids()[0]
    (cid, labels), = list(api.predict([result.checkpoint], prepared, [case_id], InferenceConfig(window=16)))
    assert cid == case_id
    assert labels.shape == tuple(prepared.load(case_id).meta.source_shape)
    assert set(np.unique(labels).tolist()) <= {0, 1, 2, 4}


def test_region_soft_dice_by_hand() -> None:
    from tricks.multitask import region_soft_dice

    target = torch.tensor([[[[0, 3], [2, 1]]]])  # (1, 1, 2, 2): BG, ET, ED, NCR
    y = region_targets(target)  # ET: 1 voxel, WT: 3, TC: 2
    probs = torch.full((1, 3, 1, 2, 2), 0.5)
    # per region: 1 - (2 * 0.5 * |y| + 1) / (0.5 * 4 + |y| + 1)
    want = np.mean([1 - (2 * 0.5 * n + 1) / (2 + n + 1) for n in (1, 3, 2)])
    assert region_soft_dice(probs, target).item() == pytest.approx(want, rel=1e-6)
    assert region_soft_dice(y, target).item() == pytest.approx(0.0, abs=1e-7)  # perfect region maps


@pytest.mark.parametrize("regions", ["sigmoid", "grouped"])
def test_region_dice_adds_the_soft_dice_of_the_region_probabilities(regions: str) -> None:
    from tricks.multitask import _grouped_probs, region_soft_dice

    plain = resolve(["multitask"], {"multitask": {"regions": regions}}).build(baseline_recipe())
    with_dice = resolve(["multitask"], {"multitask": {"regions": regions, "region_dice": True}}).build(
        baseline_recipe())
    assert not plain.loss.region_dice and with_dice.loss.region_dice
    logits = (torch.cat([_logits(CLASS_LOGITS), _logits(REGION_LOGITS)], 1) if regions == "sigmoid"
              else _logits(CLASS_LOGITS))
    probs = torch.sigmoid(logits[:, 4:7]) if regions == "sigmoid" else _grouped_probs(logits[:, :4])
    diff = with_dice.loss(logits, TARGET, _state(with_dice)) - plain.loss(logits, TARGET, _state(plain))
    assert diff.item() == pytest.approx(region_soft_dice(probs, TARGET).item(), rel=1e-5)
    assert diff.item() > 0.01
