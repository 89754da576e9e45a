"""random_patch_size: draws follow the pool's weights; resumable draws."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chisquare

from tricks.random_patch_size import PAPER_POOL, PatchPool, PoolPatchPlan


def _rng(seed: int, it: int) -> np.random.Generator:
    return np.random.default_rng([seed, it])


def test_draws_follow_weights_chi_square() -> None:
    pool = PatchPool.make([[32, 4], [48, 2], [64, 1]], [3, 2, 1])
    n = 6000
    plan = PoolPatchPlan(pool)
    draws = [plan(i, _rng(11, i)) for i in range(n)]
    counts = np.array([sum(d == pair for d in draws) for pair in pool.pairs])
    expected = np.array(pool.probabilities) * n
    assert np.allclose(pool.probabilities, [0.5, 1 / 3, 1 / 6])
    stat, pvalue = chisquare(counts, expected)
    assert pvalue > 0.001, (counts, expected)
    # and clearly not uniform
    assert counts[0] > 2.5 * counts[2]


def test_paper_pool_default_uniform_and_all_pairs_drawn() -> None:
    pool = PatchPool.make(PAPER_POOL)
    assert pool.pairs == ((64, 15), (80, 8), (96, 4), (112, 2), (128, 1), (144, 1))
    assert np.allclose(pool.probabilities, 1 / 6)
    drawn = {pool.draw(_rng(0, i)) for i in range(200)}
    assert drawn == set(PAPER_POOL)
    assert pool.largest == (144, 1)


def test_draw_is_pure_function_of_the_iteration_generator() -> None:
    plan = PoolPatchPlan(PatchPool.make([[32, 4], [48, 2], [64, 1]]))
    a = [plan(i, _rng(5, i)) for i in range(100)]
    b = [plan(i, _rng(5, i)) for i in range(50, 100)]  # a "resumed" run from iteration 50
    assert a[50:] == b
    assert a != [plan(i, _rng(6, i)) for i in range(100)]


@pytest.mark.parametrize(
    "pairs, weights, msg",
    [
        ([], None, "empty"),
        ([[32, 0]], None, "positive"),
        ([[32, 2]], [1, 2], "weights"),
        ([[32, 2]], [-1], "weights"),
    ],
)
def test_bad_pool_refused(pairs, weights, msg) -> None:
    with pytest.raises(ValueError, match=msg):
        PatchPool.make(pairs, weights, where="random_patch_size.pool")


def test_model_runs_at_every_paper_size() -> None:
    """Each paper patch edge through a depth-4 model (along one axis, so it stays cheap on 2 CPU cores;
    the CPU pool below runs full cubic patches in a real training)."""
    import torch

    from bench.engine.config import ModelConfig
    from bench.engine.model import build_model

    model = build_model(ModelConfig(width=2, depth=4), "plain", "self_ensemble").eval()
    with torch.no_grad():
        for patch, _ in PAPER_POOL:
            y = model(torch.zeros(1, 4, patch, 16, 16))
            assert y.shape == (1, 4, patch, 16, 16)


@pytest.mark.slow
def test_training_draws_from_pool_and_lr_counts_iterations(tmp_path) -> None:
    import math

    from bench.engine.config import ModelConfig, TrainConfig
    from bench.engine.recipe import Hook
    from bench.engine.schedule import PolySchedule
    from bench.engine.synthetic import MemoryDataset
    from tricks import resolve

    steps: list[tuple[int, float, tuple[int, int, int], int]] = []

    class Rec(Hook):
        def before_step(self, state) -> None:
            steps.append((state.iteration, state.lr, state.patch, state.batch))

    stack = resolve(["random_patch_size"], {"random_patch_size": {"pool": [[16, 2], [24, 1], [32, 1]]}})
    from bench.engine.recipe import TrainContext, baseline_recipe

    cfg = TrainConfig(iterations=8, epoch_length=4, patch=16, batch=2, num_workers=0, device="cpu", lr=0.01)
    recipe = stack.build(baseline_recipe(cfg))
    recipe.add_hook(Rec())
    ds = MemoryDataset(cases=4, shape=(32, 32, 24), folds=2)  # seed 0: all three pairs drawn in 8 steps
    result = recipe.procedure(TrainContext(ds, tmp_path, ModelConfig(width=4, depth=2), cfg, recipe, stack))
    assert result.iterations == 8 and [s[0] for s in steps] == list(range(8))
    seen = {(s[2][0], s[3]) for s in steps}
    assert seen == {(16, 2), (24, 1), (32, 1)}  # every pair ran through the model
    assert all(s[2] == (s[2][0],) * 3 for s in steps)
    poly = PolySchedule(cfg.poly_power)
    for it, lr, _, _ in steps:  # one schedule step per iteration, whatever the batch size
        assert math.isclose(lr, 0.01 * poly(it, 8, 4), rel_tol=1e-12)
