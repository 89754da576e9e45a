"""Multitask learning: 4-class loss plus a binary cross-entropy on the regrouped region maps (paper 2.3).

Besides the 4-class cross-entropy (and soft Dice) on {BG, NCR/NET, ED, ET}, the network is trained on the
three regrouped binary maps ET, WT, TC (the paper's "{BG, ET, WT, TC}" task): the region maps overlap, so
they are three independent binary tasks, each with a binary cross-entropy.

loss = base loss (CE + soft Dice, through the recipe) + w * mean over ET, WT, TC and voxels of BCE;
the paper gives no w: default ``weight = 1.0`` (searched over [0.1, 2], log scale).

How the region probabilities are formed (``regions`` parameter):

- ``"sigmoid"`` (paper-faithful): three extra sigmoid output channels after the 4 class channels. It needs
  the engine to build the model with 3 extra outputs and to drop them at inference; the engine does not
  offer that yet (request 1 in ``docs/.requests-tricks.md``), so choosing it is refused at resolve time
  until it does. The loss already handles such logits: ``(B, 7, ...)`` -> class channels 0-3, regions 4-6.
- ``"grouped"`` (default, works today): the region probabilities are sums of the class probabilities,
  q_ET = p_ET, q_WT = p_NCR + p_ED + p_ET, q_TC = p_NCR + p_ET, computed in log space
  (log q = logsumexp of the member logits - logsumexp of all logits), so the extra task shapes the same
  softmax and inference is unchanged.

Wraps the ``loss`` slot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from bench.engine.losses import LossFn
from bench.engine.recipe import Recipe
from tricks._base import Trick
from tricks._registry import register

if TYPE_CHECKING:
    from bench.engine.recipe import StepState

__all__ = [
    "REGION_ORDER",
    "N_CLASSES",
    "region_targets",
    "region_bce",
    "grouped_region_bce",
    "MultitaskLoss",
    "Multitask",
]

REGION_ORDER: tuple[str, ...] = ("ET", "WT", "TC")
N_CLASSES = 4  # engine class indices: 0 BG, 1 NCR/NET, 2 ED, 3 ET
# class index -> membership of each region, in REGION_ORDER
_MEMBERSHIP = torch.tensor(
    [
        [0.0, 0.0, 0.0],  # background
        [0.0, 1.0, 1.0],  # NCR/NET: WT, TC
        [0.0, 1.0, 0.0],  # ED: WT
        [1.0, 1.0, 1.0],  # ET: ET, WT, TC
    ]
)


def region_targets(target: torch.Tensor) -> torch.Tensor:
    """Class-index map (B, *spatial) -> float region maps (B, 3, *spatial) in ``REGION_ORDER``."""
    table = _MEMBERSHIP.to(target.device)
    maps = table[target.long()]  # (B, *spatial, 3)
    return maps.movedim(-1, 1).contiguous()


def region_bce(region_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample (B,) mean binary cross-entropy of (B, 3, *spatial) sigmoid region logits."""
    bce = F.binary_cross_entropy_with_logits(region_logits.float(), region_targets(target), reduction="none")
    return bce.flatten(1).mean(1)


def grouped_region_bce(class_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample (B,) mean BCE of region probabilities formed as sums of the class probabilities."""
    z = class_logits.float()
    lse = torch.logsumexp(z, 1)
    y = region_targets(target)
    terms = []
    for r in range(len(REGION_ORDER)):
        member = _MEMBERSHIP[:, r].bool()
        log_q = torch.logsumexp(z[:, member], 1) - lse
        log_not_q = torch.logsumexp(z[:, ~member], 1) - lse
        terms.append(-(y[:, r] * log_q + (1 - y[:, r]) * log_not_q))
    return torch.stack(terms, 1).flatten(1).mean(1)


@dataclass(frozen=True)
class MultitaskLoss:
    """``loss`` wrapper: ``base(class logits) + weight * region BCE`` per sample."""

    base: LossFn
    weight: float = 1.0
    n_classes: int = N_CLASSES

    def __call__(self, logits: torch.Tensor, target: torch.Tensor, state: StepState) -> torch.Tensor:
        if logits.shape[1] == self.n_classes + len(REGION_ORDER):  # extra sigmoid outputs present
            cls, reg = logits[:, : self.n_classes], logits[:, self.n_classes :]
            bce = region_bce(reg, target)
        else:
            cls = logits
            bce = grouped_region_bce(cls, target)
        state.extras["multitask_bce"] = float(bce.detach().mean())
        return self.base(cls, target, state) + self.weight * bce


@register
class Multitask(Trick):
    name = "multitask"
    summary = "adds w * binary CE on the regrouped ET/WT/TC region maps to the 4-class loss"
    section = "2.3 (multi-task learning)"
    phase = "training"
    wraps = ("loss",)
    order = 60  # outer: adds its term to whatever loss is below

    @dataclass(frozen=True)
    class Params:
        weight: float = field(
            default=1.0,
            metadata={
                "optuna": ("float", 0.1, 2.0, {"log": True}),
                "range": (0.0, None),
                "help": "weight w of the region BCE",
            },
        )
        regions: str = field(
            default="grouped",
            metadata={
                "choices": ("grouped", "sigmoid"),
                "help": "region probabilities: grouped class sums, or extra sigmoid outputs (needs engine)",
            },
        )

    def check(self, params: Any) -> None:
        if (
            params.regions == "sigmoid"
            and not hasattr(Recipe, "extra_outputs")
            and "extra_outputs" not in getattr(Recipe, "__dataclass_fields__", {})
        ):
            raise ValueError(
                "regions='sigmoid' needs extra model outputs, which this engine does not offer yet; "
                "use regions='grouped'"
            )

    def apply(self, recipe: Recipe, params: Any) -> None:
        if params.regions == "sigmoid":
            recipe.extra_outputs = max(int(getattr(recipe, "extra_outputs", 0)), len(REGION_ORDER))  # type: ignore[attr-defined]
        recipe.loss = MultitaskLoss(recipe.loss, params.weight)
