"""``warmup``: the learning rate rises linearly over the first ``epochs`` epochs, then the base schedule runs.

The paper raises the rate linearly from η to kη over 20 epochs. Here kη is the training's learning rate
(``train.lr``), so the warm-up starts at ``lr / k`` and reaches ``lr`` after ``epochs`` epochs. The schedule it
wraps (poly by default) then runs over the remaining iterations, starting from its own beginning, so the
curve is continuous at the join:

    factor(i) = 1/k + (1 - 1/k) * i / W                      for i < W   (W = epochs * epoch_length)
    factor(i) = base(i - W, total - W, epoch_length)         for i >= W

``k`` is not given in the paper; 4 is our default (searchable in [1.5, 20], log scale).

nnU-Net form: nnU-Net sets its learning rate once per epoch (``lr_scheduler.step(epoch)``), so the warm-up
counts in epochs there: W = round(epochs) epochs rising linearly from lr/k, then nnU-Net's scheduler (poly by
default) over the remaining epochs, from its own beginning, as above with an epoch length of 1.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from bench.engine.recipe import Recipe
from bench.engine.schedule import ConstantSchedule, Schedule
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

    nnunet_form = ("linear warm-up from lr/k over round(W) epochs, then nnU-Net's poly schedule over the "
                   "remaining epochs (configure_optimizers)")

    def apply(self, recipe: Recipe, params: Params) -> None:
        recipe.schedule = WarmupSchedule(recipe.schedule, params.epochs, params.k)

    def nnunet_part(self, params: Any) -> type:
        return _nnunet_part(int(round(params.epochs)), float(params.k))


@functools.cache
def _nnunet_part(epochs: int, k: float) -> type:
    from bench.engines.nnunet.parts import WarmupLR, nnunet_trainer_base

    # the warm-up factor of the native schedule, one "iteration" per epoch (only used while epoch < W)
    factor = WarmupSchedule(ConstantSchedule(), float(epochs), k)

    class WarmupPart(nnunet_trainer_base()):  # type: ignore[misc]
        """Wraps the scheduler ``configure_optimizers`` returns in a linear warm-up over the first epochs."""

        def configure_optimizers(self) -> Any:
            optimizer, scheduler = super().configure_optimizers()
            return optimizer, WarmupLR(optimizer, scheduler, self.initial_lr, epochs, self.num_epochs,
                                       lambda e: factor(e, self.num_epochs, 1))

    return WarmupPart
