"""The ``nnunet`` engine: nnU-Net v2's planner, composed trainer and predictor behind bench's engine contract.

Spec::

    [engine]
    name = "nnunet"
    plans = "nnUNetPlans"          # or nnUNetResEncUNetMPlans / LPlans / XLPlans (nnU-Net's residual presets)
    configuration = "3d_fullres"   # any configuration the plans have
    gpu_memory_gb = 2              # optional: nnU-Net's planner sizes the patch for this memory (CPU budgets)
    spacing = [2.0, 2.0, 2.0]      # optional: the planner's target spacing in mm (x, y, z)

    [train]
    epochs = 2                     # nnU-Net's num_epochs (default 1000)
    iterations_per_epoch = 2       # num_iterations_per_epoch (default 250)
    val_iterations = 2             # num_val_iterations_per_epoch (default 50)

Each cell's trainer is composed from ``nnUNetTrainer`` and one part per trick
(:mod:`bench.engines.nnunet.compose`); the tricks without an nnU-Net form are refused before anything trains.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from bench.engines import register
from bench.engines._base import Engine, PredictJob, PreparedData, ProgressFn, TrainJob
from bench.errors import SpecError

__all__ = ["NnunetEngine", "ENGINE_VERSION", "TRAIN_KEYS", "compose_module"]

#: bump when bench's use of nnU-Net changes training results (every nnunet training key changes with it)
ENGINE_VERSION = "1"
#: ``[train]`` keys on this engine -> (nnU-Net's default, what it sets)
TRAIN_KEYS: dict[str, tuple[int, str]] = {
    "epochs": (1000, "the trainer's num_epochs"),
    "iterations_per_epoch": (250, "the trainer's num_iterations_per_epoch"),
    "val_iterations": (50, "the trainer's num_val_iterations_per_epoch (pseudo-Dice batches per epoch)"),
}
_DEFAULTS: dict[str, Any] = {"plans": "nnUNetPlans", "configuration": "3d_fullres"}


def compose_module() -> Any:
    """The trainer composition (tricks as trainer parts), :mod:`bench.engines.nnunet.compose`."""
    from bench.engines.nnunet import compose

    return compose


@register
class NnunetEngine(Engine):
    name = "nnunet"
    summary = "nnU-Net v2 (nnunetv2): its planner, a trainer composed from the tricks, its predictor"
    option_keys = {
        "plans": "nnUNetPlans (default) or a residual-encoder preset: " + ", ".join(
            ["nnUNetResEncUNetMPlans", "nnUNetResEncUNetLPlans", "nnUNetResEncUNetXLPlans"]),
        "configuration": "the plans' configuration to train (default 3d_fullres)",
        "gpu_memory_gb": "memory target (GB) of nnU-Net's planner: smaller sizes the patch down",
        "spacing": "target spacing [x, y, z] in mm for nnU-Net's planner (coarser: smaller arrays)",
    }

    # ------------------------------------------------------------------ validation

    def validate(self, source: str, tables: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        from bench.engines.nnunet.data import PLANNERS

        opts = dict(tables.get("engine", {}))
        for key in opts:
            if key not in self.option_keys:
                raise SpecError(f"{source}: engine.{key} is not a key of the nnunet engine "
                                f"(accepted: name, {', '.join(self.option_keys)})")
        out = {**_DEFAULTS, **opts}
        if out["plans"] not in PLANNERS:
            raise SpecError(f"{source}: engine.plans = {out['plans']!r} is not one of {', '.join(PLANNERS)}")
        if not isinstance(out["configuration"], str) or not out["configuration"]:
            raise SpecError(f"{source}: engine.configuration = {out['configuration']!r} must be a configuration "
                            "name such as 3d_fullres")
        if "gpu_memory_gb" in out:
            v = out["gpu_memory_gb"]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise SpecError(f"{source}: engine.gpu_memory_gb = {v!r} must be a number of GB > 0")
            out["gpu_memory_gb"] = float(v)
        if "spacing" in out:
            v = out["spacing"]
            if (not isinstance(v, list) or len(v) != 3
                    or not all(isinstance(s, (int, float)) and not isinstance(s, bool) and s > 0 for s in v)):
                raise SpecError(f"{source}: engine.spacing = {v!r} must be three spacings in mm > 0, e.g. "
                                "[2.0, 2.0, 2.0]")
            out["spacing"] = [float(s) for s in v]
        model = dict(tables.get("model", {}))
        if model:
            raise SpecError(f"{source}: model.{sorted(model)[0]}: the nnunet engine takes its network from nnU-Net's "
                            "plans ([engine] plans, configuration); [model] takes no keys")
        train = dict(tables.get("train", {}))
        for key, value in train.items():
            if key not in TRAIN_KEYS:
                raise SpecError(f"{source}: train.{key} is not a key of [train] on the nnunet engine "
                                f"(accepted: {', '.join(TRAIN_KEYS)})")
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpecError(f"{source}: train.{key} = {value!r} must be an integer >= 1")
        inference = dict(tables.get("inference", {}))
        for key, value in inference.items():
            if key != "mirror":
                raise SpecError(f"{source}: inference.{key} is not a key of [inference] on the nnunet engine "
                                "(accepted: mirror; the tile step and the fold ensemble come from the tricks "
                                "patch_fusion and model_fusion)")
            if not isinstance(value, bool):
                raise SpecError(f"{source}: inference.mirror = {value!r} must be true or false")
        return {"engine": out, "model": {}, "train": train, "inference": inference}

    def trick_forms(self) -> dict[str, str | None]:
        return dict(compose_module().forms())

    def check_stack(self, stack: Any) -> None:
        compose_module().check_stack(stack)

    # ------------------------------------------------------------------ work

    def prepare(self, data_spec: Any, source: Path, workspace_root: Path, *, options: dict[str, Any],
                progress: bool = False) -> PreparedData:
        from bench.engines.native import prepare_source
        from bench.engines.nnunet import _nn, data

        _nn.require()
        # bench's index of the folder (cases, splits, metadata, source labels): nnU-Net reads the source files
        base = prepare_source(data_spec, source, workspace_root, progress=progress, arrays=False)
        return data.prepare(base, Path(workspace_root), {**_DEFAULTS, **options}, progress=progress)

    def prepare_inputs(self, data_spec: Any, source: Path, workspace_root: Path, *, options: dict[str, Any],
                       progress: bool = False) -> PreparedData:
        from bench.engines.native import prepare_source
        from bench.engines.nnunet import _nn, data

        _nn.require()
        # bench's index of the folder (cases, splits, metadata, source labels): nnU-Net reads the source files
        base = prepare_source(data_spec, source, workspace_root, progress=progress, arrays=False)
        return data.PredictionInputs(base, Path(workspace_root), {**_DEFAULTS, **options})

    def training_key(self, data: PreparedData, job: TrainJob) -> str:
        payload = {
            "engine": f"nnunet-{ENGINE_VERSION}", "data": data.fingerprint,
            "planning": {**_DEFAULTS, **{k: v for k, v in job.options.items()}},
            "budget": budget(job.train), "fold": job.fold, "seed": job.seed,
            "tricks": job.stack.training_items() if job.stack is not None else [],
        }
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def budget_iterations(self, train: dict[str, Any]) -> int:
        b = budget(train)
        return int(b["epochs"] * b["iterations_per_epoch"])

    def train(self, data: PreparedData, out_dir: Path, job: TrainJob, *, resume: bool = True,
              progress: ProgressFn | None = None, stop: threading.Event | None = None) -> Any:
        from bench.engines.nnunet import _nn
        from bench.engines.nnunet.train import train

        _nn.require()
        cls = compose_module().trainer_class(job.stack, budget=budget(job.train))
        return train(data, out_dir, job, cls, resume=resume, progress=progress, stop=stop)

    def resume_point(self, out_dir: Path) -> Path | None:
        from bench.engines.nnunet.train import resume_point

        return resume_point(out_dir)

    def predict(self, checkpoints: Sequence[Path], data: PreparedData, case_ids: Sequence[str], job: PredictJob,
                *, progress: ProgressFn | None = None) -> Iterator[tuple[str, np.ndarray]]:
        from bench.engines.nnunet import _nn
        from bench.engines.nnunet.predict import predict

        _nn.require()
        compose = compose_module()
        settings = dict(compose.inference_settings(job.stack, job.inference))
        cls = compose.trainer_class(job.stack, budget=budget({}))
        dataset_json = compose.dataset_json_for(  # the form the trainer trained with
            cls, cast(Any, data).dataset_json())
        yield from predict(list(checkpoints), data, list(case_ids), cls, dataset_json, settings, device=job.device,
                           progress=progress)


def budget(train: dict[str, Any]) -> dict[str, int]:
    """The trainer's budget attributes from the spec's ``[train]`` table (nnU-Net's defaults otherwise)."""
    return {"epochs": int(train.get("epochs", TRAIN_KEYS["epochs"][0])),
            "iterations_per_epoch": int(train.get("iterations_per_epoch", TRAIN_KEYS["iterations_per_epoch"][0])),
            "val_iterations": int(train.get("val_iterations", TRAIN_KEYS["val_iterations"][0]))}
