"""Without the nnunet extra: bench imports, the native engine works, and a spec with ``engine = "nnunet"`` says
in one line how to install nnunetv2 (exit 2, no traceback). The import of nnunetv2 is made to fail in a
subprocess, so this runs whether or not the extra is installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SPEC = """name = "nn-missing"
factors = ["multitask"]
[engine]
name = "nnunet"
[data]
path = "synthetic"
folds = 2
[data.synthetic]
cases = 6
shape = [16, 16, 16]
[train]
epochs = 1
iterations_per_epoch = 1
"""

BLOCK = ("import sys\n"
         "sys.modules['nnunetv2'] = None  # every 'import nnunetv2...' raises ImportError\n"
         "from bench.cli import main\n"
         "sys.exit(main(sys.argv[1:]))\n")


def _bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK, *args], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)


def test_missing_extra_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "nn.toml").write_text(SPEC)
    res = _bench(tmp_path, "run", "nn.toml", "--workspace", str(tmp_path / "ws"), "--tracking", "none")
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if "nnunetv2" in ln]
    assert len(lines) == 1 and 'pip install -e ".[nnunet]"' in lines[0], res.stderr


def test_native_and_listing_work_without_the_extra(tmp_path: Path) -> None:
    res = _bench(tmp_path, "tricks", "--engine", "nnunet")
    assert res.returncode == 0, res.stderr
    assert "multitask" in res.stdout and "region-based" in res.stdout
    res = _bench(tmp_path, "plan", "demo")
    assert res.returncode == 0, res.stderr
    assert "engine: native" in res.stdout
