"""Parameter importances of an Optuna search for the report: fANOVA over the study's finished trials when its
storage is readable, otherwise over the configurations of the results database, with a note saying which."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from bench.design import traits
from bench.redact import redact_url
from bench.report.tables import Analysis, ReportData

__all__ = ["importances"]


def _open_study(storage: Any, experiment: str) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if isinstance(storage, (str, Path)) and "://" not in str(storage):
        from optuna.storages.journal import JournalFileBackend

        if not Path(storage).exists():
            raise FileNotFoundError(f"no Optuna journal at {storage}")
        storage = optuna.storages.JournalStorage(JournalFileBackend(str(storage)))
    elif isinstance(storage, str) and storage.startswith(("postgresql://", "postgres://")):
        storage = "postgresql+psycopg://" + storage.split("://", 1)[1]
    last: Exception | None = None
    for name in (f"bench:{experiment}", experiment):  # the runner's queue names its study bench:<experiment>
        try:
            return optuna.load_study(study_name=name, storage=storage)
        except KeyError as exc:
            last = exc
    raise last or KeyError(experiment)


def _flat_params(toggles: dict[str, int], params: Any) -> dict[str, float]:
    out: dict[str, float] = {f"trick.{k}": float(v) for k, v in toggles.items()}
    if isinstance(params, dict):
        for trick, ps in params.items():
            if isinstance(ps, dict):
                for k, v in ps.items():
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        out[f"{trick}.{k}"] = float(v)
    return out


def _importances_from_results(a: Analysis, data: ReportData) -> pd.DataFrame:
    """fANOVA importances over the configurations of the results DB (objective: mean test Dice)."""
    import optuna
    from optuna.distributions import BaseDistribution, FloatDistribution

    conf = data.configurations.set_index("configuration_id")
    rows = []
    for i, cid in enumerate(a.configuration_ids):
        if a.has_data(i):
            params = conf.loc[cid, "params"] if "params" in conf else {}
            rows.append((_flat_params(a.toggles[i], params), float(a.objective[i])))
    keys = sorted(set.intersection(*(set(p) for p, _ in rows))) if rows else []
    dists: dict[str, BaseDistribution] = {}
    for k in keys:
        vals = [p[k] for p, _ in rows]
        if max(vals) > min(vals):
            dists[k] = FloatDistribution(min(vals), max(vals))
    if len(rows) < 2 or not dists:
        raise ValueError("fewer than two configurations with results or no parameter that varies")
    study = optuna.create_study(direction="maximize")
    study.add_trials([
        optuna.trial.create_trial(params={k: p[k] for k in dists}, distributions=dists, value=v) for p, v in rows
    ])
    imp = optuna.importance.get_param_importances(study)
    return pd.DataFrame({"parameter": list(imp), "importance": [float(v) for v in imp.values()]})


def importances(a: Analysis, data: ReportData, workspace: Path | None, storage: str | None) -> None:
    """Parameter importances of an Optuna search: from its study when the storage is readable, otherwise
    reconstructed from the results database, with a note saying which."""
    if not traits(a.design).searches:
        return
    ws = Path(workspace or ".")
    where = storage or str(ws / ".bench" / "optuna.journal")
    why = ""
    try:
        study = _open_study(where, data.experiment)
        imp = __import__("optuna").importance.get_param_importances(study)
        a.importances = pd.DataFrame({"parameter": list(imp), "importance": [float(v) for v in imp.values()]})
        done = sum(1 for t in study.trials if t.value is not None)
        a.importances_note = f"fANOVA (optuna.importance) over the {done} finished trials of study {study.study_name}"
        return
    except Exception as exc:
        why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    try:
        a.importances = _importances_from_results(a, data)
        a.importances_note = (
            f"the Optuna storage {redact_url(where)} could not be read ({why}); fANOVA over the "
            f"{int(sum(a.has_data(i) for i in range(len(a.labels))))} configurations of the results database "
            "instead, objective = mean test Dice"
        )
    except Exception as exc:
        a.importances = None
        a.importances_note = (
            f"not computed: the Optuna storage {redact_url(where)} could not be read ({why}), and the results "
            f"database gives no usable substitute ({type(exc).__name__}: {exc})"
        )
