"""Focal loss: cross-entropy replaced by FL(p_t) = -(1 - p_t)^gamma * log(p_t) (paper 2.1, data sampling).

The paper reports focal loss as the soft alternative to hard voxel mining and finds it better. Both act on
how each voxel's cross-entropy counts, so both fill the ``voxel_weighting`` slot: focal loss conflicts
with ``hard_mining``.

Defaults: the paper gives no gamma; ``gamma = 2.0`` is the value of the focal-loss paper (Lin et al. 2017),
searched over [0, 5]. The soft Dice term of the baseline loss is left untouched; only its cross-entropy
term becomes focal.

The factor (1 - p_t)^gamma is part of the loss, not a detached weight, so the gradient is that of FL itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from bench.engine.recipe import Recipe
from tricks._base import Trick
from tricks._registry import register

if TYPE_CHECKING:
    from bench.engine.recipe import StepState

__all__ = ["focal_voxel_loss", "FocalWeighting", "FocalLoss"]


def focal_voxel_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-voxel focal loss.

    ``logits``: (B, C, *spatial) raw scores; ``target``: (B, *spatial) class indices. Returns (B, *spatial)
    with ``-(1 - p_t)^gamma * log p_t``. At ``gamma = 0`` this is exactly the per-voxel cross-entropy.
    """
    ce = F.cross_entropy(logits.float(), target.long(), reduction="none")  # -log p_t, fused
    if gamma == 0:
        return ce
    q = -torch.expm1(-ce)  # 1 - p_t, accurate for confident voxels
    factor = q * q if gamma == 2 else q.pow(gamma)
    return factor * ce


@dataclass(frozen=True)
class FocalWeighting:
    """``voxel_weighting`` filler: per-sample mean of the focal loss of every voxel."""

    gamma: float = 2.0

    def __call__(self, logits: torch.Tensor, target: torch.Tensor, state: StepState) -> torch.Tensor:
        return focal_voxel_loss(logits, target, self.gamma).flatten(1).mean(1)


@register
class FocalLoss(Trick):
    name = "focal_loss"
    summary = "cross-entropy term becomes focal loss -(1-p_t)^gamma log p_t (easy voxels count less)"
    section = "2.1 (data sampling: focal loss)"
    phase = "training"
    conflicts = ("hard_mining",)
    replaces = ("voxel_weighting",)

    @dataclass(frozen=True)
    class Params:
        gamma: float = field(
            default=2.0,
            metadata={
                "optuna": ("float", 0.0, 5.0),
                "range": (0.0, None),
                "help": "focusing exponent gamma (0 = cross-entropy)",
            },
        )

    def apply(self, recipe: Recipe, params: Any) -> None:
        recipe.voxel_weighting = FocalWeighting(params.gamma)
