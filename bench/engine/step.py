"""The contract between a recipe's fillers and the training loop: what one step and one training see.

Below both :mod:`bench.engine.recipe` (the slots) and :mod:`bench.engine.train` (the loop), so that neither
imports the other for its types:

- :class:`StepState`: one optimiser step as losses, voxel weightings and hooks see it;
- :class:`LossFn`, :class:`VoxelWeighting`: the call shapes of the ``loss`` and ``voxel_weighting`` slots;
- :class:`TrainContext`, :class:`TrainResult`, :class:`TrainingStopped`, ``ProgressFn``: what a ``procedure``
  gets, returns and raises.

Each name is also importable from :mod:`bench.engine.recipe` (and the two protocols from
:mod:`bench.engine.losses`), where tricks have always found them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from bench.engine.config import ModelConfig, TrainConfig

__all__ = ["StepState", "LossFn", "VoxelWeighting", "ProgressFn", "TrainContext", "TrainResult",
           "TrainingStopped"]

# progress(info) with info keys: iteration (done so far), total, loss, lr, epoch, and "val" (dict) after a
# validation.
ProgressFn = Callable[[dict[str, Any]], None]


class LossFn(Protocol):
    def __call__(self, logits: torch.Tensor, target: torch.Tensor, state: StepState) -> torch.Tensor: ...


class VoxelWeighting(Protocol):
    def __call__(self, logits: torch.Tensor, target: torch.Tensor, state: StepState) -> torch.Tensor: ...


@dataclass
class StepState:
    """Mutable state of one optimiser step, seen by losses and hooks.

    ``iteration`` is the 0-based index of the step being taken (so ``iteration / total`` is the fraction of
    training done before it). Hooks may change fields in ``before_step`` (e.g. ``extras``) and read
    ``loss`` in ``after_step``.
    """

    iteration: int
    total: int
    epoch: int
    epoch_length: int
    lr: float
    patch: tuple[int, int, int]
    batch: int
    voxel_weighting: VoxelWeighting
    sample_weight: torch.Tensor | None = None  # (B,) loss weight of each sample (alpha for pseudo-labels)
    loss: float | None = None  # filled after the step
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def progress(self) -> float:
        """Fraction of training done before this step, in [0, 1)."""
        return self.iteration / max(1, self.total)


class TrainingStopped(Exception):
    """``stop`` was set: a checkpoint was saved at ``iteration``; ``train`` again resumes from it."""

    def __init__(self, iteration: int, checkpoint: Path):
        self.iteration = iteration
        self.checkpoint = checkpoint
        super().__init__(f"training stopped at iteration {iteration}; checkpoint {checkpoint}")


@dataclass(frozen=True)
class TrainResult:
    """What a training returns: the final checkpoint, the learning curve (one dict per validation or epoch:
    iteration, epoch, loss, lr, seconds and, after a validation, ``val_dice_ET/TC/WT``), the training's wall
    time in seconds (summed over resumed sessions) and the iterations done."""

    checkpoint: Path
    curve: list[dict[str, Any]]
    seconds: float
    iterations: int


@dataclass
class TrainContext:
    """Everything a procedure needs. ``stack`` is None when the engine is driven without tricks."""

    dataset: Any  # bench.data.prepare.PreparedDataset
    out_dir: Path
    model_cfg: ModelConfig
    train_cfg: TrainConfig
    recipe: Any  # bench.engine.recipe.Recipe
    stack: Any = None  # tricks._registry.Stack
    resume: bool = True
    progress: ProgressFn | None = None
    stop: threading.Event | None = None
