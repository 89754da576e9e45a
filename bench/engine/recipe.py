"""The recipe: the named slots of a training + inference pipeline, each filled with the baseline.

The engine knows no trick by name. A trick (``tricks/``) receives a :class:`Recipe` in ``apply`` and either
**replaces** a slot (exclusive: two tricks replacing one slot are refused by the stack) or **wraps** it (keeps
the current filler and calls it; several wrappers compose in a fixed order), or adds a :class:`Hook`.

Slots (name -> type, baseline filler):

=================  ==============================================  ================================================
slot               call                                            baseline
=================  ==============================================  ================================================
``sampler``        ``(case, patch3, rng) -> corner``               :class:`~bench.engine.sampling.UniformSampler`
``patch_plan``     ``(iteration, rng) -> (patch, batch)``          ``FixedPatchPlan(train_cfg.patch, .batch)``
``augment``        ``(image, label, rng) -> (image, label)``       ``Mirror(axis=0)`` (``NoAugment`` if mirror off)
``model.block``    ``block`` (a key of ``model.BLOCKS``) and      ``"plain"`` (double 3x3x3 convolution), ``{}``
                   ``block_options`` (its keyword arguments)
``model.head``     a key of ``bench.engine.model.HEADS``           ``"single"`` (finest decoder scale only)
``model.extra_outputs`` ``extra_outputs``: int channels after the  0
                   class logits (loss sees them; inference drops)
``loss``           ``(logits, target, state) -> (B,)``             :class:`~bench.engine.losses.CEDiceLoss`
``voxel_weighting````(logits, target, state) -> (B,)``             :class:`~bench.engine.losses.MeanCrossEntropy`
``schedule``       ``(iteration, total, epoch_length) -> factor``  :class:`~bench.engine.schedule.PolySchedule`
``window_fusion``  :class:`WindowFusion` or None                   None (keep the InferenceConfig: tiles, overlap 0)
``postprocess``    list of label-map steps (additive, in order;    empty (the labels as predicted)
                   :mod:`bench.engine.postprocess`)
``model_set``      ``(fold, n_folds) -> list[int]``                :class:`SameFold` (the cell's own fold)
``procedure``      ``(ctx: TrainContext) -> TrainResult``          :class:`SingleTraining` (one training)
``hooks``          list of :class:`Hook` (additive, not a slot)    empty
=================  ==============================================  ================================================

Fillers of ``sampler``, ``patch_plan`` and ``augment`` run in DataLoader worker processes: they must be
picklable (module-level classes, frozen dataclasses are ideal) and draw randomness only from the given rng.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.engine.config import ModelConfig, TrainConfig
from bench.engine.losses import CEDiceLoss, MeanCrossEntropy
from bench.engine.sampling import (
    Augment,
    FixedPatchPlan,
    Mirror,
    NoAugment,
    PatchPlan,
    Sampler,
    UniformSampler,
)
from bench.engine.schedule import PolySchedule, Schedule
from bench.engine.step import (
    LossFn,
    ProgressFn,
    StepState,
    TrainContext,
    TrainingStopped,
    TrainResult,
    VoxelWeighting,
)

__all__ = [
    "SLOTS", "Recipe", "StepState", "Hook", "TrainContext", "TrainResult", "WindowFusion", "SameFold", "AllFolds",
    "SingleTraining", "baseline_recipe", "ProgressFn", "TrainingStopped",
]

SLOTS: tuple[str, ...] = (
    "sampler", "patch_plan", "augment", "model.block", "model.head", "model.extra_outputs", "loss",
    "voxel_weighting", "schedule",
    "window_fusion", "postprocess", "model_set", "procedure",
)


class Hook:
    """A callback with a priority (lower runs first) and a checkpointed state.

    Subclass and override what you need. ``state_dict`` must return only tensors and primitive containers
    (checkpoints are loaded with ``weights_only=True``). ``name`` identifies the state in the checkpoint.
    """

    priority: int = 50

    @property
    def name(self) -> str:
        return type(self).__name__

    def before_train(self, ctx: TrainContext) -> None: ...

    def before_step(self, state: StepState) -> None: ...

    def after_step(self, state: StepState) -> None: ...

    def after_epoch(self, state: StepState) -> None: ...

    def after_train(self, ctx: TrainContext) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


@dataclass(frozen=True)
class WindowFusion:
    """How overlapping sliding windows are fused at inference (set by ``patch_fusion``)."""

    overlap: float = 0.5
    weights: str = "gaussian"  # "constant" | "gaussian"


@dataclass(frozen=True)
class SameFold:
    """Baseline model set: a cell's prediction uses the model trained on its own fold."""

    def __call__(self, fold: int, n_folds: int) -> list[int]:
        return [fold]


@dataclass(frozen=True)
class AllFolds:
    """Model set of ``model_fusion``: the models of all ``n_folds`` folds."""

    def __call__(self, fold: int, n_folds: int) -> list[int]:
        return list(range(n_folds))


@dataclass(frozen=True)
class SingleTraining:
    """Baseline procedure: one training on the fold's training cases."""

    def __call__(self, ctx: TrainContext) -> TrainResult:
        from bench.engine.train import run_training

        return run_training(ctx)


@dataclass
class Recipe:
    """The slots. Create with :func:`baseline_recipe`; tricks change it in ``Trick.apply``."""

    sampler: Sampler = field(default_factory=UniformSampler)
    patch_plan: PatchPlan = field(default_factory=lambda: FixedPatchPlan(48, 2))
    augment: Augment = field(default_factory=Mirror)
    block: str = "plain"  # slot "model.block"
    block_options: dict[str, Any] = field(default_factory=dict)  # keyword options of the block type
    head: str = "single"  # slot "model.head"
    # slot "model.extra_outputs": output channels after the n_classes class logits (e.g. multitask's sigmoid
    # region maps). The loss sees all channels; inference takes the softmax of the first n_classes only.
    extra_outputs: int = 0
    loss: LossFn = field(default_factory=CEDiceLoss)
    voxel_weighting: VoxelWeighting = field(default_factory=MeanCrossEntropy)
    schedule: Schedule = field(default_factory=PolySchedule)
    window_fusion: WindowFusion | None = None
    # label-map post-processing steps run in this order after prediction (bench.engine.postprocess)
    postprocess: list[Any] = field(default_factory=list)
    model_set: Callable[[int, int], list[int]] = field(default_factory=SameFold)
    procedure: Callable[[TrainContext], TrainResult] = field(default_factory=SingleTraining)
    hooks: list[Hook] = field(default_factory=list)
    # Free-form notes a trick may leave for others or for the procedure (kept out of checkpoints).
    notes: dict[str, Any] = field(default_factory=dict)

    def add_hook(self, hook: Hook) -> None:
        self.hooks.append(hook)
        self.hooks.sort(key=lambda h: h.priority)

    def arch(self, model_cfg: ModelConfig) -> dict[str, Any]:
        """The model's architecture as stored in checkpoints (enough to rebuild it without the stack)."""
        return {"model_cfg": dataclasses.asdict(model_cfg), "block": self.block,
                "block_options": dict(self.block_options), "head": self.head, "extra_outputs": self.extra_outputs}

    def replace(self, **changes: Any) -> Recipe:
        return dataclasses.replace(self, **changes)


def baseline_recipe(train_cfg: TrainConfig | None = None) -> Recipe:
    """A recipe with every slot holding the baseline, sized by ``train_cfg``."""
    cfg = train_cfg or TrainConfig()
    return Recipe(
        patch_plan=FixedPatchPlan(cfg.patch, cfg.batch),
        augment=Mirror(axis=0) if cfg.mirror else NoAugment(),
        schedule=PolySchedule(cfg.poly_power),
    )
