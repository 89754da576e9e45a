"""The spec model: the frozen dataclasses of a validated experiment spec (``runs/*.toml``).

Parsing and validation live in :mod:`bench.runner.spec`; this module holds only the data and its small
methods, and imports nothing from the runner or the designs (designs read a :class:`Spec`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Spec", "DataSpec", "OptunaSpec", "EvaluationSpec", "ReplicationSpec", "FractionalSpec", "Row",
           "EngineSpec"]


@dataclass(frozen=True)
class EngineSpec:
    """``[engine]``: which engine trains and predicts (``bench.engines``) and its own validated keys."""

    name: str = "native"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DataSpec:
    """Where the data comes from and how it is split. ``path = "synthetic"`` generates phantoms."""

    path: str = "synthetic"
    synthetic: dict[str, Any] = field(default_factory=dict)
    format: str | None = None
    folds: int = 5  # 1: every non-test case trains, no validation (designs that select on it refuse it)
    test_fraction: float = 0.2
    split_seed: int = 0
    spacing: float | None = None
    normalization: str = "minmax"
    test_cases: int = 0  # evaluate only the first N test cases (0 = all)
    test_ids: tuple[str, ...] | str | None = None  # fixed held-out IDs, or a text file of one ID a line
    splits: str | None = None  # nnU-Net splits_final.json or bench splits.json: the folds

    @property
    def is_synthetic(self) -> bool:
        return self.path == "synthetic"


@dataclass(frozen=True)
class OptunaSpec:
    trials: int = 20
    sampler: str = "tpe"
    pruner: str = "median"
    seed: int = 0
    search_params: bool = True  # also search the parameters of enabled tricks (not only the toggles)


@dataclass(frozen=True)
class EvaluationSpec:
    """Test-set metrics beyond the BraTS 2017-2022 ones: ``lesionwise`` names a BraTS 2023 cohort; ``rules``
    ("2024" or "2025", None for none) and ``cohort`` (that year's cohort / config) add a later year's values."""

    lesionwise: str | None = None
    rules: str | None = None
    cohort: str | None = None

    def core(self) -> dict[str, str]:
        """The keys that are set (an unset key stays out, so older experiments keep their hash)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class ReplicationSpec:
    """``[replication]``: seeds per configuration at each look (``looks``), up to ``max_seeds``; a comparison
    is decided by the rules of :mod:`bench.analysis.stopping`."""

    halfwidth: float = 0.01
    looks: tuple[int, ...] = (3, 5, 8, 12)
    max_seeds: int = 12
    margin: float = 0.005
    alpha: float = 0.05
    # which rows of an undecided comparison get the next look's seeds: "balanced" every arm; "variance" the
    # arms whose seeds narrow it most (a shared baseline counted once for all its comparisons), until the
    # next look is predicted to reach the half-width
    allocation: str = "balanced"

    def seeds(self, first: tuple[int, ...]) -> tuple[int, ...]:
        """The spec's seeds, continued with the next unused integers, ``max_seeds`` in all."""
        out = list(first[: self.max_seeds])
        nxt = max(first) + 1 if first else 0
        while len(out) < self.max_seeds:
            out.append(nxt)
            nxt += 1
        return tuple(out)


@dataclass(frozen=True)
class FractionalSpec:
    """Settings of ``design = "fractional"`` (top-level keys ``resolution``, ``runs``, ``foldover``)."""

    resolution: int | None = None
    runs: int | None = None
    foldover: bool = False


@dataclass(frozen=True)
class Row:
    """One configuration row of a ladder or list design (a full grid's rows are made by the planner)."""

    label: str
    tricks: tuple[str, ...]
    params: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Spec:
    """A validated experiment spec."""

    name: str
    source: str  # file path or "<text>"
    text: str
    design: str
    baseline_label: str
    folds: tuple[int, ...]
    seeds: tuple[int, ...]
    objective: str
    fixed: tuple[str, ...]
    factors: tuple[str, ...]
    labels: dict[str, str]
    params: dict[str, dict[str, Any]]
    rows: tuple[Row, ...]
    data: DataSpec
    model: dict[str, Any]
    train: dict[str, Any]
    inference: dict[str, Any]
    optuna: OptunaSpec
    description: str = ""
    evaluation: EvaluationSpec = field(default_factory=EvaluationSpec)
    replication: ReplicationSpec | None = None
    fractional: FractionalSpec = field(default_factory=FractionalSpec)
    engine: EngineSpec = field(default_factory=EngineSpec)

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]

    def core(self) -> dict[str, Any]:
        """What must not change when an experiment is extended (data, model, budget, inference, objective)."""
        core = {"data": dataclasses.asdict(self.data), "model": self.model, "train": self.train,
                "inference": self.inference, "objective": self.objective}
        if self.evaluation.core():  # absent otherwise, so older experiments keep their hash
            core["evaluation"] = self.evaluation.core()
        if self.engine.name != "native":  # absent for the native engine, so older experiments keep their hash
            core["engine"] = {"name": self.engine.name, **self.engine.options}
        return core

    def core_hash(self) -> str:
        text = json.dumps(self.core(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def model_config(self) -> Any:
        from bench.engine.config import ModelConfig

        return ModelConfig(**self.model)

    def train_config(self, fold: int = 0, seed: int = 0, **machine: Any) -> Any:
        from bench.engine.config import TrainConfig

        return TrainConfig(**{**self.train, **machine, "fold": fold, "seed": seed})

    def inference_config(self, **machine: Any) -> Any:
        from bench.engine.config import InferenceConfig

        return InferenceConfig(**{**self.inference, **machine})

    def row_label(self, enabled: list[str] | tuple[str, ...]) -> str:
        parts = [self.labels.get(t, t) for t in enabled]
        return "+".join([self.baseline_label, *parts])
