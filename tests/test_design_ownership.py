"""Designs own their behaviour: no module outside bench/design compares a design's name, and the spec model
imports nothing from the runner or the designs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bench.design import design_class, list_designs, traits

ROOT = Path(__file__).resolve().parents[1] / "bench"


def _name_comparisons(path: Path, names: set[str]) -> list[int]:
    """``file:line`` of every comparison in which a design name appears as a string literal: ``x == "full"``,
    ``"full" != x``, ``x in ("full", ...)`` / ``not in [...]``."""
    hits = []
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        literals = []
        for op in operands:
            if isinstance(op, ast.Constant):
                literals.append(op.value)
            elif isinstance(op, (ast.Tuple, ast.List, ast.Set)):
                literals += [e.value for e in op.elts if isinstance(e, ast.Constant)]
        if any(isinstance(v, str) and v in names for v in literals):
            hits.append(node.lineno)
    return hits


def test_no_design_name_is_compared_outside_bench_design():
    names = set(list_designs())
    assert {"full", "ladder", "optuna"} <= names
    hits = []
    for path in sorted(ROOT.rglob("*.py")):
        if path.is_relative_to(ROOT / "design"):
            continue
        hits += [f"{path.relative_to(ROOT.parent)}:{n}" for n in _name_comparisons(path, names)]
    assert hits == [], "design names compared outside bench/design (use a Design attribute): " + ", ".join(hits)


def test_the_check_finds_a_comparison(tmp_path):
    """The scan itself: each comparison form is found; a name that is only passed along is not."""
    f = tmp_path / "m.py"
    f.write_text('a = spec.design == "optuna"\nb = "full" != d\nc = d in ("x", "ladder")\nd = d not in ["list"]\n'
                 'e = run(design="full")\n')
    assert _name_comparisons(f, set(list_designs())) == [1, 2, 3, 4]


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_spec_model_and_designs_point_down():
    for path in (ROOT / "spec").glob("*.py"):
        up = {m for m in _imports(path) if m.startswith(("bench.runner", "bench.design", "bench.cli", "bench.report"))}
        assert up == set(), f"{path.name} imports {sorted(up)}"
    for path in (ROOT / "design").glob("*.py"):
        up = {m for m in _imports(path) if m.startswith(("bench.runner", "bench.cli", "bench.report"))}
        assert up == set(), f"design/{path.name} imports {sorted(up)}"


@pytest.mark.parametrize("name", ["full", "ladder", "list", "optuna", "fractional", "forward"])
def test_stored_design_names_map_to_their_class(name):
    assert traits(name) is design_class(name)


def test_an_unknown_stored_design_has_no_special_behaviour():
    cls = traits("a design of a later version")
    assert cls.two_level is None and not cls.searches and not cls.stepwise and not cls.confirms
