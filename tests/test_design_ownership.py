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
        if isinstance(node, ast.MatchValue) and isinstance(node.value, ast.Constant) and node.value.value in names:
            hits.append(node.lineno)  # match design: case "full": ...
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
                 'e = run(design="full")\nmatch d:\n    case "forward":\n        pass\n')
    assert _name_comparisons(f, set(list_designs())) == [1, 2, 3, 4, 7]


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


def test_a_new_design_is_one_class(monkeypatch, tmp_path):
    """A design registered from outside bench's files is parsed, checked, planned and described with no
    edit elsewhere: every rule the runner and ``bench plan`` need comes from its class."""
    import bench.design as designs
    from bench.design import CellRequest, Design, RowRequest
    from bench.errors import SpecError
    from bench.runner.planning import plan_summary
    from bench.runner.spec import parse_spec

    class EachAlone(Design):
        """The baseline and each factor alone on top of the fixed tricks."""

        name = "each_alone"
        keys = {"alone_seeds": "each_alone design: seeds of the single-trick rows"}
        baseline_row = True

        @classmethod
        def settings(cls, source, raw, factors):
            seeds = raw.get("alone_seeds", 1)
            if not isinstance(seeds, int) or seeds < 1:
                raise SpecError(f"{source}: alone_seeds = {seeds!r} must be an integer >= 1")
            return {}

        def initial(self):
            s = self.spec
            rows = [RowRequest(s.baseline_label, tuple(s.fixed), dict(s.params))]
            rows += [RowRequest(s.row_label([f]), (*s.fixed, f), dict(s.params)) for f in s.factors]
            return [CellRequest(r, fold, seed) for r in rows for fold in s.folds for seed in s.seeds]

    monkeypatch.setitem(designs._REGISTRY, EachAlone.name, EachAlone)
    text = 'name = "alone"\ndesign = "each_alone"\nalone_seeds = 2\nfactors = ["warmup", "focal_loss"]\n'
    spec = parse_spec(text, "alone.toml", check_data=False)
    d = plan_summary(spec)
    assert [c["label"] for c in d["configurations"]] == ["BL", "BL+warmup", "BL+focal_loss"]
    assert d["cells"] == 3 and d["rows"] == "3 configurations" and EachAlone.baseline(spec) == "BL"
    with pytest.raises(SpecError, match=r"^alone.toml: design = 'each_alone' needs a non-empty factors list$"):
        parse_spec('name = "alone"\ndesign = "each_alone"\n', "alone.toml", check_data=False)
    with pytest.raises(SpecError, match=r"alone_seeds is only used by design = 'each_alone' \(this spec has "
                                        r"design = 'ladder'\)"):
        parse_spec('name = "l"\ndesign = "ladder"\nalone_seeds = 2\nfactors = ["warmup"]\n', "l.toml",
                   check_data=False)


@pytest.mark.parametrize("name", ["full", "ladder", "list", "optuna", "fractional", "forward"])
def test_stored_design_names_map_to_their_class(name):
    assert traits(name) is design_class(name)


def test_an_unknown_stored_design_has_no_special_behaviour():
    cls = traits("a design of a later version")
    assert cls.two_level is None and not cls.searches and not cls.stepwise and not cls.confirms


def _import_graph(packages: tuple[str, ...]) -> dict[str, set[str]]:
    """Module -> the modules of ``packages`` it imports anywhere (function-level imports included)."""
    graph: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        mod = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                deps |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
        graph[mod] = deps
    keep = {m for m in graph if m.startswith(packages)}
    return {m: {d for d in graph[m] if d in keep and d != m} for m in keep}


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` (empty when there is none)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str]:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (found := visit(d)):
                return found
        state[m] = 2
        stack.pop()
        return []

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return []


def test_runner_designs_and_spec_model_import_without_cycles():
    graph = _import_graph(("bench.runner", "bench.spec", "bench.design."))
    assert _cycle(graph) == []
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # the check finds one


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other, directly or through others (strongly connected
    components of more than one module), each sorted."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(m: str) -> None:
        order[m] = low[m] = len(order)
        stack.append(m)
        for d in sorted(graph[m]):
            if d not in order:
                visit(d)
                low[m] = min(low[m], low[d])
            elif d in stack:
                low[m] = min(low[m], order[d])
        if low[m] == order[m]:
            group = []
            while (d := stack.pop()) != m:
                group.append(d)
            if group:
                groups.append(sorted([m, *group]))

    for m in sorted(graph):
        if m not in order:
            visit(m)
    return sorted(groups)


def test_no_import_cycles_in_bench():
    # none is left: engine.api <-> engine.train (the checkpoint names, the engine version and TrainingStopped
    # live below both), data.grid <-> data.preprocess (grid reads a SourceGeometry protocol), report.tables <->
    # report.factorial (both read the data model in report/model.py), engine.losses -> recipe -> train -> recipe
    # (the step's and the procedure's types live in engine/step.py, below all three).
    assert _cycles(_import_graph(("bench",))) == []
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]  # the check finds one
