"""hard_mining: only the top-p voxels by loss get a gradient; p follows the schedule."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tricks.hard_mining import hard_fraction, hard_mined_mean, hard_voxel_indices


def test_schedule_linear_and_cosine_endpoints() -> None:
    total = 11
    lin = [hard_fraction(i, total, 1.0, 0.1) for i in range(total)]
    assert lin[0] == pytest.approx(1.0) and lin[-1] == pytest.approx(0.1)
    assert lin[5] == pytest.approx(0.55)
    assert all(a > b for a, b in zip(lin, lin[1:]))  # strictly decreasing
    assert hard_fraction(50, total, 1.0, 0.1) == pytest.approx(0.1)  # stays at p_end after the budget
    cos = [hard_fraction(i, total, 1.0, 0.1, "cosine") for i in range(total)]
    assert cos[0] == pytest.approx(1.0) and cos[-1] == pytest.approx(0.1) and cos[5] == pytest.approx(0.55)
    with pytest.raises(ValueError, match="schedule"):
        hard_fraction(0, 10, 1.0, 0.1, "step")


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5, 0.9])
def test_unselected_voxels_have_exactly_zero_gradient(p: float) -> None:
    g = torch.Generator().manual_seed(3)
    logits = (torch.randn(2, 4, 4, 4, 4, generator=g) * 2).requires_grad_(True)
    target = torch.randint(0, 4, (2, 4, 4, 4), generator=g)
    voxel = F.cross_entropy(logits, target, reduction="none")
    hard_mined_mean(voxel, p).backward()
    n = voxel.numel()
    k = math.ceil(p * n)
    per_voxel_grad = logits.grad.abs().sum(1).reshape(-1)
    selected = per_voxel_grad != 0
    assert int(selected.sum()) == k  # the selected fraction is exactly ceil(p * n)
    # the selected voxels are the hardest ones: every selected loss >= every unselected loss
    flat = voxel.detach().reshape(-1)
    assert flat[selected].min() >= flat[~selected].max()
    assert torch.all(per_voxel_grad[~selected] == 0)


def test_selected_fraction_follows_schedule_over_training() -> None:
    total, n = 20, 1000
    loss = torch.rand(n)
    for it in range(total):
        p = hard_fraction(it, total, 1.0, 0.2)
        assert hard_voxel_indices(loss, p).numel() == min(n, math.ceil(p * n))


def test_value_is_mean_of_the_top_losses() -> None:
    loss = torch.tensor([0.1, 5.0, 0.3, 2.0, 1.0, 0.2, 0.0, 4.0])
    assert hard_mined_mean(loss, 0.25).item() == pytest.approx((5.0 + 4.0) / 2)
    assert hard_mined_mean(loss, 1.0).item() == pytest.approx(loss.mean().item())


def test_registered_weighting_uses_the_step_schedule() -> None:
    from bench.engine.recipe import StepState, baseline_recipe
    from bench.errors import TrickError
    from tricks import resolve
    from tricks.hard_mining import HardMiningWeighting

    recipe = resolve(["hard_mining"], {"hard_mining": {"p_start": 0.8, "p_end": 0.2}}).build(
        baseline_recipe()
    )
    w = recipe.voxel_weighting
    assert isinstance(w, HardMiningWeighting)
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 4, 5, 5, 4, generator=g)
    target = torch.randint(0, 4, (2, 5, 5, 4), generator=g)
    n = 5 * 5 * 4
    for it in (0, 4, 9):
        a = logits.clone().requires_grad_(True)
        state = StepState(it, 10, 0, 5, 0.01, (5, 5, 4), 2, w)
        out = w(a, target, state)
        assert out.shape == (2,)
        p = hard_fraction(it, 10, 0.8, 0.2)
        assert state.extras["hard_mining_fraction"] == pytest.approx(p)
        out.sum().backward()
        kept = (a.grad.abs().sum(1) != 0).reshape(2, -1).sum(1)
        assert kept.tolist() == [math.ceil(p * n)] * 2  # per sample, the scheduled fraction exactly
    with pytest.raises(TrickError, match="p_end"):
        resolve(["hard_mining"], {"hard_mining": {"p_start": 0.2, "p_end": 0.5}})
