"""The MLflow mirror: one experiment per spec, a parent run per launch of ``bench run``, a child run per cell.

MLflow is a window for people to browse and compare; the results database stays the source of truth. So
nothing here may fail a cell: every call to MLflow is guarded, the first failure is reported once with
``warnings.warn`` (and the tracking URI with any password hidden), later ones go to the debug log, and the
methods return ``""``/``False`` instead of raising. After a failure the tracker pauses for ``cooldown``
seconds, so a dead tracking server costs one timeout, not one per cell.

Runs are addressed by explicit ids through :class:`mlflow.MlflowClient` (never the fluent active-run API),
so several threads or processes can log cells of the same parent at once. ``import mlflow`` costs more than
a second: it happens lazily, on the first call that talks to MLflow.

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
  ``learning_curve.png`` drawn here when no PNG is given and ``config.json`` / ``case_metrics.csv`` when
  ``config=`` / ``case_rows=`` are passed.
"""

from __future__ import annotations

import csv
import getpass
import json
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

__all__ = [
    "Tracker",
    "TRICK_PARAM_PREFIX",
    "default_tracking_uri",
    "default_artifact_root",
    "cell_params",
    "cell_run_name",
    "with_dice_mean",
    "runs_view_state",
    "redact_url",
    "FINAL_METRICS",
    "LESION_METRICS",
    "lesion_means",
    "RUN_STATUSES",
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

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

# MLflow's own limits (mlflow.utils.validation) for one log_batch call and for values.
_MAX_PARAMS_TAGS_PER_BATCH = 100
_MAX_ENTITIES_PER_BATCH = 1000
_MAX_PARAM_VALUE = 6000
_MAX_TAG_VALUE = 8000
_MAX_KEY = 250
_KEY_BAD_CHARS = re.compile(r"[^\w\-./ :]")

_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*):(?P<pw>[^\s@/]+)@")
_QUERY_PASSWORD = re.compile(r"(?i)(?P<key>\b(?:password|passwd|pwd|token|secret)=)[^&\s;]+")


def redact_url(text: object) -> str:
    """``text`` with every password hidden: ``postgresql://user:pass@host`` -> ``postgresql://user:***@host``.

    Works on free text as well as a single URL (error messages embed URLs), and also hides
    ``password=...``/``token=...`` query values. Same output shape as :func:`bench.store.session.redact_url`,
    without importing SQLAlchemy.
    """
    s = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}:***@", str(text))
    return _QUERY_PASSWORD.sub(lambda m: f"{m.group('key')}***", s)


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


def _flatten(values: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flatten(value, name + ".")
        else:
            yield name, value


def _clean_key(key: str) -> str:
    return _KEY_BAD_CHARS.sub("_", str(key))[:_MAX_KEY]


def _param_text(value: Any) -> str:
    if isinstance(value, bool):  # toggles as numbers: the compare views plot them as axes
        return "1" if value else "0"
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        value = json.dumps(sorted(value) if isinstance(value, (set, frozenset)) else list(value), default=str)
    return redact_url(value)[:_MAX_PARAM_VALUE]


def _number(value: Any) -> float | None:
    """A finite float, or None for anything MLflow should not get (None, NaN, inf, text)."""
    if isinstance(value, bool):
        return float(value)
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _now_ms() -> int:
    return int(time.time() * 1000)


def _local_path(uri: str) -> Path | None:
    """The local folder of a ``file:`` URI or a plain path; None for remote schemes (s3://, http://, ...)."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        return Path(uri)
    return None


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "experiment"


class Tracker:
    """Mirror experiments into MLflow without ever failing the caller.

    ``tracking_uri``: ``sqlite:///...`` (see :func:`default_tracking_uri`), a PostgreSQL URL or an
    ``http(s)://`` tracking server. ``artifact_location``: the artifact ROOT for a new experiment (the
    experiment gets ``<root>/<experiment name>``); None lets a tracking server choose, and for a SQLite store
    means ``mlartifacts/`` next to the database file. An existing experiment keeps its location.

    ``failures`` counts MLflow calls that failed; ``last_error`` is the last one's message (redacted).
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment_name: str,
        artifact_location: str | None = None,
        *,
        cooldown: float = 60.0,
    ) -> None:
        self.tracking_uri = str(tracking_uri)
        self.experiment_name = experiment_name
        self.artifact_location = artifact_location
        self.cooldown = cooldown
        self.failures = 0
        self.last_error: str | None = None
        self._client: Any = None
        self._experiment_id: str | None = None
        self._lock = threading.RLock()
        self._warned = False
        self._paused_until = 0.0

    def __repr__(self) -> str:
        return f"Tracker({redact_url(self.tracking_uri)!r}, {self.experiment_name!r})"

    @property
    def experiment_id(self) -> str:
        """The MLflow experiment id once a run was logged ("" before; never contacts MLflow)."""
        return self._experiment_id or ""

    # ------------------------------------------------------------------ public API

    def start_parent(self, name: str, params: Mapping[str, Any], tags: Mapping[str, Any]) -> str:
        """Open the parent run of one launch of ``bench run``; returns its run id ("" if MLflow failed)."""

        def go() -> str:
            client = self._get_client()
            all_tags = self._base_tags() | {KIND_TAG: "launch", "mlflow.runName": name}
            all_tags |= {str(k): v for k, v in tags.items()}
            run = client.create_run(self._get_experiment_id(), tags=self._tag_values(all_tags), run_name=name)
            run_id: str = run.info.run_id
            self._log_batch(run_id, params=params)
            return run_id

        return self._guard("start_parent", go, "")

    def log_cell(
        self,
        parent_run_id: str,
        label: str,
        params: Mapping[str, Any],
        metrics: Mapping[str, Any],
        curve: Sequence[Mapping[str, Any]] = (),
        artifacts: Mapping[str, str | os.PathLike[str]] | None = None,
        tags: Mapping[str, Any] | None = None,
        *,
        fold: int | None = None,
        seed: int | None = None,
        config: Mapping[str, Any] | None = None,
        case_rows: Sequence[Mapping[str, Any]] | None = None,
        status: str = "FINISHED",
        start_time: float | None = None,
        end_time: float | None = None,
    ) -> str:
        """Log one finished (or failed) cell as a child run of ``parent_run_id``; returns the child's run id.

        ``params``: the cell's params, usually from :func:`cell_params` (bools become 1/0, nested mappings
        are flattened with dots). ``metrics``: final numbers (``dice_*``, ``hd95_*``, ...); NaN/None are
        skipped. ``curve``: rows like ``{"epoch", "iteration", "train_loss", "lr", "val_dice_et", ...}``,
        logged as metric histories (step = iteration, else epoch; missing or NaN values skipped).
        ``artifacts``: artifact name (may contain ``/``) -> local file. ``config`` / ``case_rows``: written
        here as ``config.json`` / ``case_metrics.csv`` when the caller has no file. ``fold``/``seed`` default
        to ``params["fold"]``/``params["seed"]`` and name the run. ``start_time``/``end_time``: epoch seconds
        of the cell's training, so the UI shows its real duration. Returns "" if the run could not be created.
        """
        if status not in RUN_STATUSES:
            raise ValueError(f"status must be one of {RUN_STATUSES}, got {status!r}")
        fold = params.get("fold") if fold is None else fold
        seed = params.get("seed") if seed is None else seed
        run_name = cell_run_name(label, fold, seed)
        metrics = with_dice_mean(metrics)

        def create() -> str:
            client = self._get_client()
            all_tags = self._base_tags() | {KIND_TAG: "cell", LABEL_TAG: label, "mlflow.runName": run_name}
            if parent_run_id:
                all_tags["mlflow.parentRunId"] = parent_run_id
            all_tags |= {str(k): v for k, v in (tags or {}).items()}
            start_ms = int(start_time * 1000) if start_time is not None else None
            run = client.create_run(
                self._get_experiment_id(), start_time=start_ms, tags=self._tag_values(all_tags), run_name=run_name
            )
            return str(run.info.run_id)

        run_id = self._guard("log_cell (create run)", create, "")
        if not run_id:
            return ""
        self._guard("log_cell (params, metrics)", lambda: self._log_batch(
            run_id, params=params, metrics=metrics, curve=curve), None)
        self._guard("log_cell (artifacts)", lambda: self._log_cell_artifacts(
            run_id, run_name, curve, artifacts or {}, config, case_rows), None)
        end_ms = int(end_time * 1000) if end_time is not None else None
        self._guard("log_cell (end run)", lambda: self._get_client().set_terminated(
            run_id, status=status, end_time=end_ms), None)
        return run_id

    def end_parent(self, run_id: str, status: str = "FINISHED") -> bool:
        """Close a parent run with ``FINISHED``, ``FAILED`` (some cells failed) or ``KILLED`` (Ctrl-C)."""
        if status not in RUN_STATUSES:
            raise ValueError(f"status must be one of {RUN_STATUSES}, got {status!r}")
        if not run_id:
            return False
        return self._guard("end_parent", lambda: self._get_client().set_terminated(run_id, status=status) or True,
                           False)

    def finish_launch(self, run_id: str, status: str, counts: Mapping[str, int]) -> bool:
        """Close a launch's parent run with its summary, so the collapsed runs table says what it did.

        Logs ``cells_done``, ``cells_failed``, ``cells_skipped``, ``cells_pruned``, ``cells_not_finished``
        (the experiment's cells by state at the end of the launch, from ``counts``), ``cells_run`` (child runs
        of this launch) and ``best_dice_mean`` with the tag ``best_cell`` (the best finished cell of the
        experiment by mean Dice), then ends the run with ``status``. A launch that ran no cell gets
        ``" (no cells run)"`` appended to its name. Returns True when everything was logged.
        """
        if status not in RUN_STATUSES:
            raise ValueError(f"status must be one of {RUN_STATUSES}, got {status!r}")
        if not run_id:
            return False

        def go() -> bool:
            client = self._get_client()
            exp_id = self._get_experiment_id()
            children = client.search_runs([exp_id], filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'",
                                          max_results=_MAX_ENTITIES_PER_BATCH)
            summary: dict[str, Any] = {f"cells_{st}": int(counts.get(st, 0))
                                       for st in ("done", "failed", "skipped", "pruned")}
            summary["cells_not_finished"] = int(counts.get("queued", 0)) + int(counts.get("running", 0))
            summary["cells_run"] = len(children)
            best = client.search_runs(
                [exp_id], filter_string=f"tags.`{KIND_TAG}` = 'cell' and attributes.status = 'FINISHED'",
                order_by=["metrics.dice_mean DESC"], max_results=1)
            if best and best[0].data.metrics.get("dice_mean") is not None:
                summary["best_dice_mean"] = best[0].data.metrics["dice_mean"]
                client.set_tag(run_id, "best_cell", best[0].data.tags.get("mlflow.runName", best[0].info.run_id))
            self._log_batch(run_id, metrics=summary)
            self._set_runs_view(client, exp_id)
            if not children:
                name = client.get_run(run_id).data.tags.get("mlflow.runName", "")
                if name and not name.endswith(NOTHING_RUN_SUFFIX):
                    client.set_tag(run_id, "mlflow.runName", name + NOTHING_RUN_SUFFIX)
            client.set_terminated(run_id, status=status)
            return True

        if self._guard("finish_launch", go, False):
            return True
        self.end_parent(run_id, status)  # the summary failed: still close the run
        return False

    def log_parent_artifacts(
        self,
        run_id: str,
        paths: Iterable[str | os.PathLike[str]] | Mapping[str, str | os.PathLike[str]],
        artifact_path: str | None = None,
    ) -> bool:
        """Attach files or folders (report plots, tables) to a run, under ``artifact_path`` if given.

        ``paths``: local files/folders (kept under their own names) or a mapping artifact name -> local file.
        Returns True when everything was logged.
        """
        if not run_id:
            return False
        items = dict(paths) if isinstance(paths, Mapping) else {Path(p).name: p for p in paths}

        def go() -> bool:
            with tempfile.TemporaryDirectory(prefix="bench-mlflow-") as tmp:
                staged = self._stage(Path(tmp), items)
                if staged:
                    self._get_client().log_artifacts(run_id, tmp, artifact_path=artifact_path)
            return True

        return self._guard("log_parent_artifacts", go, False)

    def latest_parent(self, name: str | None = None) -> str:
        """The run id of the newest parent run of this experiment (optionally with this run name), or ""."""

        def go() -> str:
            client = self._get_client()
            exp = client.get_experiment_by_name(self.experiment_name)
            if exp is None:
                return ""
            flt = f"tags.`{KIND_TAG}` = 'launch'"
            if name is not None:
                flt += " and tags.`mlflow.runName` = '" + name.replace("'", "\\'") + "'"
            runs = client.search_runs([exp.experiment_id], filter_string=flt, max_results=1,
                                      order_by=["attributes.start_time DESC"])
            return str(runs[0].info.run_id) if runs else ""

        return self._guard("latest_parent", go, "")

    # ------------------------------------------------------------------ internals

    def _set_runs_view(self, client: Any, exp_id: str) -> None:
        cells = client.search_runs([exp_id], filter_string=f"tags.`{KIND_TAG}` = 'cell'",
                                   max_results=_MAX_ENTITIES_PER_BATCH)
        values: dict[str, set[str]] = {}
        for run in cells:
            for key, value in run.data.params.items():
                if key.startswith("trick."):
                    values.setdefault(key, set()).add(value)
        toggles = sorted(k for k, v in values.items() if len(v) > 1) or sorted(values)
        client.set_experiment_tag(exp_id, RUNS_VIEW_TAG, json.dumps(runs_view_state(toggles)))

    def _guard(self, what: str, fn: Callable[[], _T], default: _T) -> _T:
        if time.monotonic() < self._paused_until:
            _log.debug("MLflow %s skipped: logging paused after an earlier failure", what)
            return default
        delay = 0.2
        for attempt in range(6):
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001 - a logging failure must never fail a cell
                # SQLite allows one writer: concurrent cells may briefly see "database is locked".
                if "database is locked" in str(exc) and attempt < 5:
                    time.sleep(delay)
                    delay *= 2
                    continue
                self._fail(what, exc)
                return default
        return default  # pragma: no cover - the loop always returns

    def _fail(self, what: str, exc: BaseException) -> None:
        self.failures += 1
        detail = redact_url(f"{type(exc).__name__}: {exc}").strip().splitlines()
        self.last_error = f"{what}: {detail[0] if detail else type(exc).__name__}"
        if self._connectivity_problem(exc):
            self._paused_until = time.monotonic() + self.cooldown
        message = (
            f"MLflow logging to {redact_url(self.tracking_uri)} failed in {self.last_error[:500]}. "
            "Results are still saved in the results database; the MLflow mirror may be incomplete "
            "(further MLflow failures are only logged at debug level)."
        )
        if not self._warned:
            self._warned = True
            warnings.warn(message, RuntimeWarning, stacklevel=4)  # the caller of the public method
        else:
            _log.debug(message)

    @staticmethod
    def _connectivity_problem(exc: BaseException) -> bool:
        text = str(exc)
        needles = ("Connection refused", "Max retries exceeded", "Failed to establish", "timed out",
                   "unable to open database", "could not connect", "Name or service not known")
        return isinstance(exc, (ConnectionError, TimeoutError)) or any(n in text for n in needles)

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                # Keep a dead server from costing minutes per call (MLflow's default is 7 retries with
                # exponential backoff); users can still set these variables themselves.
                os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
                os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
                os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
                for name in ("mlflow.store.db.utils", "alembic.runtime.migration"):
                    logger = logging.getLogger(name)
                    if logger.level == logging.NOTSET:
                        logger.setLevel(logging.WARNING)  # "Creating initial MLflow database tables..."
                sqlite_file = self._sqlite_file()
                if sqlite_file is not None:
                    sqlite_file.parent.mkdir(parents=True, exist_ok=True)
                from mlflow import MlflowClient

                self._client = MlflowClient(tracking_uri=self.tracking_uri)
            return self._client

    def _sqlite_file(self) -> Path | None:
        if not self.tracking_uri.startswith("sqlite:///"):
            return None
        path = self.tracking_uri[len("sqlite:///"):].split("?", 1)[0]
        return None if path in ("", ":memory:") else Path(path)

    def _experiment_artifact_location(self) -> str | None:
        root = self.artifact_location
        if root is None:
            db = self._sqlite_file()
            if db is None:
                return None  # a tracking server or a database decides (server's --default-artifact-root)
            root = str(db.parent.resolve() / ARTIFACT_DIR)
        local = _local_path(root)
        if local is not None:
            return (local.expanduser().resolve() / _slug(self.experiment_name)).as_uri()
        return root.rstrip("/") + "/" + _slug(self.experiment_name)

    def _get_experiment_id(self) -> str:
        with self._lock:
            if self._experiment_id is not None:
                return self._experiment_id
            client = self._get_client()
            exp = client.get_experiment_by_name(self.experiment_name)
            if exp is None:
                try:
                    exp_id = client.create_experiment(
                        self.experiment_name, artifact_location=self._experiment_artifact_location(),
                        tags={"bench.spec": self.experiment_name, EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
                except Exception:
                    # Another process created it between our look-up and create: use theirs.
                    exp = client.get_experiment_by_name(self.experiment_name)
                    if exp is None:
                        raise
                    exp_id = exp.experiment_id
            else:
                exp_id = exp.experiment_id
                if exp.lifecycle_stage == "deleted":
                    client.restore_experiment(exp_id)
                if EXPERIMENT_KIND_TAG not in exp.tags:  # an experiment made before the tag was set
                    client.set_experiment_tag(exp_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
            self._experiment_id = str(exp_id)
            return self._experiment_id

    def _base_tags(self) -> dict[str, Any]:
        try:
            user = getpass.getuser()
        except Exception:  # noqa: BLE001 - no user name in some containers
            user = "unknown"
        return {"mlflow.user": user, "mlflow.source.type": "LOCAL", "mlflow.source.name": "bench"}

    @staticmethod
    def _tag_values(tags: Mapping[str, Any]) -> dict[str, str]:
        return {_clean_key(k): redact_url(v)[:_MAX_TAG_VALUE] for k, v in tags.items() if v is not None}

    def _log_batch(
        self,
        run_id: str,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        curve: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        from mlflow.entities import Metric, Param

        now = _now_ms()
        param_list = [Param(_clean_key(k), _param_text(v)) for k, v in _flatten(params or {})]
        metric_list = []
        for key, value in (metrics or {}).items():
            number = _number(value)
            if number is not None:
                metric_list.append(Metric(_clean_key(key), number, now, 0))
        metric_list += [Metric(k, v, ts, step) for k, v, ts, step in _curve_points(curve, now)]
        client = self._get_client()
        while param_list or metric_list:
            p, param_list = param_list[:_MAX_PARAMS_TAGS_PER_BATCH], param_list[_MAX_PARAMS_TAGS_PER_BATCH:]
            room = _MAX_ENTITIES_PER_BATCH - len(p)
            m, metric_list = metric_list[:room], metric_list[room:]
            client.log_batch(run_id, metrics=m, params=p, synchronous=True)

    def _stage(self, folder: Path, items: Mapping[str, str | os.PathLike[str]]) -> int:
        """Copy files/folders into ``folder`` under their artifact names; a missing one is a failure."""
        staged = 0
        missing = []
        for name, src in items.items():
            src_path = Path(src)
            parts = [part for part in Path(str(name)).parts if part not in ("/", "", ".", "..")]
            dest = folder.joinpath(*parts) if parts else folder / src_path.name  # never outside `folder`
            dest.parent.mkdir(parents=True, exist_ok=True)
            if src_path.is_dir():
                shutil.copytree(src_path, dest, dirs_exist_ok=True)
            elif src_path.is_file():
                shutil.copy2(src_path, dest)
            else:
                missing.append(str(src_path))
                continue
            staged += 1
        if missing:
            self._fail("artifacts", FileNotFoundError(f"artifact file(s) not found: {', '.join(missing)}"))
        return staged

    def _log_cell_artifacts(
        self,
        run_id: str,
        title: str,
        curve: Sequence[Mapping[str, Any]],
        artifacts: Mapping[str, str | os.PathLike[str]],
        config: Mapping[str, Any] | None,
        case_rows: Sequence[Mapping[str, Any]] | None,
    ) -> None:
        with tempfile.TemporaryDirectory(prefix="bench-mlflow-") as tmp:
            folder = Path(tmp)
            self._stage(folder, artifacts)
            names = {str(n) for n in artifacts}
            if config is not None and "config.json" not in names:
                text = redact_url(json.dumps(config, indent=2, sort_keys=True, default=str))
                (folder / "config.json").write_text(text + "\n", encoding="utf-8")
            if case_rows and "case_metrics.csv" not in names:
                _write_csv(folder / "case_metrics.csv", case_rows)
            if curve and not any(n.lower().endswith(".png") for n in names):
                try:
                    plot_learning_curve(curve, folder / "learning_curve.png", title=title)
                except Exception as exc:  # noqa: BLE001 - a plot must not stop the other artifacts
                    self._fail("learning-curve plot", exc)
            if any(folder.iterdir()):
                self._get_client().log_artifacts(run_id, tmp)


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
    values = [_number(metrics.get(k)) for k in DICE_REGIONS]
    if "dice_mean" not in out and all(v is not None for v in values):
        out["dice_mean"] = sum(v for v in values if v is not None) / len(values)
    return out


def _curve_points(curve: Sequence[Mapping[str, Any]], now_ms: int) -> list[tuple[str, float, int, int]]:
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
        stamp = _number(row.get("time"))
        ts = int(stamp * 1000) if stamp is not None else now_ms
        for key, value in row.items():
            if key in (step_key, "time"):
                continue
            number = _number(value)
            if number is not None:
                out.append((_clean_key(key), number, ts, step))
    return out


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def plot_learning_curve(curve: Sequence[Mapping[str, Any]], out: Path, title: str = "") -> Path:
    """Draw training loss and validation Dice per region against the step into a PNG (matplotlib Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    points = _curve_points(curve, 0)
    series: dict[str, tuple[list[int], list[float]]] = {}
    for key, value, _ts, step in points:
        xs, ys = series.setdefault(key, ([], []))
        xs.append(step)
        ys.append(value)
    step_name = "iteration" if all(r.get("iteration") is not None for r in curve) else "epoch"
    fig = Figure(figsize=(9, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax_loss, ax_dice = fig.subplots(1, 2)
    for key in sorted(series):
        xs, ys = series[key]
        if key.startswith("train_loss") or key.endswith("loss"):
            ax_loss.plot(xs, ys, label=key)
        elif key.startswith("val_"):
            ax_dice.plot(xs, ys, marker="o", markersize=3, label=key[4:])
    ax_loss.set(title="training loss", xlabel=step_name)
    ax_dice.set(title="validation", xlabel=step_name, ylim=(0, 1))
    for ax in (ax_loss, ax_dice):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    # Fixed margins: tight_layout would draw the figure twice (0.4 s instead of 0.25 s of CPU per cell).
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.14, top=0.84, wspace=0.2)
    fig.savefig(out)
    return out
