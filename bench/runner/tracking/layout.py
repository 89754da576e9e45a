"""The layout of the MLflow mirror: names, tags, params and metrics of its runs, and where its files live.

Layout of a cell's child run (what the MLflow UI's compare views use):

- params: ``trick.<name>`` = ``1``/``0`` for every factor (numeric, so parallel coordinates and contour
  plots treat them as axes), ``trick_param.<trick>.<param>`` for the parameters of enabled tricks,
  ``budget.<key>``, ``fold``, ``seed`` (see :func:`cell_params`). MLflow's compare page preselects the first
  three params (in code-point order) whose values differ between the selected runs; ``trick.`` sorts before
  ``trick_param.``, so the toggles are what it shows first;
- metrics: final ``dice_et``, ``dice_tc``, ``dice_wt``, their mean ``dice_mean``, ``hd95_et``, ``hd95_tc``,
  ``hd95_wt``, with a lesion-wise spec also ``lesion_dice_et`` ... ``lesion_hd95_wt`` (:func:`lesion_means`;
  and any other number given), and the learning curve (``train_loss``, ``lr``, ``val_dice_*`` ...) as metric
  histories whose step is the iteration (or the epoch when rows carry no iteration);
- tags: ``label`` (``BL+warmup``), ``mlflow.parentRunId``, ``mlflow.runName`` = ``"<label> f<fold> s<seed>"``;
- start and end time: the cell's own (``start_time``/``end_time``), so Duration is the cell's real length;
- artifacts: whatever files are given (per-case metrics CSV, resolved configuration JSON, ...), plus
  ``learning_curve.png`` drawn by the client when no PNG is given and ``config.json`` / ``case_metrics.csv`` when
  ``config=`` / ``case_rows=`` are passed.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.redact import redact_url

__all__ = [
    "TRICK_PARAM_PREFIX",
    "default_tracking_uri",
    "default_artifact_root",
    "cell_params",
    "cell_run_name",
    "with_dice_mean",
    "runs_view_state",
    "FINAL_METRICS",
    "LESION_METRICS",
    "lesion_means",
    "RUN_STATUSES",
    "curve_points",
    "flatten",
    "clean_key",
    "param_text",
    "finite_number",
    "now_ms",
    "write_csv",
]

FINAL_METRICS = ("dice_et", "dice_tc", "dice_wt", "hd95_et", "hd95_tc", "hd95_wt")
LESION_METRICS = tuple(f"lesion_{m}_{r}" for m in ("dice", "hd95") for r in ("et", "tc", "wt"))


def lesion_means(case_rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Test-case means ``lesion_dice_<region>`` / ``lesion_hd95_<region>`` of per-case metric rows; regions
    without lesion-wise values are left out (an experiment without ``[evaluation] lesionwise``)."""
    out: dict[str, float] = {}
    for region in ("ET", "TC", "WT"):
        for metric in ("dice", "hd95"):
            vals = [float(r[f"lesion_{metric}"]) for r in case_rows
                    if r.get("region") == region and r.get(f"lesion_{metric}") is not None]
            if vals:
                out[f"lesion_{metric}_{region.lower()}"] = sum(vals) / len(vals)
    return out
RUN_STATUSES = ("FINISHED", "FAILED", "KILLED")
STORE_DIR = ".bench"
MLFLOW_DB = "mlflow.db"
ARTIFACT_DIR = "mlartifacts"

# Tags this module sets; `bench.kind` tells a launch (parent) from a cell (child) in searches.
KIND_TAG = "bench.kind"
LABEL_TAG = "label"
# What MLflow's UI reads to open an experiment on its runs (model training) rather than on GenAI traces.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
# Trick parameters sort after the ``trick.<name>`` toggles ('.' < '_'): see the module docstring.
TRICK_PARAM_PREFIX = "trick_param."
DICE_REGIONS = ("dice_et", "dice_tc", "dice_wt")
NOTHING_RUN_SUFFIX = " (no cells run)"
# A view of the runs table stored as an experiment tag; ``#/experiments/<id>/runs?viewStateShareKey=bench``
# opens it (MLflow's "share view"): the cells only, sorted by mean Dice, with Dice and toggle columns.
RUNS_VIEW_KEY = "bench"
RUNS_VIEW_TAG = "mlflow.sharedViewState." + RUNS_VIEW_KEY

# MLflow's own limits (mlflow.utils.validation) for one log_batch call and for values.
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_ENTITIES_PER_BATCH = 1000
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_KEY = 250
_KEY_BAD_CHARS = re.compile(r"[^\w\-./ :]")


def default_tracking_uri(workspace: str | os.PathLike[str]) -> str:
    """``sqlite:///<workspace>/.bench/mlflow.db`` (absolute). MLflow >= 3.13 refuses the plain file store."""
    return "sqlite:///" + str(Path(workspace).expanduser().resolve() / STORE_DIR / MLFLOW_DB)


def default_artifact_root(workspace: str | os.PathLike[str]) -> str:
    """``<workspace>/.bench/mlartifacts`` (absolute path); each experiment gets a sub-folder named after it."""
    return str(Path(workspace).expanduser().resolve() / STORE_DIR / ARTIFACT_DIR)


def cell_params(
    factors: Iterable[str],
    enabled: Iterable[str],
    trick_params: Mapping[str, Mapping[str, Any]] | None = None,
    budget: Mapping[str, Any] | None = None,
    fold: int | None = None,
    seed: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The standard params of a cell's child run.

    ``trick.<name>`` = 1/0 for every factor (and 1 for enabled tricks that are not factors, the fixed ones),
    ``trick_param.<trick>.<param>`` for the parameters of enabled tricks only (a disabled trick has no
    parameters, as in an Optuna conditional space), ``budget.<key>``, ``fold``, ``seed``, then ``extra``.
    """
    on = set(enabled)
    out: dict[str, Any] = {f"trick.{name}": int(name in on) for name in factors}
    for name in sorted(on):
        out.setdefault(f"trick.{name}", 1)
    for name, params in (trick_params or {}).items():
        if name in on:
            for key, value in params.items():
                out[f"{TRICK_PARAM_PREFIX}{name}.{key}"] = value
    for key, value in (budget or {}).items():
        out[f"budget.{key}"] = value
    if fold is not None:
        out["fold"] = fold
    if seed is not None:
        out["seed"] = seed
    out.update(extra or {})
    return out


def cell_run_name(label: str, fold: Any = None, seed: Any = None) -> str:
    """``"BL+warmup f0 s1"``: the label, then fold and seed when known."""
    parts = [label]
    if fold is not None and fold != "":
        parts.append(f"f{fold}")
    if seed is not None and seed != "":
        parts.append(f"s{seed}")
    return " ".join(parts)


def flatten(values: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from flatten(value, name + ".")
        else:
            yield name, value


def clean_key(key: str) -> str:
    return _KEY_BAD_CHARS.sub("_", str(key))[:MAX_KEY]


def param_text(value: Any) -> str:
    if isinstance(value, bool):  # toggles as numbers: the compare views plot them as axes
        return "1" if value else "0"
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        value = json.dumps(sorted(value) if isinstance(value, (set, frozenset)) else list(value), default=str)
    return redact_url(value)[:MAX_PARAM_VALUE]


def finite_number(value: Any) -> float | None:
    """A finite float, or None for anything MLflow should not get (None, NaN, inf, text)."""
    if isinstance(value, bool):
        return float(value)
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def now_ms() -> int:
    return int(time.time() * 1000)



def runs_view_state(toggles: Sequence[str]) -> dict[str, Any]:
    """The runs-table view MLflow's UI loads from :data:`RUNS_VIEW_TAG`: cell runs only, best mean Dice first,
    columns Duration, ``dice_mean``, ``dice_et``/``tc``/``wt`` and the given ``trick.*`` params."""
    columns = ["attributes.`Duration`"] + [f"metrics.`{k}`" for k in ("dice_mean", *DICE_REGIONS)]
    columns += [f"params.`{k}`" for k in toggles]
    return {"selectedColumns": columns, "orderByKey": "metrics.`dice_mean`", "orderByAsc": False,
            "searchFilter": f"tags.`{KIND_TAG}` = 'cell'"}


def with_dice_mean(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """``metrics`` plus ``dice_mean`` (mean of ``dice_et``, ``dice_tc``, ``dice_wt``) when all three are numbers."""
    out = dict(metrics)
    values = [finite_number(metrics.get(k)) for k in DICE_REGIONS]
    if "dice_mean" not in out and all(v is not None for v in values):
        out["dice_mean"] = sum(v for v in values if v is not None) / len(values)
    return out


def curve_points(curve: Sequence[Mapping[str, Any]], now_ms: int) -> list[tuple[str, float, int, int]]:
    """(key, value, timestamp ms, step) for every finite number of every curve row."""
    if not curve:
        return []
    if all(r.get("iteration") is not None for r in curve):
        step_key: str | None = "iteration"
    elif all(r.get("epoch") is not None for r in curve):
        step_key = "epoch"
    else:
        step_key = None
    out = []
    for index, row in enumerate(curve):
        step = int(row[step_key]) if step_key else index
        stamp = finite_number(row.get("time"))
        ts = int(stamp * 1000) if stamp is not None else now_ms
        for key, value in row.items():
            if key in (step_key, "time"):
                continue
            number = finite_number(value)
            if number is not None:
                out.append((clean_key(key), number, ts, step))
    return out


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)

