"""Losses: the baseline fillers of the ``loss`` and ``voxel_weighting`` slots.

Conventions every loss filler follows (so tricks compose):

- ``logits``: float tensor ``(B, C, X, Y, Z)`` (the model's final output, possibly bf16 under autocast;
  compute in float32); ``target``: int64 ``(B, X, Y, Z)`` class indices 0..C-1;
  ``state``: the :class:`bench.engine.step.StepState` of the step (iteration, total, epoch, sample weights,
  the recipe's ``voxel_weighting``).
- A loss returns a **per-sample** tensor ``(B,)``. The trainer multiplies it by ``state.sample_weight``
  (1 for labelled cases, alpha for pseudo-labelled ones) and averages over the batch.
- The ``voxel_weighting`` slot is the cross-entropy term's per-voxel reduction: ``(logits, target, state) ->
  (B,)``. The baseline is the plain mean of the voxel cross-entropies; ``focal_loss`` replaces it with the
  focal term, ``hard_mining`` with the mean over the hardest fraction of voxels.
- The baseline loss :class:`CEDiceLoss` computes ``state.voxel_weighting(...) + soft Dice`` (Dice over the whole
  batch by default, voxel sums weighted by ``state.sample_weight``, returned for every sample); a wrapping trick
  (``multitask``) keeps a reference to the loss it wraps and adds its own term.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench.engine.step import LossFn, StepState, VoxelWeighting

__all__ = [
    "LossFn", "VoxelWeighting", "voxel_cross_entropy", "soft_dice_loss", "MeanCrossEntropy", "CEDiceLoss",
]


def voxel_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every voxel, ``(B, X, Y, Z)`` float32."""
    return F.cross_entropy(logits.float(), target, reduction="none")


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, *, smooth: float = 1.0,
                   include_background: bool = False, batch: bool = False,
                   weight: torch.Tensor | None = None) -> torch.Tensor:
    """``1 - mean_c Dice_c`` per sample ``(B,)`` with soft (softmax) predictions.

    ``smooth`` = 1 keeps a class absent from a patch well defined (its Dice falls as the predicted mass
    grows) and is negligible for present classes. ``batch=True``: one Dice over all samples (their voxel sums
    weighted by ``weight``), returned for every sample.
    """
    probs = torch.softmax(logits.float(), dim=1)
    n_classes = probs.shape[1]
    onehot = F.one_hot(target, n_classes).movedim(-1, 1).to(probs.dtype)
    if not include_background:
        probs, onehot = probs[:, 1:], onehot[:, 1:]
    dims = tuple(range(2, probs.ndim))
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    if batch:
        w = torch.ones(inter.shape[0], 1, device=inter.device) if weight is None else weight.reshape(-1, 1).float()
        inter, denom = (inter * w).sum(0, keepdim=True), (denom * w).sum(0, keepdim=True)
        dice = (2 * inter + smooth) / (denom + smooth)
        return (1 - dice.mean(1)).expand(probs.shape[0])
    dice = (2 * inter + smooth) / (denom + smooth)
    return 1 - dice.mean(1)


@dataclass(frozen=True)
class MeanCrossEntropy:
    """Baseline voxel weighting: every voxel counts equally (mean CE per sample)."""

    def __call__(self, logits: torch.Tensor, target: torch.Tensor, state: StepState) -> torch.Tensor:
        return voxel_cross_entropy(logits, target).flatten(1).mean(1)


@dataclass(frozen=True)
class CEDiceLoss:
    """Baseline loss (the paper's): cross-entropy (reduced by the voxel-weighting slot) + average soft Dice over
    the foreground classes (smoothing 1, over the whole batch unless ``batch_dice=False``)."""

    dice_weight: float = 1.0
    smooth: float = 1.0
    # One Dice over the batch (sample-weighted voxel sums), the same value for every sample. Per-sample Dice
    # let the small classes collapse on the CPU demo (seed 1: TC 0.000, ET 0.250; batch Dice: TC 0.646,
    # ET 0.773; benchmarks/engine.md).
    batch_dice: bool = True

    def __call__(self, logits: torch.Tensor, target: torch.Tensor, state: StepState) -> torch.Tensor:
        ce = state.voxel_weighting(logits, target, state)
        dice = soft_dice_loss(logits, target, smooth=self.smooth, batch=self.batch_dice,
                              weight=state.sample_weight)
        return ce + self.dice_weight * dice
