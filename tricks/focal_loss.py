"""Focal loss: cross-entropy replaced by FL(p_t) = -(1 - p_t)^gamma * log(p_t) (paper 2.1, data sampling).

The paper reports focal loss as the soft alternative to hard voxel mining and finds it better. Both act on
how each voxel's cross-entropy counts, so both fill the ``voxel_weighting`` slot: focal loss conflicts
with ``hard_mining``.

Defaults: the paper gives no gamma; ``gamma = 2.0`` is the value of the focal-loss paper (Lin et al. 2017),
searched over [0, 5]. The soft Dice term of the baseline loss is left untouched; only its cross-entropy
term becomes focal.

The factor (1 - p_t)^gamma is part of the loss, not a detached weight, so the gradient is that of FL itself.

nnU-Net form: the CE term of nnU-Net's Dice + CE loss becomes this focal loss (mean over voxels); with the
``multitask`` part (region training) the BCE term of its Dice + BCE loss becomes the binary focal loss of each
region, -(1 - p_t)^gamma log p_t with p_t the sigmoid probability of the true region value.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from bench.engine.recipe import Recipe
from tricks._base import Trick
from tricks._registry import register

if TYPE_CHECKING:
    from bench.engine.recipe import StepState

__all__ = ["focal_voxel_loss", "binary_focal_loss", "FocalTerm", "FocalWeighting", "FocalLoss"]


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


def binary_focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float) -> torch.Tensor:
    """Element-wise binary focal loss of sigmoid ``logits`` against 0/1 ``target`` (same shape); at
    ``gamma = 0`` it is the binary cross-entropy."""
    bce = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")  # -log p_t
    if gamma == 0:
        return bce
    q = -torch.expm1(-bce)
    return (q * q if gamma == 2 else q.pow(gamma)) * bce


class FocalTerm(torch.nn.Module):
    """nnU-Net's CE term replaced by the focal loss: softmax classes, or (``regions``) sigmoid regions."""

    def __init__(self, gamma: float, regions: bool) -> None:
        super().__init__()
        self.gamma = float(gamma)
        self.regions = bool(regions)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.regions:
            return binary_focal_loss(logits, target, self.gamma).mean()
        if target.ndim == logits.ndim:
            target = target[:, 0]
        return focal_voxel_loss(logits, target, self.gamma).mean()


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

    nnunet_form = "the CE term of nnU-Net's Dice + CE loss becomes focal loss (with multitask: binary focal on regions)"

    def apply(self, recipe: Recipe, params: Any) -> None:
        recipe.voxel_weighting = FocalWeighting(params.gamma)

    def nnunet_part(self, params: Any) -> type:
        return _nnunet_part(float(params.gamma))


@functools.cache
def _nnunet_part(gamma: float) -> type:
    from bench.engines.nnunet.parts import nnunet_trainer_base, replace_voxel_term

    class FocalLossPart(nnunet_trainer_base()):  # type: ignore[misc]
        """Replaces the cross-entropy term of the loss ``_build_loss`` returns by the focal loss."""

        def _build_loss(self) -> Any:
            return replace_voxel_term(super()._build_loss(), lambda regions: FocalTerm(gamma, regions))

    return FocalLossPart
