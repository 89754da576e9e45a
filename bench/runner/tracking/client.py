"""The MLflow client of the mirror (:class:`Tracker`): one experiment per spec, a parent run per launch of
``bench run``, a child run per cell, laid out as :mod:`bench.runner.tracking.layout` says.

MLflow is a window for people to browse and compare; the results database stays the source of truth. So
nothing here may fail a cell: every call to MLflow is guarded, the first failure is reported once with
``warnings.warn`` (and the tracking URI with any password hidden), later ones go to the debug log, and the
methods return ``""``/``False`` instead of raising. After a failure the tracker pauses for ``cooldown``
seconds, so a dead tracking server costs one timeout, not one per cell.

Runs are addressed by explicit ids through :class:`mlflow.MlflowClient` (never the fluent active-run API),
so several threads or processes can log cells of the same parent at once. ``import mlflow`` costs more than
a second: it happens lazily, on the first call that talks to MLflow.
"""

from __future__ import annotations

import getpass
import json
import logging
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

from bench.redact import redact_url
from bench.runner.tracking.layout import (
    ARTIFACT_DIR,
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    KIND_TAG,
    LABEL_TAG,
    MAX_ENTITIES_PER_BATCH,
    MAX_PARAMS_TAGS_PER_BATCH,
    MAX_TAG_VALUE,
    NOTHING_RUN_SUFFIX,
    RUN_STATUSES,
    RUNS_VIEW_TAG,
    cell_run_name,
    clean_key,
    curve_points,
    finite_number,
    flatten,
    now_ms,
    param_text,
    runs_view_state,
    with_dice_mean,
    write_csv,
)

__all__ = ["Tracker"]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")


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
                                          max_results=MAX_ENTITIES_PER_BATCH)
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
                                   max_results=MAX_ENTITIES_PER_BATCH)
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
        return {clean_key(k): redact_url(v)[:MAX_TAG_VALUE] for k, v in tags.items() if v is not None}

    def _log_batch(
        self,
        run_id: str,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        curve: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        from mlflow.entities import Metric, Param

        now = now_ms()
        param_list = [Param(clean_key(k), param_text(v)) for k, v in flatten(params or {})]
        metric_list = []
        for key, value in (metrics or {}).items():
            number = finite_number(value)
            if number is not None:
                metric_list.append(Metric(clean_key(key), number, now, 0))
        metric_list += [Metric(k, v, ts, step) for k, v, ts, step in curve_points(curve, now)]
        client = self._get_client()
        while param_list or metric_list:
            p, param_list = param_list[:MAX_PARAMS_TAGS_PER_BATCH], param_list[MAX_PARAMS_TAGS_PER_BATCH:]
            room = MAX_ENTITIES_PER_BATCH - len(p)
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
                write_csv(folder / "case_metrics.csv", case_rows)
            if curve and not any(n.lower().endswith(".png") for n in names):
                try:
                    from bench.report.plots import plot_learning_curve

                    series: dict[str, tuple[list[int], list[float]]] = {}
                    for key, value, _ts, step in curve_points(curve, 0):
                        series.setdefault(key, ([], []))[0].append(step)
                        series[key][1].append(value)
                    step_name = "iteration" if all(r.get("iteration") is not None for r in curve) else "epoch"
                    plot_learning_curve(series, folder / "learning_curve.png", step_name=step_name, title=title)
                except Exception as exc:  # noqa: BLE001 - a plot must not stop the other artifacts
                    self._fail("learning-curve plot", exc)
            if any(folder.iterdir()):
                self._get_client().log_artifacts(run_id, tmp)

