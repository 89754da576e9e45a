"""The command line as a whole: help is fast, lists every command, and loads no heavy package."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from bench.cli import build_parser, main

EXPECTED_COMMANDS = {"run", "plan", "worker", "status", "cancel", "ui", "data", "train", "predict", "evaluate",
                     "tricks", "report"}


def _commands() -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return set(sub.choices)  # type: ignore[attr-defined]


def test_help_lists_every_command_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert EXPECTED_COMMANDS <= _commands()
    for name in EXPECTED_COMMANDS:
        line = next((ln for ln in out.splitlines() if ln.strip().startswith(name + " ")), None)
        assert line is not None and len(line.split(None, 1)) == 2, f"`{name}` has no one-line help"


def test_help_is_fast_and_imports_nothing_heavy() -> None:
    code = (
        "import sys, time; t=time.perf_counter(); from bench.cli import build_parser; build_parser(); "
        "heavy=[m for m in ('torch','mlflow','optuna','sqlalchemy','pandas','matplotlib','scipy') if m in sys.modules]; "
        "print(heavy, time.perf_counter()-t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    heavy, seconds = out.rsplit(" ", 1)
    assert heavy == "[]", f"`bench --help` imports {heavy}"
    assert float(seconds) < 1.0
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bench", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "run" in proc.stdout
    assert time.perf_counter() - t < 3.0  # interpreter start included; the parser itself is timed above


def test_a_missing_command_module_is_an_error_not_a_silently_missing_command(monkeypatch) -> None:
    import bench.cli as cli

    monkeypatch.setattr(cli, "_COMMAND_MODULES", (*cli._COMMAND_MODULES, "no_such_module"))
    with pytest.raises(ModuleNotFoundError, match="bench.cli.no_such_module"):
        build_parser()


def test_unknown_command_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("ci", ["", "true"])
def test_postgresql_tests_skip_only_outside_ci(tmp_path, ci: str) -> None:
    """Without psycopg a PostgreSQL test is skipped on a laptop, and fails (never skips) when CI is set."""
    import os
    from pathlib import Path

    stub = tmp_path / "stub" / "psycopg"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ModuleNotFoundError('psycopg hidden by the test', name='psycopg')\n")
    env = {**os.environ, "PYTHONPATH": str(stub.parent), "CI": ci}
    root = Path(__file__).resolve().parents[1]
    test = "tests/test_report_tables.py::test_report_from_postgresql_equals_sqlite"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", test], cwd=root,
                          env=env, capture_output=True, text=True, timeout=300)
    if ci:
        assert proc.returncode != 0 and "skipped" not in proc.stdout.splitlines()[-1], proc.stdout[-2000:]
        assert "psycopg hidden by the test" in proc.stdout
    else:
        assert proc.returncode == 0 and "1 skipped" in proc.stdout, proc.stdout[-2000:]
