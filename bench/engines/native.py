"""The native engine: bench's own 3D U-Net (:mod:`bench.engine`) behind the engine contract.

Every trick has a form here (the recipe slots the tricks fill). The training key is exactly
:func:`bench.engine.api.training_key` of the spec's ``[model]`` and ``[train]`` tables with the cell's fold and
seed, so trainings stored before engines became a family are found again under their keys.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bench.engines import register
from bench.engines._base import Engine, PredictJob, PreparedData, ProgressFn, TrainJob

__all__ = ["NativeEngine", "prepare_source"]


def prepare_source(data_spec: Any, source: Path, workspace_root: Path, *, progress: bool = False,
                   arrays: bool = True) -> Any:
    """bench's prepared dataset of ``source`` under ``workspace_root/cache`` as ``data_spec`` (a
    :class:`bench.spec.model.DataSpec`) says: case list, splits, metadata and source-grid labels, and with
    ``arrays`` the working-grid arrays bench's own U-Net trains on (an engine that reads the source files
    itself asks for the index alone: :func:`bench.data.prepare.prepare`'s ``arrays=False``)."""
    from bench.data.prepare import prepare

    return prepare(source, Path(workspace_root) / "cache", spacing=data_spec.spacing,
                   normalization=data_spec.normalization, fmt=data_spec.format, folds=data_spec.folds,
                   test_fraction=data_spec.test_fraction, split_seed=data_spec.split_seed, progress=progress,
                   test_ids=data_spec.test_ids, splits=data_spec.splits,
                   options=("data.folds", "data.test_fraction"), split_names=("data.test_ids", "data.splits"),
                   arrays=arrays)


@register
class NativeEngine(Engine):
    name = "native"
    summary = "bench's own 3D U-Net (bench.engine): every trick fills a recipe slot"
    option_keys: ClassVar[dict[str, str]] = {}

    def validate(self, source: str, tables: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        from bench.engine.config import InferenceConfig, ModelConfig, TrainConfig
        from bench.errors import SpecError

        opts = dict(tables.get("engine", {}))
        if opts:
            raise SpecError(f"{source}: engine.{sorted(opts)[0]} is not a key of the native engine "
                            "(it takes only [engine] name)")
        out: dict[str, dict[str, Any]] = {"engine": {}}
        for section, cls, forbidden in (("model", ModelConfig, ()), ("train", TrainConfig, ("fold", "seed")),
                                        ("inference", InferenceConfig, ())):
            table = dict(tables.get(section, {}))
            names = {f.name for f in dataclasses.fields(cls)} - set(forbidden)
            unknown = [k for k in table if k not in names]
            if unknown:
                raise SpecError(f"{source}: {section}.{unknown[0]} is not a key of [{section}] on the native engine "
                                f"(accepted: {', '.join(sorted(names))})")
            try:
                cls(**table).validate()
            except (TypeError, ValueError) as exc:
                raise SpecError(f"{source}: [{section}]: {exc}") from None
            except SpecError as exc:
                raise SpecError(f"{source}: {exc}") from None
            out[section] = table
        return out

    def trick_forms(self) -> dict[str, str | None]:
        import tricks

        return {t.name: t.summary for t in tricks.list_tricks()}

    def prepare(self, data_spec: Any, source: Path, workspace_root: Path, *, options: dict[str, Any],
                progress: bool = False) -> PreparedData:
        return prepare_source(data_spec, source, workspace_root, progress=progress)

    def training_key(self, data: PreparedData, job: TrainJob) -> str:
        from bench.engine.api import training_key

        return training_key(data.fingerprint, _model(job), _train(job, machine=False), job.stack)

    def train(self, data: PreparedData, out_dir: Path, job: TrainJob, *, resume: bool = True,
              progress: ProgressFn | None = None, stop: threading.Event | None = None) -> Any:
        from bench.engine.api import FINAL_CHECKPOINT, train

        result = train(data, out_dir, _model(job), _train(job, machine=True), job.stack, resume=resume,
                       progress=progress, stop=stop)
        if not result.checkpoint:
            result = dataclasses.replace(result, checkpoint=Path(out_dir) / FINAL_CHECKPOINT)
        return result

    def budget_iterations(self, train: dict[str, Any]) -> int:
        from bench.engine.config import TrainConfig

        return int(TrainConfig(**train).iterations)

    def resume_point(self, out_dir: Path) -> Path | None:
        from bench.engine.api import LAST_CHECKPOINT

        p = Path(out_dir) / LAST_CHECKPOINT
        return p if p.exists() else None

    def predict(self, checkpoints: Sequence[Path], data: PreparedData, case_ids: Sequence[str], job: PredictJob,
                *, progress: ProgressFn | None = None) -> Iterator[tuple[str, np.ndarray]]:
        from bench.engine.api import predict
        from bench.engine.config import InferenceConfig

        machine = {"device": job.device} if job.device else {}
        base = InferenceConfig(**{**job.inference, **machine})
        icfg = job.stack.inference_config(base) if job.stack is not None else base
        yield from predict(list(checkpoints), data, case_ids, icfg, device=job.device, progress=progress)


def _model(job: TrainJob) -> Any:
    from bench.engine.config import ModelConfig

    return ModelConfig(**job.model)


def _train(job: TrainJob, *, machine: bool) -> Any:
    from bench.engine.config import TrainConfig

    extra = dict(job.machine) if machine else {}
    return TrainConfig(**{**job.train, **extra, "fold": job.fold, "seed": job.seed})
