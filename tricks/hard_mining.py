"""Hard voxel mining: only the fraction p of voxels with the largest loss feeds the gradient (paper 2.1).

p falls from ``p_start`` to ``p_end`` over training. The paper states only that the fraction decreases over
the iterations; the defaults here are ``p_start = 1.0`` (plain cross-entropy at the start, every voxel
counts) and ``p_end = 0.1`` reached at the last iteration, with a linear decrease (``schedule = "linear"``;
``"cosine"`` is offered too). The selection is made per sample (per patch), following the engine's
convention that the ``voxel_weighting`` slot returns one cross-entropy value per sample.

Fills the ``voxel_weighting`` slot (as focal loss does): conflicts with ``focal_loss``. The soft Dice term
of the baseline loss is left untouched.

The unselected voxels are dropped by indexing, so their gradient is exactly zero (not merely small).

nnU-Net form: a top-k loss. The CE term of nnU-Net's Dice + CE loss becomes the mean cross-entropy of each
sample's hardest fraction p (nnU-Net's own ``TopKLoss`` keeps a fixed 10 % of the whole batch; this keeps the
trick's per-sample fraction and its schedule), p following the same schedule over nnU-Net's iterations
(epoch * iterations per epoch + step). With the ``multitask`` part (region training) the per-element BCE of the
regions is mined instead.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from bench.engine.losses import voxel_cross_entropy
from bench.engine.recipe import Recipe
from tricks._base import Trick
from tricks._registry import register

if TYPE_CHECKING:
    from bench.engine.recipe import StepState

__all__ = [
    "hard_fraction",
    "hard_voxel_indices",
    "hard_mined_mean",
    "hard_mined_per_sample",
    "HardMiningWeighting",
    "TopKTerm",
    "HardMining",
]


def hard_fraction(
    iteration: int, total: int, p_start: float, p_end: float, schedule: str = "linear"
) -> float:
    """The fraction of voxels kept at ``iteration`` (0-based) of ``total`` iterations.

    ``p_start`` at iteration 0, ``p_end`` at iteration ``total - 1`` and after.
    """
    if total <= 1:
        t = 1.0
    else:
        t = min(max(iteration / (total - 1), 0.0), 1.0)
    if schedule == "linear":
        s = t
    elif schedule == "cosine":
        s = 0.5 * (1.0 - math.cos(math.pi * t))
    else:
        raise ValueError(f"hard_mining.schedule: unknown schedule {schedule!r}; use 'linear' or 'cosine'")
    return p_start + (p_end - p_start) * s


def hard_voxel_indices(voxel_loss: torch.Tensor, p: float) -> torch.Tensor:
    """Flat indices of the ``ceil(p * n)`` voxels (at least one) with the largest loss."""
    flat = voxel_loss.detach().reshape(-1)
    n = flat.numel()
    k = min(n, max(1, math.ceil(p * n)))
    if k == n:
        return torch.arange(n, device=flat.device)
    return torch.topk(flat, k, sorted=False).indices


def hard_mined_mean(voxel_loss: torch.Tensor, p: float) -> torch.Tensor:
    """Mean loss of the hardest fraction ``p`` of voxels; the other voxels get an exactly-zero gradient."""
    flat = voxel_loss.reshape(-1)
    if p >= 1.0:
        return flat.mean()
    return flat[hard_voxel_indices(voxel_loss, p)].mean()


def hard_mined_per_sample(voxel_loss: torch.Tensor, p: float) -> torch.Tensor:
    """``(B, *spatial)`` voxel losses -> ``(B,)``: each sample's mean over its hardest fraction ``p``.

    Unselected voxels are not part of the graph, so their gradient is exactly zero.
    """
    flat = voxel_loss.reshape(voxel_loss.shape[0], -1)
    n = flat.shape[1]
    k = min(n, max(1, math.ceil(p * n)))
    if k == n:
        return flat.mean(1)
    idx = torch.topk(flat.detach(), k, dim=1, sorted=False).indices
    return flat.gather(1, idx).mean(1)


class TopKTerm(torch.nn.Module):
    """nnU-Net's CE term replaced by the per-sample mean over the hardest ``fraction`` of voxels (softmax CE),
    or (``regions``) of the voxel-region BCE values. The part sets ``fraction`` before every step."""

    def __init__(self, fraction: float, regions: bool) -> None:
        super().__init__()
        self.fraction = float(fraction)
        self.regions = bool(regions)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        if self.regions:
            values = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
        else:
            values = voxel_cross_entropy(logits, (target[:, 0] if target.ndim == logits.ndim else target).long())
        return hard_mined_per_sample(values, self.fraction).mean()


@dataclass(frozen=True)
class HardMiningWeighting:
    """``voxel_weighting`` filler: per sample, the mean cross-entropy of its hardest fraction p of voxels,
    p = :func:`hard_fraction` of the step's iteration."""

    p_start: float = 1.0
    p_end: float = 0.1
    schedule: str = "linear"

    def fraction(self, state: StepState) -> float:
        return hard_fraction(state.iteration, state.total, self.p_start, self.p_end, self.schedule)

    def __call__(self, logits: torch.Tensor, target: torch.Tensor, state: StepState) -> torch.Tensor:
        p = self.fraction(state)
        state.extras["hard_mining_fraction"] = p
        return hard_mined_per_sample(voxel_cross_entropy(logits, target), p)


@register
class HardMining(Trick):
    name = "hard_mining"
    summary = "only the hardest fraction p of voxels (largest CE) gets a gradient; p falls p_start -> p_end"
    section = "2.1 (data sampling: hard voxel mining)"
    phase = "training"
    conflicts = ("focal_loss",)
    replaces = ("voxel_weighting",)

    @dataclass(frozen=True)
    class Params:
        p_start: float = field(
            default=1.0,
            metadata={
                "optuna": ("float", 0.5, 1.0),
                "range": (0.0, 1.0),
                "help": "fraction of voxels kept at the first iteration",
            },
        )
        p_end: float = field(
            default=0.1,
            metadata={
                "optuna": ("float", 0.02, 0.5, {"log": True}),
                "range": (0.0, 1.0),
                "help": "fraction of voxels kept at the last iteration",
            },
        )
        schedule: str = field(
            default="linear",
            metadata={
                "optuna": ("categorical", ("linear", "cosine")),
                "help": "how p goes from p_start to p_end",
            },
        )

    def check(self, params: Any) -> None:
        if not 0 < params.p_end <= params.p_start <= 1:
            raise ValueError(
                f"p_end={params.p_end} and p_start={params.p_start} must satisfy "
                "0 < p_end <= p_start <= 1 (the kept fraction decreases)"
            )

    nnunet_form = ("top-k loss: the CE term of nnU-Net's Dice + CE keeps each sample's hardest fraction p of voxels, "
                   "p falling p_start -> p_end over nnU-Net's iterations")

    def apply(self, recipe: Recipe, params: Any) -> None:
        recipe.voxel_weighting = HardMiningWeighting(params.p_start, params.p_end, params.schedule)

    def nnunet_part(self, params: Any) -> type:
        return _nnunet_part(float(params.p_start), float(params.p_end), str(params.schedule))


@functools.cache
def _nnunet_part(p_start: float, p_end: float, schedule: str) -> type:
    from bench.engines.nnunet.parts import compound_loss, nnunet_trainer_base, replace_voxel_term

    class HardMiningPart(nnunet_trainer_base()):  # type: ignore[misc]
        """Top-k CE term; before each training step its kept fraction follows the schedule."""

        def _build_loss(self) -> Any:
            return replace_voxel_term(super()._build_loss(), lambda regions: TopKTerm(p_start, regions))

        def on_train_epoch_start(self) -> None:
            super().on_train_epoch_start()
            self._bench_step = 0

        def train_step(self, batch: dict) -> dict:
            step = getattr(self, "_bench_step", 0)
            iteration = self.current_epoch * self.num_iterations_per_epoch + step
            total = self.num_epochs * self.num_iterations_per_epoch
            compound_loss(self.loss).ce.fraction = hard_fraction(iteration, total, p_start, p_end, schedule)
            self._bench_step = step + 1
            return super().train_step(batch)

    return HardMiningPart
