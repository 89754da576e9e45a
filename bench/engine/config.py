"""Configuration dataclasses of the engine: the model, one training, and inference.

Every field is a plain value (int, float, str, bool, tuple), so a config goes to JSON, a TOML spec, a checkpoint
(``weights_only=True``) and a training key unchanged. Fields whose metadata says ``{"key": False}`` only change
*how* a training runs on a machine (device, workers, checkpoint cadence), never its result on the CPU; they are
left out of the training key (:func:`bench.engine.api.training_key`).

Defaults are CPU-sized (they learn the synthetic demo data in minutes on 2 cores); :meth:`ModelConfig.paper`
and :meth:`TrainConfig.paper` give the paper's GPU sizes, and ``*.for_device(device)`` picks one of the two.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ModelConfig", "TrainConfig", "InferenceConfig", "key_fields", "from_dict", "cuda_available",
           "ENGINE_VERSION"]

# Bump when a change of the engine changes training results: every training key changes with it.
ENGINE_VERSION = "1"

_NOKEY: dict[str, Any] = {"key": False}


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


@dataclass(frozen=True)
class ModelConfig:
    """The 3D U-Net's shape. The block type and the head are chosen by tricks (``dense_blocks``,
    ``self_ensemble``) through the recipe, not here."""

    in_channels: int = 4
    n_classes: int = 4
    depth: int = 3  # number of down-samplings; the input is padded to a multiple of 2**depth
    width: int = 8  # channels of the first level; doubled per level up to max_width
    max_width: int = 256
    # CPU default "batch": with small patches, instance statistics change with the window, so a model trained on
    # 32^3 crops segments worse on tiles and fails on larger windows (measured WT 0.75 tiles / 0.35 at 64^3);
    # batch norm's running statistics make inference independent of the window. The GPU size uses "instance".
    norm: str = "batch"  # "instance" | "batch" | "group"
    groups: int = 4  # for norm="group"

    @staticmethod
    def cpu() -> ModelConfig:
        return ModelConfig()

    @staticmethod
    def paper() -> ModelConfig:
        """The GPU size: 4 down-samplings, 32 base channels, instance norm (about nnU-Net's BraTS network)."""
        return ModelConfig(depth=4, width=32, max_width=320, norm="instance")

    @staticmethod
    def for_device(device: str | None = None) -> ModelConfig:
        return ModelConfig.paper() if _is_gpu(device) else ModelConfig.cpu()

    def validate(self) -> None:
        from bench.errors import SpecError

        if self.norm not in ("instance", "batch", "group"):
            raise SpecError(f"model.norm: {self.norm!r} is not one of instance, batch, group")
        if not 1 <= self.depth <= 6:
            raise SpecError(f"model.depth: {self.depth} is out of range; accepted 1..6")
        if self.width < 1 or self.max_width < self.width:
            raise SpecError(f"model.width: {self.width} must be >= 1 and <= model.max_width ({self.max_width})")
        if self.norm == "group" and self.width % self.groups:
            raise SpecError(f"model.groups: {self.groups} must divide model.width ({self.width})")


@dataclass(frozen=True)
class TrainConfig:
    """One training: budget, patch plan, optimiser, schedule and machine settings.

    The budget is ``iterations`` optimiser steps; an epoch is ``epoch_length`` iterations (validation,
    checkpoints and epoch-based tricks like ``warmup`` count in epochs). Each iteration draws its patches as
    a pure function of ``(seed, iteration)``, so results do not depend on ``num_workers`` or on resuming.
    """

    fold: int = 0
    seed: int = 0
    # CPU default: about 4 minutes on 2 idle cores (0.13 s an iteration); with 1600 iterations one seed in three
    # missed the low-grade case's tumour core (BENCHMARKS.md, "It learns")
    iterations: int = 2000
    epoch_length: int = 50
    patch: int = 32  # cubic patch edge (voxels) of the baseline patch plan
    batch: int = 2
    lr: float = 0.01
    momentum: float = 0.99
    nesterov: bool = True
    weight_decay: float = 3e-5
    grad_clip: float = 12.0  # max gradient L2 norm; 0 disables clipping
    poly_power: float = 0.9
    mirror: bool = True  # random left-right flip of training patches
    # --- machine settings: not part of the training key -------------------------------------------------
    val_every: int = field(default=5, metadata=_NOKEY)  # validate every N epochs and at the end (0 = never)
    val_cases: int = field(default=0, metadata=_NOKEY)  # limit the validation cases (0 = all of the fold)
    checkpoint_every: int = field(default=1, metadata=_NOKEY)  # epochs between checkpoints
    device: str = field(default="auto", metadata=_NOKEY)  # "auto" | "cpu" | "cuda" | "cuda:N"
    amp: bool = field(default=True, metadata=_NOKEY)  # bf16 autocast on CUDA (ignored on the CPU)
    # channels_last_3d on CUDA: off by default, measured slower than NCDHW for this U-Net on an H100 (BENCHMARKS.md)
    channels_last: bool = field(default=False, metadata=_NOKEY)
    # torch.compile the training forward/backward (not inference). On by default on a GPU: under bf16 the eager
    # instance-norm kernels take more time than the convolutions, and compiling fuses them (measured on an H100
    # at patch 128: bf16 step 0.024 s compiled against 0.058 s eager and 0.068 s fp32; BENCHMARKS.md). Off on
    # the CPU, where compiling a small model costs more than it saves in a short run.
    compile: bool = field(default=False, metadata=_NOKEY)
    num_workers: int = field(default=1, metadata=_NOKEY)  # DataLoader worker processes (0 = in-process)
    prefetch: int = field(default=4, metadata=_NOKEY)  # batches prefetched per worker
    # torch CPU threads during training; 0 = auto: the cores this process may use (the runner gives each of
    # several CPU workers its share); an oversubscribed OpenMP pool is many times slower (measured: 0.3 s vs
    # 2.0 s a step on a shared machine).
    # Results on the CPU are bit-identical only for the same thread count.
    threads: int = field(default=0, metadata=_NOKEY)

    @staticmethod
    def cpu(**changes: Any) -> TrainConfig:
        return dataclasses.replace(TrainConfig(), **changes)

    @staticmethod
    def paper(**changes: Any) -> TrainConfig:
        """GPU sizes: patch 128, batch 2 (``random_patch_size`` replaces them with the paper's pool), 400
        epochs of 250 iterations, validation every 10 epochs. The learning rate stays SGD-Nesterov 0.01 (the
        paper's 0.4 belongs to its own optimiser set-up, which it does not fully specify); set ``lr`` to change."""
        base = TrainConfig(
            iterations=250 * 400, epoch_length=250, patch=128, batch=2, val_every=10, num_workers=6,
            prefetch=4, compile=True,
        )
        return dataclasses.replace(base, **changes)

    @staticmethod
    def for_device(device: str | None = None, **changes: Any) -> TrainConfig:
        cfg = TrainConfig.paper() if _is_gpu(device) else TrainConfig.cpu()
        return dataclasses.replace(cfg, **changes)

    @property
    def epochs(self) -> int:
        return -(-self.iterations // self.epoch_length)

    def validate(self) -> None:
        from bench.errors import SpecError

        if self.iterations < 1:
            raise SpecError(f"train.iterations: {self.iterations} must be >= 1")
        if self.epoch_length < 1:
            raise SpecError(f"train.epoch_length: {self.epoch_length} must be >= 1")
        if self.patch < 8:
            raise SpecError(f"train.patch: {self.patch} must be >= 8 voxels")
        if self.batch < 1:
            raise SpecError(f"train.batch: {self.batch} must be >= 1")
        if not self.lr > 0:
            raise SpecError(f"train.lr: {self.lr} must be > 0")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise SpecError(f"train.device: {self.device!r}; accepted auto, cpu, cuda, cuda:N")


@dataclass(frozen=True)
class InferenceConfig:
    """Sliding-window inference. ``window=0`` uses the training patch size stored in the checkpoint.

    The baseline tiles the volume without overlap and with constant weights; the ``patch_fusion`` trick sets
    overlap 0.5 and Gaussian weights through :meth:`tricks._registry.Stack.inference_config`.
    """

    window: int = 0
    overlap: float = 0.0  # fraction of the window shared by neighbours, in [0, 1)
    weights: str = "constant"  # "constant" | "gaussian"
    sigma: float = 0.125  # Gaussian sigma as a fraction of the window
    window_batch: int = 2  # windows per forward pass
    mirror: bool = False  # average with the left-right mirrored prediction
    device: str = "auto"
    amp: bool = True  # bf16 autocast on CUDA
    # Predict from the sigmoid region outputs (ET, WT, TC after the 4 class channels; the multitask trick's
    # "sigmoid" mode) instead of the class softmax, as nnU-Net predicts BraTS: WT > 0.5 is oedema, TC > 0.5
    # overwrites it with core, ET > 0.5 with enhancing tumour.
    regions: bool = False
    # Post-processing steps of the label maps (bench.engine.postprocess), set by the post-processing tricks.
    postprocess: tuple = ()

    def validate(self) -> None:
        from bench.engine.postprocess import step_from
        from bench.errors import SpecError

        for step in self.postprocess:
            step_from(step)

        if not 0 <= self.overlap < 1:
            raise SpecError(f"inference.overlap: {self.overlap} must be in [0, 1)")
        if self.weights not in ("constant", "gaussian"):
            raise SpecError(f"inference.weights: {self.weights!r}; accepted constant, gaussian")
        if self.window_batch < 1:
            raise SpecError(f"inference.window_batch: {self.window_batch} must be >= 1")


def key_fields(cfg: Any) -> dict[str, Any]:
    """The fields of a config that change training results (for the training key)."""
    return {
        f.name: getattr(cfg, f.name)
        for f in dataclasses.fields(cfg)
        if f.metadata.get("key", True)
    }


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a config from ``asdict`` output, ignoring keys this version does not know."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in names})


def _is_gpu(device: str | None) -> bool:
    if device is None or device == "auto":
        return cuda_available()
    return device.startswith("cuda")
