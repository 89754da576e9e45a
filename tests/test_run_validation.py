"""`bench run` refuses a bad spec before it prepares data or writes anything, and checks the parameter types of
the model, training and inference sections before it loads the trick registry (which imports torch)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.runner.spec import packaged_specs

DEMO = packaged_specs()["demo"].read_text()


def _probe(text: str) -> tuple[str, list[str]]:
    """Parse ``text`` in a fresh interpreter: (the error, which heavy modules were imported by then)."""
    code = (
        "import sys\n"
        "from bench.errors import SpecError\n"
        "from bench.runner.spec import parse_spec\n"
        "try:\n"
        "    parse_spec(sys.stdin.read(), 'bad.toml')\n"
        "except SpecError as exc:\n"
        "    print(exc)\n"
        "print('loaded:' + ','.join(m for m in ('torch', 'tricks', 'sqlalchemy', 'optuna') if m in sys.modules))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], input=text, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    error, loaded = res.stdout.strip().splitlines()[-2:]
    return error, [m for m in loaded.removeprefix("loaded:").split(",") if m]


@pytest.mark.parametrize("old, new, message", [
    ("lr = 0.01", 'lr = "0.01"', "train.lr = '0.01' must be a number"),
    ("width = 8", "width = 8.0", "model.width = 8.0 must be an integer"),
    ("window_batch = 4", 'window_batch = "4"', "inference.window_batch = '4' must be an integer"),
])
def test_section_types_are_checked_before_the_trick_registry_loads(old: str, new: str, message: str) -> None:
    assert old in DEMO
    error, loaded = _probe(DEMO.replace(old, new, 1))
    assert error == f"bad.toml: {message}"
    assert loaded == []  # neither torch nor the tricks, SQLAlchemy or Optuna were needed to refuse it


def test_bad_trick_parameter_type_stops_bench_run_before_any_data_or_store(tmp_path: Path) -> None:
    spec = tmp_path / "bad.toml"
    spec.write_text(DEMO.replace("heuristic_sampling = { k = 4 }", 'heuristic_sampling = { k = "four" }', 1))
    ws = tmp_path / "ws"
    res = subprocess.run([sys.executable, "-m", "bench", "run", str(spec), "--workspace", str(ws)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"bench: error: {spec}: factor 'heuristic_sampling': trick 'heuristic_sampling': "
        "bad parameter k='four' must be an integer"]
    assert not ws.exists()  # no workspace, data cache, results or MLflow store was created
