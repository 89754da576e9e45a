"""The engine family's contract: prepare a dataset, train one cell, predict cases in the source geometry.

The runner, the designs, the results database, the MLflow mirror and the reports know no engine by name: they
call the methods below on the object :func:`bench.engines.get_engine` returns for the spec's ``[engine] name``.
One module per engine registers a subclass (``native``: bench's own U-Net in :mod:`bench.engine`; ``nnunet``:
nnU-Net v2, an optional extra). An engine module must import without its framework installed; the framework
is imported inside the methods, and a missing one is a :class:`bench.errors.BenchError` saying how to install it.

Data flow for one cell::

    eng = get_engine(spec.engine.name)
    data = eng.prepare(spec.data, source_folder, workspace_root, options=spec.engine.options)
    job = TrainJob(fold, seed, stack, model=spec.model, train=spec.train, options=spec.engine.options,
                   machine={"device": "cpu", "threads": 2})
    key = eng.training_key(data, job)                  # equal keys: the training is shared, never repeated
    result = eng.train(data, workspace_root / "trainings" / key, job, progress=..., stop=...)
    for case_id, labels in eng.predict([result.checkpoint, ...], data, data.test_ids(), PredictJob(...)):
        ...   # uint8 BraTS-2019 labels {0,1,2,4} on the case's SOURCE grid; evaluated by bench.evaluation

``data`` satisfies :class:`PreparedData` (bench's :class:`bench.data.prepare.PreparedDataset` does): one split,
one truth, whatever the engine trains on.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

__all__ = ["Engine", "PreparedData", "TrainJob", "PredictJob", "ProgressFn"]

ProgressFn = Callable[[dict[str, Any]], None]


class PreparedData(Protocol):
    """What the runner and the evaluation read of a prepared dataset, whichever engine prepared it."""

    @property
    def fingerprint(self) -> str: ...  # changes when the sources or the preprocessing change

    @property
    def n_folds(self) -> int: ...

    @property
    def case_ids(self) -> list[str]: ...

    def train_ids(self, fold: int) -> list[str]: ...

    def val_ids(self, fold: int) -> list[str]: ...

    def test_ids(self) -> list[str]: ...

    def meta(self, case_id: str) -> Any: ...  # ``.spacing``: the source voxel size in mm

    def source_label(self, case_id: str) -> np.ndarray: ...  # BraTS-2019 labels on the source grid


@dataclass(frozen=True)
class TrainJob:
    """One training of a cell: the fold and seed, the resolved trick stack (``tricks.Stack``), the spec's
    ``[model]``/``[train]`` tables and ``[engine]`` options as validated by the engine, and machine settings
    (``device``, ``threads``, ``num_workers``: they never change a training's key)."""

    fold: int
    seed: int
    stack: Any
    model: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PredictJob:
    """Prediction settings: the stack (its inference-phase tricks), the spec's ``[inference]`` table, the
    ``[engine]`` options and the device."""

    stack: Any
    inference: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    device: str | None = None


class Engine(abc.ABC):
    """Base of every engine. Subclasses set ``name``, ``summary`` and ``option_keys`` and implement the
    abstract methods; :func:`bench.engines.register` makes them available as ``[engine] name = "..."``."""

    #: the spec's ``[engine] name`` value
    name: ClassVar[str]
    #: one line for ``bench plan`` and ``bench tricks --engine``
    summary: ClassVar[str] = ""
    #: accepted ``[engine]`` keys besides ``name`` -> what each means (shown in errors and --help)
    option_keys: ClassVar[dict[str, str]] = {}

    # ---------------------------------------------------------------- validation (no data, no training)

    @abc.abstractmethod
    def validate(self, source: str, tables: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Check the spec's ``engine`` (options without ``name``), ``model``, ``train`` and ``inference`` tables
        for this engine; return them normalised. Raises :class:`bench.errors.SpecError` naming ``source`` and the
        key, with what is accepted."""

    @abc.abstractmethod
    def trick_forms(self) -> dict[str, str | None]:
        """Every registered trick -> what it does on this engine (one line), or None when it has no form here."""

    def check_stack(self, stack: Any) -> None:
        """Refuse, in one line naming them, the tricks of ``stack`` that have no form on this engine (and any
        combination the engine cannot compose). Called before anything trains."""
        forms = self.trick_forms()
        missing = [t for t in stack.names if forms.get(t) is None]
        if missing:
            from bench.errors import SpecError

            raise SpecError(f"engine {self.name!r} has no form of {', '.join(missing)} "
                            f"(accepted: {', '.join(t for t, f in forms.items() if f is not None)})")

    # ---------------------------------------------------------------- work

    @abc.abstractmethod
    def prepare(self, data_spec: Any, source: Path, workspace_root: Path, *, options: dict[str, Any],
                progress: bool = False) -> PreparedData:
        """Read, convert, plan and preprocess ``source`` (a BraTS/MSD folder) under ``workspace_root`` as the
        spec's ``[data]`` says (splits, test cases, spacing); cached: a second call with equal inputs returns the
        cache. Several processes may call it at once (the engine locks what it writes)."""

    def prepare_inputs(self, data_spec: Any, source: Path, workspace_root: Path, *, options: dict[str, Any],
                       progress: bool = False) -> PreparedData:
        """The cases of ``source`` as :meth:`predict` reads them, labeled or not (``unlabeled_ids`` lists the
        unlabeled ones), without what only training needs. A trained model carries its own preprocessing, so an
        engine that plans on the training data (nnU-Net) skips planning here. Default: :meth:`prepare`."""
        return self.prepare(data_spec, source, workspace_root, options=options, progress=progress)

    @abc.abstractmethod
    def training_key(self, data: PreparedData, job: TrainJob) -> str:
        """Hash of everything that changes this training's result (data fingerprint, model, budget, fold, seed,
        training-phase tricks and their parameters, engine and its version); machine settings left out. Reads
        only ``data.fingerprint`` of ``data`` (``bench plan`` computes keys before any data is prepared)."""

    @abc.abstractmethod
    def train(self, data: PreparedData, out_dir: Path, job: TrainJob, *, resume: bool = True,
              progress: ProgressFn | None = None, stop: threading.Event | None = None) -> Any:
        """Train into ``out_dir`` and return a ``TrainResult`` (``checkpoint``, ``curve``: one dict per epoch or
        validation with ``iteration``, ``epoch``, ``loss``, ``lr`` and, validated, ``val_dice_ET/TC/WT``;
        ``seconds``; ``iterations``). Resumes from the last checkpoint in ``out_dir``; when ``stop`` is set it
        saves a checkpoint and raises ``bench.engine.api.TrainingStopped``. ``progress(info)`` gets at least
        ``iteration``, ``total``, ``loss``."""

    @abc.abstractmethod
    def budget_iterations(self, train: dict[str, Any]) -> int:
        """Optimiser steps of one training with the spec's ``[train]`` table (``bench plan``'s cost line)."""

    def resume_point(self, out_dir: Path) -> Path | None:
        """The checkpoint in ``out_dir`` a new :meth:`train` call would resume from (None: it starts afresh);
        the runner says so in its log, since a handed-over cell must continue, never restart."""
        return None

    @abc.abstractmethod
    def predict(self, checkpoints: Sequence[Path], data: PreparedData, case_ids: Sequence[str], job: PredictJob,
                *, progress: ProgressFn | None = None) -> Iterator[tuple[str, np.ndarray]]:
        """Yield ``(case_id, labels)``: uint8 BraTS-2019 labels {0,1,2,4} on the case's source grid, from one
        checkpoint or the fusion of several (model fusion), with the stack's inference-phase tricks applied."""

    def folds_for(self, stack: Any, fold: int, n_folds: int) -> list[int]:
        """The fold trainings a cell needs (model fusion: every fold); the cell's own fold first."""
        folds = list(stack.folds_for(fold, n_folds))
        return [fold] + [f for f in folds if f != fold] if fold in folds else folds
