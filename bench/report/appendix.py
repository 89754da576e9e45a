"""The reproducibility appendix: spec, git commits, package versions, devices, seeds, per-cell timings and
the CPU/GPU hours each trick cost, gathered from the results database."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench.report.tables import ReportData, _toggles

__all__ = ["Appendix", "build_appendix", "is_gpu"]

_GPU_PREFIXES = ("cuda", "gpu", "mps", "rocm", "xpu")


def is_gpu(device: Any) -> bool:
    return isinstance(device, str) and device.strip().lower().startswith(_GPU_PREFIXES)


def _packages(value: Any) -> dict[str, str]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return {}
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return _packages(" ".join(map(str, value)))
    s = str(value).strip()
    if s.startswith("{"):
        try:
            return _packages(json.loads(s))
        except json.JSONDecodeError:
            pass
    out = {}
    for tok in re.split(r"[,\s;]+", s):
        if "==" in tok:
            k, v = tok.split("==", 1)
            out[k] = v
        elif "=" in tok:
            k, v = tok.split("=", 1)
            out[k] = v
    return out




@dataclass
class Appendix:
    experiment: str
    spec: str
    design: str
    commits: list[str]
    packages: dict[str, str]
    devices: dict[str, int]
    seeds: list[int]
    folds: list[int]
    states: dict[str, int]
    timings: pd.DataFrame  # label, fold, seed, state, device, train_seconds, eval_seconds
    trick_cost: pd.DataFrame  # trick, cells, cpu_hours, gpu_hours, mean_seconds_on, mean_seconds_off, extra_seconds
    cpu_hours: float
    gpu_hours: float
    n_trainings: int
    trick_cost_caption: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def summary_sentence(self) -> str:
        commits = ", ".join(c[:12] for c in self.commits) or "not recorded"
        devices = ", ".join(f"{d} ({n} cells)" for d, n in self.devices.items()) or "not recorded"
        states = ", ".join(f"{n} {s}" for s, n in self.states.items())
        return (
            f"Experiment {self.experiment} (design: {self.design}); cells: {states}; "
            f"{self.n_trainings} distinct trainings. Git commit(s): {commits}. Devices: {devices}. "
            f"Folds: {', '.join(map(str, self.folds)) or '-'}; seeds: {', '.join(map(str, self.seeds)) or '-'}. "
            f"Compute: {self.cpu_hours:.3f} CPU hours and {self.gpu_hours:.3f} GPU hours "
            "(training time of a training shared by several cells counted once)."
        )


def build_appendix(data: ReportData) -> Appendix:
    cells = data.cells.copy() if data.cells is not None else pd.DataFrame()
    for col, default in (
        ("train_seconds", np.nan), ("eval_seconds", np.nan), ("device", None), ("state", None),
        ("git_commit", None), ("packages", None), ("training_key", None), ("fold", 0), ("seed", 0),
        ("label", ""), ("configuration_id", None), ("position", 0),
    ):
        if col not in cells:
            cells[col] = default
    cells = cells.sort_values(["position", "fold", "seed"], kind="mergesort").reset_index(drop=True)
    packages: dict[str, set[str]] = {}
    for v in cells["packages"]:
        for k, ver in _packages(v).items():
            packages.setdefault(k, set()).add(ver)
    train = pd.to_numeric(cells["train_seconds"], errors="coerce").fillna(0.0).to_numpy(dtype=float)
    evals = pd.to_numeric(cells["eval_seconds"], errors="coerce").fillna(0.0).to_numpy(dtype=float)
    # A training shared by several cells (inference-only tricks) is paid once: keep it on its first cell.
    charged = train.copy()
    keys = cells["training_key"]
    seen: dict[str, int] = {}
    for i, k in enumerate(keys):
        if k is None or (isinstance(k, float) and math.isnan(k)) or k == "":
            continue
        if k in seen:
            j = seen[k]
            charged[j] = max(charged[j], charged[i])
            charged[i] = 0.0
        else:
            seen[k] = i
    cost = charged + evals
    gpu = np.array([is_gpu(d) for d in cells["device"]], dtype=bool)
    per_cell = train + evals

    conf = data.configurations
    tog_by_conf = (
        {cid: _toggles(t) for cid, t in zip(conf["configuration_id"], conf["toggles"])}
        if conf is not None and "toggles" in conf
        else {}
    )
    factors = [str(f) for f in (data.record.get("factors") or [])] or sorted(
        {k for t in tog_by_conf.values() for k in t}
    )
    rows = []
    for f in factors:
        on = np.array([tog_by_conf.get(c, {}).get(f, 0) == 1 for c in cells["configuration_id"]], dtype=bool)
        if not on.any():
            continue
        rows.append(
            {
                "trick": f,
                "cells": int(on.sum()),
                "cpu_hours": float(cost[on & ~gpu].sum() / 3600),
                "gpu_hours": float(cost[on & gpu].sum() / 3600),
                "mean_seconds_on": float(per_cell[on].mean()),
                "mean_seconds_off": float(per_cell[~on].mean()) if (~on).any() else math.nan,
            }
        )
    trick_cost = pd.DataFrame(
        rows, columns=["trick", "cells", "cpu_hours", "gpu_hours", "mean_seconds_on", "mean_seconds_off"]
    )
    trick_cost["extra_seconds"] = trick_cost["mean_seconds_on"] - trick_cost["mean_seconds_off"]
    cpu_h, gpu_h = float(cost[~gpu].sum() / 3600), float(cost[gpu].sum() / 3600)

    def _uniq(col: str) -> list[Any]:
        vals = [v for v in cells[col] if v is not None and not (isinstance(v, float) and math.isnan(v))]
        return sorted(set(vals), key=str)

    devices = cells["device"].fillna("unknown").astype(str).value_counts()
    states = cells["state"].fillna("unknown").astype(str).value_counts()
    timings = cells[["label", "fold", "seed", "state", "device", "train_seconds", "eval_seconds"]].copy()
    timings["train_seconds"] = pd.to_numeric(timings["train_seconds"], errors="coerce")
    timings["eval_seconds"] = pd.to_numeric(timings["eval_seconds"], errors="coerce")
    return Appendix(
        experiment=data.experiment,
        spec=str(data.record.get("spec") or ""),
        design=data.design,
        commits=[str(c) for c in _uniq("git_commit")],
        packages={k: ", ".join(sorted(v)) for k, v in sorted(packages.items())},
        devices={str(k): int(v) for k, v in devices.items()},
        seeds=[int(s) for s in _uniq("seed")],
        folds=[int(s) for s in _uniq("fold")],
        states={str(k): int(v) for k, v in states.items()},
        timings=timings,
        trick_cost=trick_cost,
        cpu_hours=cpu_h,
        gpu_hours=gpu_h,
        n_trainings=len(seen) + int(sum(1 for k in keys if k is None or (isinstance(k, float) and math.isnan(k)) or k == "")),
        trick_cost_caption=(
            "Compute each trick cost: hours of the cells with the trick on (a training shared by several cells "
            "counted once; training plus evaluation), split into CPU and GPU devices, and the mean wall-clock "
            f"seconds per cell with and without the trick. All cells: {cpu_h:.3f} CPU h, {gpu_h:.3f} GPU h."
        ),
    )
