"""focal_loss: FL = -(1 - p_t)^gamma log p_t equals CE at gamma 0 and scales CE by (1 - p_t)^gamma."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tricks.focal_loss import focal_voxel_loss


def _logits(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 4, 3, 3, 3, generator=g) * 3, torch.randint(0, 4, (2, 3, 3, 3), generator=g)


def test_equals_cross_entropy_at_gamma_zero() -> None:
    logits, target = _logits()
    fl = focal_voxel_loss(logits, target, 0.0)
    ce = F.cross_entropy(logits, target, reduction="none")
    assert torch.allclose(fl, ce, atol=1e-6)


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0, 3.5])
def test_ratio_to_cross_entropy_is_one_minus_pt_to_the_gamma(gamma: float) -> None:
    # a confident voxel: p_t = 0.9 exactly for the true class 2
    pt = 0.9
    probs = torch.tensor([0.05, 0.03, pt, 0.02])
    logits = probs.log().reshape(1, 4, 1, 1, 1)
    target = torch.full((1, 1, 1, 1), 2)
    fl = focal_voxel_loss(logits, target, gamma).item()
    ce = F.cross_entropy(logits, target).item()
    assert ce == pytest.approx(-math.log(pt), rel=1e-6)
    assert fl / ce == pytest.approx((1 - pt) ** gamma, rel=1e-5)


def test_gradient_is_that_of_the_focal_formula() -> None:
    # d/dz of -(1-p)^g log p for a 2-class voxel, p = sigmoid(z1 - z0), computed by autograd on the formula
    logits, target = _logits(1)
    a = logits.clone().requires_grad_(True)
    focal_voxel_loss(a, target, 2.0).sum().backward()
    b = logits.clone().requires_grad_(True)
    p = torch.softmax(b, 1).gather(1, target.unsqueeze(1)).squeeze(1)
    (-((1 - p) ** 2) * p.log()).sum().backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-5)
    # easy voxels get much less gradient than with plain CE
    c = logits.clone().requires_grad_(True)
    F.cross_entropy(c, target, reduction="sum").backward()
    assert a.grad.abs().sum() < c.grad.abs().sum()


def test_registered_in_the_voxel_weighting_slot() -> None:
    from bench.engine.losses import soft_dice_loss
    from bench.engine.recipe import StepState, baseline_recipe
    from tricks import get, resolve
    from tricks.focal_loss import FocalWeighting

    t = get("focal_loss")
    assert t.replaces == ("voxel_weighting",) and "hard_mining" in t.conflicts
    recipe = resolve(["focal_loss"], {"focal_loss": {"gamma": 1.5}}).build(baseline_recipe())
    assert recipe.voxel_weighting == FocalWeighting(1.5)
    logits, target = _logits(2)
    state = StepState(0, 10, 0, 5, 0.01, (3, 3, 3), 2, recipe.voxel_weighting)
    got = recipe.loss(logits, target, state)  # the baseline loss now uses the focal term + soft Dice
    expected = focal_voxel_loss(logits, target, 1.5).flatten(1).mean(1) + soft_dice_loss(logits, target, batch=True)
    assert torch.allclose(got, expected, atol=1e-6)
