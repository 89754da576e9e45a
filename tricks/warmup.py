"""``warmup``: the learning rate rises linearly over the first ``epochs`` epochs, then the base schedule runs.

The paper raises the rate linearly from η to kη over 20 epochs. Here kη is the training's learning rate
(``train.lr``), so the warm-up starts at ``lr / k`` and reaches ``lr`` after ``epochs`` epochs. The schedule it
wraps (poly by default) then runs over the remaining iterations, starting from its own beginning, so the
curve is continuous at the join:

    factor(i) = 1/k + (1 - 1/k) * i / W                      for i < W   (W = epochs * epoch_length)
    factor(i) = base(i - W, total - W, epoch_length)         for i >= W

``k`` is not given in the paper; 4 is our default (searchable in [1.5, 20], log scale).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.engine.recipe import Recipe
from bench.engine.schedule import Schedule
from tricks._base import Trick
from tricks._registry import register


@dataclass(frozen=True)
class WarmupSchedule:
    """Linear warm-up from ``1/k`` to 1 over ``epochs`` epochs, then ``inner`` on the remaining iterations."""

    inner: Schedule
    epochs: float
    k: float

    def __call__(self, iteration: int, total: int, epoch_length: int) -> float:
        w = int(round(self.epochs * epoch_length))
        if w <= 0:
            return self.inner(iteration, total, epoch_length)
        if iteration < w:
            return 1.0 / self.k + (1.0 - 1.0 / self.k) * iteration / w
        return self.inner(iteration - w, max(1, total - w), epoch_length)


@register
class Warmup(Trick):
    name = "warmup"
    summary = "learning rate rises linearly from lr/k to lr over the first W epochs, then the base schedule"
    section = "2.3 (warm-up)"
    phase = "training"
    wraps = ("schedule",)
    order = 50

    @dataclass(frozen=True)
    class Params:
        epochs: float = field(default=20.0, metadata={"optuna": ("float", 1.0, 40.0), "range": (0.0, None),
                                                       "help": "warm-up length W in epochs (paper: 20)"})
        k: float = field(default=4.0, metadata={"optuna": ("float", 1.5, 20.0, {"log": True}),
                                                 "range": (1.0, None),
                                                 "help": "the rate starts at lr/k (paper: eta -> k*eta)"})

    def apply(self, recipe: Recipe, params: Params) -> None:
        recipe.schedule = WarmupSchedule(recipe.schedule, params.epochs, params.k)
