"""Where an experiment's files live and how its dataset gets there: the workspace paths, the (synthetic)
dataset generated and prepared once per workspace, and the provenance every cell records (packages, commit).

Several workers on several machines share one workspace folder (a shared filesystem, the same path
everywhere): the synthetic dataset is generated under a file lock, so only one of them writes it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.runner.spec import Spec

__all__ = ["Workspace", "ensure_dataset", "test_cases", "package_versions", "git_commit", "engine_of"]


@dataclass(frozen=True)
class Workspace:
    """Where the stores live: ``<folder>/.bench/`` (results.db, optuna.journal, trainings/, cache/, data/,
    mlflow.db, mlartifacts/, workers/, slurm/)."""

    folder: Path

    @property
    def root(self) -> Path:
        return self.folder / ".bench"

    @property
    def results_url(self) -> str:
        return f"sqlite:///{self.root / 'results.db'}"

    @property
    def trainings(self) -> Path:
        return self.root / "trainings"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def status_dir(self) -> Path:
        return self.root / "workers"

    @property
    def slurm_dir(self) -> Path:
        """Job scripts and the output files of Slurm tasks."""
        return self.root / "slurm"


def package_versions() -> dict[str, str]:
    """Versions of the packages that decide a cell's numbers (recorded with every cell)."""
    from importlib import metadata

    out = {}
    for name in ("bench", "torch", "numpy", "scipy", "nibabel", "optuna", "mlflow", "sqlalchemy", "pandas"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_commit() -> str | None:
    """The commit of the bench checkout (``-dirty`` with local changes); None outside a git checkout."""
    import subprocess

    here = Path(__file__).resolve().parents[2]
    try:
        res = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if res.returncode != 0:
        return None
    commit = res.stdout.strip()
    dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=5)
    return commit + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


_DATASETS: dict[tuple[str, ...], Any] = {}


def _synthetic_folder(spec: Spec, ws: Workspace) -> Path:
    from bench.data.synth import PHANTOM_VERSION, synthesize

    opts: dict[str, Any] = {"cases": 12, "unlabeled": 0, "shape": [48, 48, 48], "seed": 0, "format": "brats2019"}
    opts.update(spec.data.synthetic)
    tag = json.dumps({**opts, "generator": PHANTOM_VERSION}, sort_keys=True)
    folder = ws.data / f"synthetic-{hashlib.sha256(tag.encode()).hexdigest()[:10]}"
    done = folder / ".complete"
    if done.exists():
        return folder
    ws.data.mkdir(parents=True, exist_ok=True)
    lock = ws.data / (folder.name + ".lock")
    import fcntl

    with open(lock, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        if not done.exists():
            import shutil
            import tempfile

            tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=ws.data))
            synthesize(tmp, cases=int(opts["cases"]), unlabeled=int(opts["unlabeled"]), shape=tuple(opts["shape"]),
                       fmt=str(opts["format"]), seed=int(opts["seed"]))
            (tmp / ".complete").write_text(tag)
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(tmp, folder)
    return folder


def engine_of(spec: Spec) -> tuple[Any, dict[str, Any]]:
    """The spec's engine (``[engine] name``, native by default) and its validated ``[engine]`` options."""
    from bench.engines import get_engine

    es = getattr(spec, "engine", None)
    name = getattr(es, "name", None) or "native"
    return get_engine(name), dict(getattr(es, "options", None) or {})


def ensure_dataset(spec: Spec, ws: Workspace, *, progress: bool = False) -> Any:
    """Generate (synthetic) and prepare the spec's dataset in the workspace through the spec's engine; cached
    per process."""
    eng, options = engine_of(spec)
    source = _synthetic_folder(spec, ws) if spec.data.is_synthetic else Path(spec.data.path).expanduser()
    key = (eng.name, str(source), str(ws.root), json.dumps(dataclasses.asdict(spec.data), sort_keys=True, default=str),
           json.dumps(options, sort_keys=True, default=str))
    if key not in _DATASETS:
        _DATASETS[key] = eng.prepare(spec.data, source, ws.root, options=options, progress=progress)
    return _DATASETS[key]


def test_cases(spec: Spec, ds: Any) -> list[str]:
    """The test case ids a cell evaluates (the first ``data.test_cases`` of the test split when set)."""
    ids = list(ds.test_ids())
    return ids[: spec.data.test_cases] if spec.data.test_cases else ids
