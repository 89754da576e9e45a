""".ci/run: the PostgreSQL start-up block fails when the server never answers (it used to go on, and the
database tests then failed far from the cause or, before the CI check, skipped)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _postgres_block() -> str:
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# PostgreSQL"))
    end = next(i for i in range(start, len(lines)) if lines[i] == "fi")
    return "\n".join(["set -euo pipefail", *lines[start:end + 1], "echo after-postgres"])


def _run(tmp_path: Path, answers: bool) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    state = tmp_path / "started"
    # pg_isready answers only after pg_ctlcluster ran (when the fake server answers at all); sleep is instant
    (bin_dir / "pg_isready").write_text(f"#!/bin/sh\n[ {'-e ' + str(state) if answers else '1 = 0'} ]\n")
    (bin_dir / "pg_ctlcluster").write_text(f"#!/bin/sh\ntouch {state}\n")
    (bin_dir / "sleep").write_text("#!/bin/sh\nexit 0\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return subprocess.run(["bash", "-c", _postgres_block()], env=env, capture_output=True, text=True, timeout=60)


def test_ci_fails_when_postgresql_never_answers(tmp_path: Path) -> None:
    r = _run(tmp_path, answers=False)
    assert r.returncode != 0 and "after-postgres" not in r.stdout
    assert "PostgreSQL did not answer" in r.stderr


def test_ci_goes_on_when_postgresql_starts(tmp_path: Path) -> None:
    r = _run(tmp_path, answers=True)
    assert r.returncode == 0 and "after-postgres" in r.stdout, r.stderr
