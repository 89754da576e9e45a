"""The TOML snippets of the documentation are specs the parser accepts (a spec shown in a doc that the parser
rejects sends a reader to an error on their first try)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]


def _toml_blocks(path: Path) -> list[str]:
    return [textwrap.dedent(m.group(1)) for m in re.finditer(r"```toml\n(.*?)```", path.read_text(), re.S)]


def _python_blocks(path: Path) -> list[str]:
    return [textwrap.dedent(m.group(1)) for m in re.finditer(r"```python\n(.*?)```", path.read_text(), re.S)]


SNIPPETS = [(p, i, block) for p in DOCS for i, block in enumerate(_toml_blocks(p))]


def test_the_docs_have_toml_snippets_to_check() -> None:
    names = {p.name for p, _, _ in SNIPPETS}
    assert {"adding-a-trick.md", "running.md", "designs.md", "adaptive.md"} <= names


@pytest.fixture
def mirror_all_axes(monkeypatch):
    """The example trick of docs/adding-a-trick.md, registered from the doc's own code for one test."""
    from tricks import _registry

    monkeypatch.setattr(_registry, "_REGISTRY", dict(_registry._REGISTRY))
    list(_registry.list_tricks())  # the real tricks first
    code = next(b for b in _python_blocks(ROOT / "docs" / "adding-a-trick.md") if "class MirrorAllAxes" in b)
    import sys
    import types

    module = types.ModuleType("tricks.mirror_all_axes")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(code, "docs/adding-a-trick.md", "exec"), module.__dict__)  # noqa: S102 - the doc's own example
    return module


@pytest.fixture
def user_trainer_package(tmp_path, monkeypatch):
    """The user trainer the docs name (``trainer:mypkg.trainers.MyLoss``), as a real importable package."""
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "trainers.py").write_text(
        "from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer\n\n\n"
        "class MyLoss(nnUNetTrainer):\n"
        "    def _build_loss(self):\n"
        "        return super()._build_loss()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return pkg


@pytest.mark.parametrize("path,index,block", SNIPPETS, ids=[f"{p.name}#{i}" for p, i, _ in SNIPPETS])
def test_toml_snippet_is_a_spec_the_parser_accepts(path: Path, index: int, block: str, mirror_all_axes,
                                                   request) -> None:
    """A fragment may leave out the keys every spec has (name, factors); the test supplies those only."""
    from bench.runner.spec import parse_spec

    if "trainer:" in block:  # a user's nnU-Net trainer: the extra must be there (CI installs it)
        import importlib.util
        import os

        if importlib.util.find_spec("nnunetv2") is None and not os.environ.get("CI"):
            pytest.skip("nnunetv2 not installed (pip install -e '.[nnunet]'; CI installs it)")
        request.getfixturevalue("user_trainer_package")

    keys = tomllib.loads(block)
    head = ('name = "doc"\n' if "name" not in keys else "") + ('factors = ["warmup"]\n' if "factors" not in keys
                                                               else "")
    spec = parse_spec(head + block, f"{path.name} snippet {index}", check_data=False)
    params = keys.get("params", {})
    for trick, values in params.items():  # the parameters the doc sets are the ones the spec carries
        for name, value in values.items():
            assert spec.params[trick][name] == value


def test_a_tricks_section_is_rejected_with_the_section_that_exists() -> None:
    from bench.errors import SpecError
    from bench.runner.spec import parse_spec

    with pytest.raises(SpecError, match="tricks"):
        parse_spec('name = "x"\ndesign = "full"\nfactors = ["warmup"]\n[tricks.warmup]\nepochs = 3\n', "<doc>",
                   check_data=False)
