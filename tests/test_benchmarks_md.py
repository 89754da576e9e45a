"""Every figure row of BENCHMARKS.md names a command a reader can run as printed: the script exists, and its
argument parser (or `bench`'s) accepts the flags; a spec file it names exists and parses."""

from __future__ import annotations

import argparse
import re
import runpy
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMAND_START = ("python", "python3", "bench", "cd", "pip", "time")


def _table_rows(text: str) -> list[tuple[int, str]]:
    """``(line number, command cell)`` of every row of every table that has a ``command`` column; a cell
    ``same`` takes the command of the row above."""
    out: list[tuple[int, str]] = []
    lines = text.splitlines()
    col = None
    previous = ""
    for n, line in enumerate(lines, 1):
        if not line.startswith("|"):
            col = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if col is None:
            lowered = [c.lower() for c in cells]
            col = lowered.index("command") if "command" in lowered else -1
            continue
        if col < 0 or set(line) <= set("|-: "):
            continue
        # a cell may hold a pipe inside backticks: take the text from the command column to the end
        cell = " | ".join(cells[col:])
        if cell == "same":
            cell = previous
        previous = cell
        out.append((n, cell))
    return out


def _commands(cell: str) -> list[str]:
    found = [c for c in re.findall(r"`([^`]+)`", cell) if c.split() and c.split()[0].split("=")[0] in COMMAND_START
             or re.match(r"^[A-Z_]+=\S+ ", c)]
    return found


ROWS = _table_rows((ROOT / "BENCHMARKS.md").read_text())


def test_benchmarks_md_has_figure_rows_with_commands() -> None:
    assert len(ROWS) >= 25


@pytest.mark.parametrize("line,cell", ROWS, ids=[f"line{n}" for n, _ in ROWS])
def test_every_figure_row_names_a_command(line: int, cell: str) -> None:
    assert _commands(cell), f"BENCHMARKS.md line {line}: no command in the command column: {cell!r}"
    assert "..." not in " ".join(_commands(cell)), f"BENCHMARKS.md line {line}: elided arguments"


class _Parsed(Exception):
    pass


def _check_script(script: Path, args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the script's own ``main`` until its parser has accepted ``args`` (nothing after that runs)."""
    real = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):  # type: ignore[no-untyped-def]
        real(self, args, namespace)
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    monkeypatch.setattr(sys, "argv", [str(script), *args])
    monkeypatch.syspath_prepend(str(script.parent))
    with pytest.raises(_Parsed):
        try:
            runpy.run_path(str(script), run_name="__main__")
        except SystemExit as exc:  # argparse rejected the flags
            raise AssertionError(f"{script.name} {' '.join(args)}: the parser exits with {exc.code}") from None


def _check_bench(args: list[str]) -> None:
    from bench.cli import build_parser

    try:
        ns = build_parser().parse_args(args)
    except SystemExit as exc:
        raise AssertionError(f"bench {' '.join(args)}: the parser exits with {exc.code}") from None
    spec = getattr(ns, "spec", None)
    if spec and str(spec).endswith(".toml"):
        from bench.errors import SpecError
        from bench.runner.spec import load_spec

        assert (ROOT / spec).is_file(), f"bench {' '.join(args)}: {spec} does not exist"
        if "-bad-" in Path(spec).name:  # a spec whose figure is the time to refuse it
            with pytest.raises(SpecError):
                load_spec(ROOT / spec, check_data=False)
        else:
            load_spec(ROOT / spec, check_data=False)


COMMANDS = sorted({c for _, cell in ROWS for c in _commands(cell)})


@pytest.mark.parametrize("command", COMMANDS)
def test_command_runs_as_printed(command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for part in command.split("&&"):
        words = shlex.split(part)
        while words and (re.match(r"^[A-Z_]+=", words[0]) or words[0] == "time"):
            words = words[1:]  # environment assignments, the shell's `time`
        if not words or words[0] in ("cd", "pip"):
            continue
        if words[0] in ("python", "python3"):
            script = ROOT / words[1]
            assert script.is_file(), f"{command}: {words[1]} does not exist"
            _check_script(script, words[2:], monkeypatch)
        else:
            assert words[0] == "bench", f"{command}: {words[0]!r} is not a command this test knows"
            _check_bench(words[1:])
