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

The accepted designs are those registered in :mod:`bench.design`; each design class owns its own rules (what it
needs from a spec, its own top-level keys, which rows must resolve). The validated spec's dataclasses live in
:mod:`bench.spec.model` (re-exported here); command-line overrides are :mod:`bench.runner.overrides`.

:func:`load_spec` reads a file (or the packaged spec of that name), :func:`parse_spec` checks a text. Every
problem raises :class:`bench.errors.SpecError` naming the file and the key, with the closest valid key for a
typo. Validation touches no database and no data (except checking that a data folder exists).
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import sys
from pathlib import Path
from typing import Any

from bench.errors import BenchError, SpecError
from bench.runner.spec_engine import check_engine_forms, engine_section
from bench.runner.spec_sections import evaluation_section, replication_section
from bench.spec.checks import check_keys, closest, err, int_list, typed
from bench.spec.model import (
    DataSpec,
    EngineSpec,
    EvaluationSpec,
    FractionalSpec,
    OptunaSpec,
    ReplicationSpec,
    Row,
    Spec,
)

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
    "EngineSpec",
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
    "evaluation": "extra test-set metrics, e.g. {lesionwise = 'gli'} or {rules = '2025', cohort = 'gli'}",
    "engine": "the training engine and its keys, e.g. {name = 'nnunet', plans = 'nnUNetPlans'} (default native)",
    "replication": "adaptive replication: halfwidth, looks, max_seeds, margin, alpha, allocation",
}


def _design_keys() -> dict[str, tuple[str, list[str]]]:
    """``{key: (meaning, [designs that read it])}`` of the top-level keys that designs own."""
    from bench.design import design_classes

    out: dict[str, tuple[str, list[str]]] = {}
    for cls in design_classes():
        for key, meaning in cls.keys.items():
            out.setdefault(key, (meaning, []))[1].append(cls.name)
    return out


def _top_keys() -> dict[str, str]:
    """The accepted top-level keys with their meaning: the common ones, then those the designs own."""
    return {**_TOP_KEYS, "design": f"one of {', '.join(_designs())}",
            **{k: meaning for k, (meaning, _) in _design_keys().items()}}
_DATA_KEYS = ("path", "synthetic", "format", "folds", "test_fraction", "split_seed", "spacing", "normalization",
              "test_cases", "test_ids", "splits")
_SYNTH_KEYS = ("cases", "unlabeled", "shape", "seed", "format")
_ROW_KEYS = ("label", "tricks", "params")
_OPTUNA_KEYS = ("trials", "sampler", "pruner", "seed", "search_params")


_err = err
_closest = closest
_check_keys = check_keys
_typed = typed
_int_list = int_list


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
    _check_keys(source, "the top level", raw, _top_keys())

    name = raw.get("name")
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_." for c in name):
        raise _err(source, f"name = {name!r}: required; letters, digits, '-', '_' and '.' only")
    design = raw.get("design", "full")
    designs = _designs()
    if design not in designs:
        raise _err(source, f"design = {design!r} is not one of {', '.join(designs)}{_closest(str(design), designs)}")
    from bench.design import design_class

    cls = design_class(design)
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

    engine, engine_tables = engine_section(source, raw)
    if engine_tables is None:
        model = _config_section(source, "model", raw.get("model", {}), ModelConfig)
        train = _config_section(source, "train", raw.get("train", {}), TrainConfig, forbidden=("fold", "seed"))
        inference = _config_section(source, "inference", raw.get("inference", {}), InferenceConfig)
    else:
        model, train, inference = (engine_tables[k] for k in ("model", "train", "inference"))

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

    evaluation = evaluation_section(source, raw.get("evaluation", {}))

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
    replication = replication_section(source, raw, cls)

    # rows
    rows: list[Row] = []
    raw_rows = raw.get("rows")
    if cls.uses_rows:
        if not isinstance(raw_rows, list) or not raw_rows:
            raise _err(source, f"design = {design!r} needs [[rows]] tables with label and tricks")
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
        raise _err(source, f"rows are only used by {_users(lambda c: c.uses_rows)} (this spec has "
                           f"design = {design!r})")
    for key, (_, owners) in _design_keys().items():
        if key in raw and design not in owners:
            raise _err(source, f"{key} is only used by {_users(lambda c, o=owners: c.name in o)} (this spec has "
                               f"design = {design!r})")
    settings = cls.settings(source, raw, factors)

    spec = Spec(
        name=name, source=source, text=text, design=design, baseline_label=baseline_label, folds=folds,
        seeds=seeds, objective=objective, fixed=fixed, factors=factors, labels=dict(labels), params=params,
        rows=tuple(rows), data=data, model=model, train=train, inference=inference, optuna=opt,
        description=description, evaluation=evaluation, replication=replication, engine=engine, **settings,
    )
    cls.check(spec)
    cls.check_data(spec)
    _check_rows(spec)
    check_engine_forms(spec)
    return spec


def _users(which: Any) -> str:
    """``design = 'a'`` (or ``design = 'a' or 'b'``): the designs whose class satisfies ``which``."""
    from bench.design import design_classes

    names = [repr(c.name) for c in design_classes() if which(c)]
    return "design = " + " or ".join(names)


def _check_rows(spec: Spec) -> None:
    """Rows a user wrote (ladder steps, list rows, the fixed set) must resolve; full grids only record refusals."""
    src = spec.source
    every = list(spec.fixed) + list(spec.factors) + [t for r in spec.rows for t in r.tricks]
    for trick in spec.params:
        if trick not in every:
            raise _err(src, f"params.{trick}: trick {trick!r} is in no row (add it to fixed, factors or a row)")
    _resolve_row(src, "fixed", list(spec.fixed), spec.params)
    from bench.design import design_class

    cls = design_class(spec.design)
    for where, names, params in cls.rows_to_check(spec):
        _resolve_row(src, where, names, params)
    cls(spec)  # a design's own checks of its rows (a fractional design: its fraction exists, no pair conflicts)


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
