"""Shared fixtures: a tiny synthetic BraTS-2019 dataset, its prepared cache, and a CLI runner.

- ``synth_raw``: session-scoped folder with 10 labeled cases of 48x48x32 (brats2019 layout, seed 0) and 2
  unlabeled cases in ``unlabeled/`` (MSD 4D layout). Treat it as read-only.
- ``prepared``: session-scoped ``PreparedDataset`` of ``synth_raw`` (source grid, min-max, 3 folds, test
  fraction 0.2: 2 test cases, folds of 3/3/2 validation cases) in a temporary cache.
- ``run_cli``: ``run_cli(*argv) -> CliResult(code, out, err)`` runs ``bench.cli.main`` in-process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

SYNTH_SHAPE = (48, 48, 32)
SYNTH_CASES = 10
SYNTH_UNLABELED = 2


@pytest.fixture(scope="session")
def synth_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic BraTS-2019 dataset folder (read-only for tests)."""
    from bench.data.synth import synthesize

    root = tmp_path_factory.mktemp("synth_raw") / "brats19"
    synthesize(root, cases=SYNTH_CASES, unlabeled=SYNTH_UNLABELED, shape=SYNTH_SHAPE, fmt="brats2019", seed=0)
    return root


@pytest.fixture(scope="session")
def prepared(synth_raw: Path, tmp_path_factory: pytest.TempPathFactory):
    """The PreparedDataset of ``synth_raw`` (3 folds, test fraction 0.2) in a temporary cache."""
    from bench.data.prepare import prepare

    cache = tmp_path_factory.mktemp("cache")
    return prepare(synth_raw, cache, folds=3, test_fraction=0.2, progress=False)


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run ``bench <argv>`` in-process; returns the exit code and captured stdout/stderr."""
    from bench.cli import main

    def run(*argv: str) -> CliResult:
        capsys.readouterr()
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse errors and --help
            code = int(exc.code or 0) if not isinstance(exc.code, str) else 2
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def pg_url():
    """A fresh PostgreSQL database at 127.0.0.1:5432 for one test, dropped afterwards.

    Skipped with the reason only when the environment variable CI is unset and psycopg or the server is
    missing; in CI a missing driver or server fails the test.
    """
    import os
    import uuid

    if os.environ.get("CI"):  # in CI the PostgreSQL tests run or fail, never skip
        import psycopg
    else:
        psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True, connect_timeout=3)
    except Exception as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no PostgreSQL server at 127.0.0.1:5432 ({exc})")
    name = f"bench_test_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        from bench.store.session import dispose_engines

        dispose_engines()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
