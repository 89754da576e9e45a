"""The MLflow mirror: one experiment per spec, a parent run per launch of ``bench run``, a child run per cell.

MLflow is a window for people to browse and compare; the results database stays the source of truth.
:mod:`~bench.runner.tracking.layout` says what the runs hold (params, metrics, tags, files, the runs view);
:mod:`~bench.runner.tracking.client` talks to MLflow (:class:`Tracker`, every call guarded). The per-cell
learning-curve figure is drawn by :func:`bench.report.plots.plot_learning_curve`; passwords are hidden by
:func:`bench.redact.redact_url`.
"""

from bench.redact import redact_url
from bench.runner.tracking.client import Tracker
from bench.runner.tracking.layout import (
    ARTIFACT_DIR,
    DICE_REGIONS,
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    FINAL_METRICS,
    KIND_TAG,
    LABEL_TAG,
    LESION_METRICS,
    MLFLOW_DB,
    NOTHING_RUN_SUFFIX,
    RUN_STATUSES,
    RUNS_VIEW_KEY,
    RUNS_VIEW_TAG,
    STORE_DIR,
    TRICK_PARAM_PREFIX,
    cell_params,
    cell_run_name,
    default_artifact_root,
    default_tracking_uri,
    lesion_means,
    runs_view_state,
    with_dice_mean,
)

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
    "ARTIFACT_DIR",
    "DICE_REGIONS",
    "EXPERIMENT_KIND",
    "EXPERIMENT_KIND_TAG",
    "KIND_TAG",
    "LABEL_TAG",
    "MLFLOW_DB",
    "NOTHING_RUN_SUFFIX",
    "RUNS_VIEW_KEY",
    "RUNS_VIEW_TAG",
    "STORE_DIR",
]
