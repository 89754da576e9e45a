"""Experiment specs (``runs/*.toml``): parsing and validation before anything runs.

A spec names the data, the budget (``[train]``, ``[model]``, ``[inference]``: fields of the engine's config
dataclasses), the folds and seeds, the tricks every row has (``fixed``) and the ones it varies (``factors``),
and a design:

- ``full``: every combination of the factors (2^k rows); combinations the trick registry refuses are kept as
  refused rows whose cells are stored as ``skipped`` with the reason;
- ``ladder``: cumulative rows in factor order, like the paper's Table 1 (``BL``, ``BL+warmup``, ...);
- ``list``: explicit ``[[rows]]`` with a ``label``, ``tricks`` and optional ``params``;
- ``optuna``: a search (``[optuna]`` trials, sampler, pruner) over the factors' toggles and the parameters of
  the enabled tricks;
- ``fractional``: a two-level fraction 2^(k-p) of 3-11 factors, chosen by ``resolution = 3 | 4 | 5`` or
  ``runs = N``, with ``foldover = true`` adding the mirror fraction as a second stage.

The accepted designs are those registered in :mod:`bench.design`.

:func:`load_spec` reads a file (or the packaged spec of that name), :func:`parse_spec` checks a text. Every
problem raises :class:`bench.errors.SpecError` naming the file and the key, with the closest valid key for a
typo. Validation touches no database and no data (except checking that a data folder exists).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib.resources
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import BenchError, SpecError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "Spec",
    "DataSpec",
    "OptunaSpec",
    "EvaluationSpec",
    "ReplicationSpec",
    "Row",
    "load_spec",
    "parse_spec",
    "packaged_specs",
    "DESIGNS",
    "OBJECTIVES",
    "FractionalSpec",
]


def _designs() -> tuple[str, ...]:
    from bench.design import list_designs

    return tuple(list_designs())


DESIGNS = _designs()
OBJECTIVES = ("mean_val_dice", "val_dice_et", "val_dice_tc", "val_dice_wt")
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "none", "hyperband")

_TOP_KEYS = {
    "name": "experiment name (letters, digits, - _ .)",
    "description": "free text",
    "design": f"one of {', '.join(DESIGNS)}",
    "baseline_label": "label of the row without factors (default BL)",
    "folds": "fold indices to run, e.g. [0] or [0,1,2,3,4], or a count",
    "seeds": "seeds to run, e.g. [0, 1, 2]",
    "objective": f"one of {', '.join(OBJECTIVES)}",
    "fixed": "tricks in every row",
    "factors": "tricks the design toggles",
    "labels": "short names of tricks in row labels, e.g. {model_fusion = 'fuse'}",
    "params": "trick parameters, e.g. {warmup = {epochs = 2}}",
    "rows": "explicit rows of a list design",
    "data": "the data section",
    "model": "ModelConfig fields",
    "train": "TrainConfig fields",
    "inference": "InferenceConfig fields",
    "optuna": "search settings",
    "evaluation": "extra test-set metrics, e.g. {lesionwise = 'gli'}",
    "replication": "adaptive replication: halfwidth, looks, max_seeds, margin, alpha, allocation",
    "resolution": "fractional design: 3, 4 or 5 (the smallest fraction of at least that resolution)",
    "runs": "fractional design: number of rows of the fraction (a power of 2)",
    "foldover": "fractional design: true adds the mirror fraction as a second stage",
}
_FRACTIONAL_KEYS = ("resolution", "runs", "foldover")
_DATA_KEYS = ("path", "synthetic", "format", "folds", "test_fraction", "split_seed", "spacing", "normalization",
              "test_cases", "test_ids", "splits")
_SYNTH_KEYS = ("cases", "unlabeled", "shape", "seed", "format")
_ROW_KEYS = ("label", "tricks", "params")
_OPTUNA_KEYS = ("trials", "sampler", "pruner", "seed", "search_params")
_EVALUATION_KEYS = ("lesionwise",)
COHORTS = ("gli", "ssa", "ped", "men", "met")  # bench.evaluation.lesionwise.COHORTS
_REPLICATION_KEYS = ("halfwidth", "looks", "max_seeds", "margin", "alpha", "allocation")


@dataclass(frozen=True)
class DataSpec:
    """Where the data comes from and how it is split. ``path = "synthetic"`` generates phantoms."""

    path: str = "synthetic"
    synthetic: dict[str, Any] = field(default_factory=dict)
    format: str | None = None
    folds: int = 5
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
    """Test-set metrics beyond the BraTS 2017-2022 ones: ``lesionwise`` names a BraTS 2023 cohort."""

    lesionwise: str | None = None


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

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]

    def core(self) -> dict[str, Any]:
        """What must not change when an experiment is extended (data, model, budget, inference, objective)."""
        core = {"data": dataclasses.asdict(self.data), "model": self.model, "train": self.train,
                "inference": self.inference, "objective": self.objective}
        if self.evaluation.lesionwise:  # absent otherwise, so older experiments keep their hash
            core["evaluation"] = dataclasses.asdict(self.evaluation)
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


def _err(source: str, msg: str) -> SpecError:
    return SpecError(f"{source}: {msg}")


def _closest(key: str, valid: Any) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


def _check_keys(source: str, where: str, table: dict[str, Any], valid: Any) -> None:
    valid = list(valid)
    for key in table:
        if key not in valid:
            raise _err(source, f"unknown key {key!r} in {where}{_closest(key, valid)} "
                               f"(accepted: {', '.join(valid)})")


def _typed(source: str, key: str, value: Any, typ: type | tuple[type, ...], what: str) -> Any:
    if isinstance(value, bool) and typ is not bool and (typ is int or (isinstance(typ, tuple) and bool not in typ)):
        raise _err(source, f"{key} = {value!r} must be {what}")
    if typ is float and isinstance(value, int):
        return float(value)
    if not isinstance(value, typ):
        raise _err(source, f"{key} = {value!r} must be {what}")
    return value


def _int_list(source: str, key: str, value: Any, *, count_ok: bool) -> tuple[int, ...]:
    if count_ok and isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise _err(source, f"{key} = {value} must be >= 1 (a count) or a list of indices")
        return tuple(range(value))
    if not isinstance(value, list) or not value or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise _err(source, f"{key} = {value!r} must be a non-empty list of integers")
    if len(set(value)) != len(value):
        raise _err(source, f"{key} = {value!r} has duplicates")
    if any(v < 0 for v in value):
        raise _err(source, f"{key} = {value!r}: values must be >= 0")
    return tuple(value)


def _trick_list(source: str, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _err(source, f"{key} = {value!r} must be a list of trick names")
    if len(set(value)) != len(value):
        raise _err(source, f"{key} = {value!r} names a trick twice")
    _known_tricks(source, key, value)
    return tuple(value)


def _known_tricks(source: str, key: str, names: Any) -> None:
    """Refuse an unknown trick name under ``key`` (the registry's message suggests the closest name)."""
    from tricks import get

    for name in names:
        try:
            get(name)
        except BenchError as exc:
            raise _err(source, f"{key}: {exc}") from None


def _config_section(source: str, section: str, table: Any, cls: type, forbidden: tuple[str, ...] = ()) -> dict:
    if not isinstance(table, dict):
        raise _err(source, f"[{section}] must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in forbidden}
    for key in table:
        if key in forbidden:
            raise _err(source, f"{section}.{key} cannot be set in a spec (use the top-level "
                               f"{'folds' if key == 'fold' else 'seeds'} list)")
    _check_keys(source, f"[{section}]", table, fields)
    out: dict[str, Any] = {}
    for key, value in table.items():
        default = fields[key].default
        typ = type(default)
        if typ is bool:
            if not isinstance(value, bool):
                raise _err(source, f"{section}.{key} = {value!r} must be true or false")
        elif typ is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise _err(source, f"{section}.{key} = {value!r} must be an integer")
        elif typ is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise _err(source, f"{section}.{key} = {value!r} must be a number")
            value = float(value)
        elif typ is str:
            if not isinstance(value, str):
                raise _err(source, f"{section}.{key} = {value!r} must be a string")
        out[key] = value
    try:
        cfg = cls(**out)
        cfg.validate()
    except SpecError as exc:
        raise _err(source, str(exc)) from None
    return out


def _trick_params(source: str, key: str, value: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise _err(source, f"{key} must be a table of tables, e.g. {key}.warmup = {{ epochs = 2 }}")
    _known_tricks(source, key, value)
    return {k: dict(v) for k, v in value.items()}


def _resolve_row(source: str, where: str, names: list[str], params: dict[str, dict[str, Any]]) -> None:
    from tricks import resolve

    try:
        resolve(names, {k: v for k, v in params.items() if k in names})
    except BenchError as exc:
        raise _err(source, f"{where}: {exc}") from None


def _fixed_split(source: str, data_raw: dict, check_data: bool) -> dict[str, Any]:
    """``test_ids`` (a list of IDs or a file) and ``splits`` (a file), files resolved against the spec's folder."""

    def file(key: str, value: str) -> str:
        p = Path(value).expanduser()
        if not p.is_absolute() and source not in ("<spec>", "<text>") and not p.exists():
            alt = Path(source).parent / p
            if alt.exists():
                p = alt
        if check_data and not p.is_file():
            raise _err(source, f"data.{key} = {value!r}: no such file")
        return str(p)

    out: dict[str, Any] = {}
    if "test_ids" in data_raw:
        v = data_raw["test_ids"]
        if isinstance(v, str):
            out["test_ids"] = file("test_ids", v)
        elif isinstance(v, list) and v and all(isinstance(i, str) and i for i in v):
            out["test_ids"] = tuple(v)
        else:
            raise _err(source, f"data.test_ids = {v!r} must be a list of case IDs or a text file (one ID a line)")
    if "splits" in data_raw:
        out["splits"] = file("splits", _typed(source, "data.splits", data_raw["splits"], str, "a JSON file path"))
    return out


def parse_spec(text: str, source: str = "<spec>", *, check_data: bool = True) -> Spec:
    """Parse and validate a spec's TOML text. Raises :class:`SpecError` naming ``source`` and the key."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _err(source, f"not valid TOML: {exc}") from None
    _check_keys(source, "the top level", raw, _TOP_KEYS)

    name = raw.get("name")
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_." for c in name):
        raise _err(source, f"name = {name!r}: required; letters, digits, '-', '_' and '.' only")
    design = raw.get("design", "full")
    designs = _designs()
    if design not in designs:
        raise _err(source, f"design = {design!r} is not one of {', '.join(designs)}{_closest(str(design), designs)}")
    baseline_label = _typed(source, "baseline_label", raw.get("baseline_label", "BL"), str, "a string")
    description = _typed(source, "description", raw.get("description", ""), str, "a string")
    objective = raw.get("objective", "mean_val_dice")
    if objective not in OBJECTIVES:
        raise _err(source, f"objective = {objective!r} is not one of {', '.join(OBJECTIVES)}"
                           f"{_closest(str(objective), OBJECTIVES)}")

    # data
    data_raw = raw.get("data", {})
    if not isinstance(data_raw, dict):
        raise _err(source, "[data] must be a table")
    _check_keys(source, "[data]", data_raw, _DATA_KEYS)
    synth = data_raw.get("synthetic", {})
    if not isinstance(synth, dict):
        raise _err(source, "data.synthetic must be a table of synthesize() options")
    _check_keys(source, "[data.synthetic]", synth, _SYNTH_KEYS)
    for key in ("cases", "unlabeled", "seed"):
        if key in synth:
            v = _typed(source, f"data.synthetic.{key}", synth[key], int, "an integer")
            if v < (2 if key == "cases" else 0):
                raise _err(source, f"data.synthetic.{key} = {v} is out of range (>= {2 if key == 'cases' else 0})")
    if "shape" in synth and (not isinstance(synth["shape"], list) or len(synth["shape"]) != 3
                             or not all(isinstance(s, int) and s >= 16 for s in synth["shape"])):
        raise _err(source, f"data.synthetic.shape = {synth['shape']!r} must be three integers >= 16")
    path = _typed(source, "data.path", data_raw.get("path", "synthetic"), str, "a folder path or 'synthetic'")
    if path != "synthetic":
        p = Path(path).expanduser()
        if not p.is_absolute() and source not in ("<spec>", "<text>") and not p.exists():
            alt = Path(source).parent / p
            if alt.exists():
                path = str(alt)
        if check_data and not Path(path).expanduser().is_dir():
            raise _err(source, f"data.path = {data_raw['path']!r}: no such folder (set it to your BraTS folder, "
                               "or 'synthetic')")
    elif "format" in data_raw:
        pass
    data = DataSpec(
        path=path,
        synthetic=dict(synth),
        format=_typed(source, "data.format", data_raw["format"], str, "a string") if "format" in data_raw else None,
        folds=_typed(source, "data.folds", data_raw.get("folds", 5), int, "an integer"),
        test_fraction=_typed(source, "data.test_fraction", data_raw.get("test_fraction", 0.2), float, "a number"),
        split_seed=_typed(source, "data.split_seed", data_raw.get("split_seed", 0), int, "an integer"),
        spacing=(_typed(source, "data.spacing", data_raw["spacing"], float, "a number in mm")
                 if "spacing" in data_raw else None),
        normalization=_typed(source, "data.normalization", data_raw.get("normalization", "minmax"), str, "a string"),
        test_cases=_typed(source, "data.test_cases", data_raw.get("test_cases", 0), int, "an integer"),
        **_fixed_split(source, data_raw, check_data),
    )
    if data.splits is not None and check_data:
        from bench.data.splits import read_splits_file

        try:
            n = len(read_splits_file(data.splits, what="data.splits").get("val", []))
        except BenchError as exc:
            raise _err(source, str(exc)) from None
        data = dataclasses.replace(data, folds=n)
    if data.folds < 1 and data.splits is None:
        raise _err(source, f"data.folds = {data.folds} must be >= 1 (1: every non-test case trains, no validation)")
    if not 0 < data.test_fraction < 1:
        raise _err(source, f"data.test_fraction = {data.test_fraction} must be in (0, 1)")
    if data.spacing is not None and not data.spacing > 0:
        raise _err(source, f"data.spacing = {data.spacing} must be > 0 mm")

    folds = _int_list(source, "folds", raw.get("folds", [0]), count_ok=True)
    bad = [f for f in folds if f >= data.folds]
    if bad:
        raise _err(source, f"folds = {list(folds)}: fold {bad[0]} does not exist (data.folds = {data.folds}, "
                           f"accepted 0..{data.folds - 1})")
    seeds = _int_list(source, "seeds", raw.get("seeds", [0]), count_ok=False)

    # Every check that needs no trick registry comes first: importing the registry imports torch (seconds).
    from bench.engine.config import InferenceConfig, ModelConfig, TrainConfig

    model = _config_section(source, "model", raw.get("model", {}), ModelConfig)
    train = _config_section(source, "train", raw.get("train", {}), TrainConfig, forbidden=("fold", "seed"))
    inference = _config_section(source, "inference", raw.get("inference", {}), InferenceConfig)

    opt_raw = raw.get("optuna", {})
    if not isinstance(opt_raw, dict):
        raise _err(source, "[optuna] must be a table")
    _check_keys(source, "[optuna]", opt_raw, _OPTUNA_KEYS)
    opt = OptunaSpec(
        trials=_typed(source, "optuna.trials", opt_raw.get("trials", 20), int, "an integer"),
        sampler=_typed(source, "optuna.sampler", opt_raw.get("sampler", "tpe"), str, "a string"),
        pruner=_typed(source, "optuna.pruner", opt_raw.get("pruner", "median"), str, "a string"),
        seed=_typed(source, "optuna.seed", opt_raw.get("seed", 0), int, "an integer"),
        search_params=_typed(source, "optuna.search_params", opt_raw.get("search_params", True), bool,
                             "true or false"),
    )
    if opt.trials < 1:
        raise _err(source, f"optuna.trials = {opt.trials} must be >= 1")
    if opt.sampler not in SAMPLERS:
        raise _err(source, f"optuna.sampler = {opt.sampler!r} is not one of {', '.join(SAMPLERS)}")
    if opt.pruner not in PRUNERS:
        raise _err(source, f"optuna.pruner = {opt.pruner!r} is not one of {', '.join(PRUNERS)}")

    evaluation = _evaluation_section(source, raw.get("evaluation", {}))

    fixed = _trick_list(source, "fixed", raw.get("fixed", []))
    factors = _trick_list(source, "factors", raw.get("factors", []))
    both = set(fixed) & set(factors)
    if both:
        raise _err(source, f"trick {sorted(both)[0]!r} is both in fixed and in factors")
    labels = raw.get("labels", {})
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise _err(source, "labels must be a table of strings, e.g. labels = { model_fusion = 'fuse' }")
    _trick_params(source, "labels", {k: {} for k in labels})
    params = _trick_params(source, "params", raw.get("params", {}))
    replication = _replication(source, raw, design)

    # rows
    rows: list[Row] = []
    raw_rows = raw.get("rows")
    if design == "list":
        if not isinstance(raw_rows, list) or not raw_rows:
            raise _err(source, "design = 'list' needs [[rows]] tables with label and tricks")
        seen: set[str] = set()
        for i, r in enumerate(raw_rows):
            where = f"rows[{i}]"
            if not isinstance(r, dict):
                raise _err(source, f"{where} must be a table")
            _check_keys(source, where, r, _ROW_KEYS)
            label = r.get("label")
            if not isinstance(label, str) or not label:
                raise _err(source, f"{where}.label is required (a string)")
            if label in seen:
                raise _err(source, f"{where}.label = {label!r} is used twice")
            seen.add(label)
            tricks = _trick_list(source, f"{where}.tricks", r.get("tricks", []))
            rparams = _trick_params(source, f"{where}.params", r.get("params", {}))
            rows.append(Row(label, tricks, rparams))
    elif raw_rows is not None:
        raise _err(source, f"rows are only used by design = 'list' (this spec has design = {design!r})")
    fractional = _fractional(source, raw, design, factors)
    if design in ("full", "ladder") and not factors:
        raise _err(source, f"design = {design!r} needs a non-empty factors list")
    if design == "full" and len(factors) > 10:
        raise _err(source, f"factors: {len(factors)} factors make {2 ** len(factors)} rows; at most 10 accepted")
    if design == "optuna" and not factors:
        raise _err(source, "design = 'optuna' needs factors (the tricks to search over)")
    if design == "forward" and not factors:
        raise _err(source, "design = 'forward' needs factors (the candidate tricks of the ladder)")
    if design == "forward" and train.get("val_every", 0) < 1:
        raise _err(source, "design = 'forward' needs train.val_every >= 1 (steps are selected on validation Dice; "
                           "test cases only confirm)")
    if design in ("forward", "optuna") and data.folds == 1:
        raise _err(source, f"data.folds = 1 leaves no validation cases, and design = '{design}' selects on "
                           "validation Dice; set data.folds >= 2")
    if design == "optuna" and train.get("val_every", 0) < 1:
        raise _err(source, "design = 'optuna' needs train.val_every >= 1 (the objective and pruning use "
                           "validation Dice; test cases are never used to choose)")

    spec = Spec(
        name=name, source=source, text=text, design=design, baseline_label=baseline_label, folds=folds,
        seeds=seeds, objective=objective, fixed=fixed, factors=factors, labels=dict(labels), params=params,
        rows=tuple(rows), data=data, model=model, train=train, inference=inference, optuna=opt,
        description=description, evaluation=evaluation, replication=replication, fractional=fractional,
    )
    _check_rows(spec)
    return spec


def _evaluation_section(source: str, table: Any) -> EvaluationSpec:
    if not isinstance(table, dict):
        raise _err(source, "[evaluation] must be a table")
    _check_keys(source, "[evaluation]", table, _EVALUATION_KEYS)
    cohort = table.get("lesionwise")
    if cohort is None:
        return EvaluationSpec()
    if not isinstance(cohort, str) or cohort.strip().lower() not in COHORTS:
        raise _err(source, f"evaluation.lesionwise = {cohort!r} is not one of {', '.join(COHORTS)}")
    return EvaluationSpec(lesionwise=cohort.strip().lower())


def _replication(source: str, raw: dict[str, Any], design: str) -> ReplicationSpec | None:
    rep = raw.get("replication")
    if rep is None:
        return None
    if not isinstance(rep, dict):
        raise _err(source, "[replication] must be a table")
    _check_keys(source, "[replication]", rep, _REPLICATION_KEYS)
    if design in ("optuna", "forward"):
        raise _err(source, f"[replication] cannot be used with design = {design!r} (accepted with full, ladder, "
                           "list and fractional designs)")
    out = ReplicationSpec(
        halfwidth=_typed(source, "replication.halfwidth", rep.get("halfwidth", 0.01), float, "a number"),
        margin=_typed(source, "replication.margin", rep.get("margin", 0.005), float, "a number"),
        alpha=_typed(source, "replication.alpha", rep.get("alpha", 0.05), float, "a number"),
        max_seeds=_typed(source, "replication.max_seeds", rep.get("max_seeds", 12), int, "an integer"),
        looks=_int_list(source, "replication.looks", rep.get("looks", [3, 5, 8, 12]), count_ok=False),
        allocation=_typed(source, "replication.allocation", rep.get("allocation", "balanced"), str, "a string"),
    )
    if out.allocation not in ("balanced", "variance"):
        raise _err(source, f"replication.allocation = {out.allocation!r} must be \"balanced\" or \"variance\"")
    if not out.halfwidth > 0:
        raise _err(source, f"replication.halfwidth = {out.halfwidth} must be > 0 (Dice)")
    if out.margin < 0:
        raise _err(source, f"replication.margin = {out.margin} must be >= 0 (Dice)")
    if not 0 < out.alpha < 1:
        raise _err(source, f"replication.alpha = {out.alpha} must be in (0, 1)")
    if list(out.looks) != sorted(out.looks) or out.looks[0] < 2:
        raise _err(source, f"replication.looks = {list(out.looks)} must be increasing seed counts, the first >= 2 "
                           "(one seed cannot measure run-to-run variance)")
    if out.looks[-1] > out.max_seeds:
        raise _err(source, f"replication.looks = {list(out.looks)}: the last look exceeds max_seeds = "
                           f"{out.max_seeds}")
    return out


def _fractional(source: str, raw: dict[str, Any], design: str, factors: tuple[str, ...]) -> FractionalSpec:
    given = [k for k in _FRACTIONAL_KEYS if k in raw]
    if design != "fractional":
        if given:
            raise _err(source, f"{given[0]} is only used by design = 'fractional' (this spec has design = {design!r})")
        return FractionalSpec()
    if not 3 <= len(factors) <= 11:
        raise _err(source, f"factors: design = 'fractional' needs 3 to 11 factors, got {len(factors)}")
    if "resolution" in raw and "runs" in raw:
        raise _err(source, "resolution and runs both set: give one (resolution = 3, 4 or 5, or runs = N)")
    resolution = raw.get("resolution")
    if resolution is not None and (isinstance(resolution, bool) or resolution not in (3, 4, 5)):
        raise _err(source, f"resolution = {resolution!r} must be 3, 4 or 5")
    runs = raw.get("runs")
    if runs is not None:
        runs = _typed(source, "runs", runs, int, "an integer (a power of 2)")
    if resolution is None and runs is None:
        resolution = 4
    fold = _typed(source, "foldover", raw.get("foldover", False), bool, "true or false")
    return FractionalSpec(resolution, runs, fold)


def _check_rows(spec: Spec) -> None:
    """Rows a user wrote (ladder steps, list rows, the fixed set) must resolve; full grids only record refusals."""
    src = spec.source
    every = list(spec.fixed) + list(spec.factors) + [t for r in spec.rows for t in r.tricks]
    for trick in spec.params:
        if trick not in every:
            raise _err(src, f"params.{trick}: trick {trick!r} is in no row (add it to fixed, factors or a row)")
    _resolve_row(src, "fixed", list(spec.fixed), spec.params)
    if spec.design == "ladder":
        names = list(spec.fixed)
        for t in spec.factors:
            names.append(t)
            _resolve_row(src, f"ladder row {spec.row_label(names[len(spec.fixed):])!r}", names, spec.params)
    elif spec.design == "list":
        for r in spec.rows:
            merged = {**spec.params, **r.params}
            _resolve_row(src, f"row {r.label!r}", list(spec.fixed) + [t for t in r.tricks if t not in spec.fixed],
                         merged)
    elif spec.design in ("full", "optuna", "fractional", "forward"):
        for t in spec.factors:  # each factor alone on top of the fixed set must work
            _resolve_row(src, f"factor {t!r}", list(spec.fixed) + [t], spec.params)
    if spec.design == "fractional":  # the table's fraction must exist and no factor pair may conflict
        from bench.design import get_design

        get_design(spec)


def packaged_specs() -> dict[str, Any]:
    """``{name: Traversable}`` of the specs shipped in the package ``bench.runs``."""
    root = importlib.resources.files("bench.runs")
    return {p.name[:-5]: p for p in root.iterdir() if p.name.endswith(".toml")}


def load_spec(path_or_name: str | Path | None = None, *, check_data: bool = True) -> Spec:
    """Load a spec from a file, or a packaged spec by name (``demo``, ``table1``...; default ``demo``)."""
    target = "demo" if path_or_name is None else str(path_or_name)
    p = Path(target).expanduser()
    if p.is_file():
        return parse_spec(p.read_text(encoding="utf-8"), str(p), check_data=check_data)
    shipped = packaged_specs()
    key = target[:-5] if target.endswith(".toml") else target
    key = Path(key).name if key.startswith("runs/") else key
    if key in shipped:
        return parse_spec(shipped[key].read_text(encoding="utf-8"), f"runs/{key}.toml", check_data=check_data)
    raise SpecError(f"spec {target!r}: no such file, and no packaged spec of that name "
                    f"(packaged: {', '.join(sorted(shipped))}){_closest(key, shipped)}")
