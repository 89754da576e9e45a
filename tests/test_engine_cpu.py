"""The allocator tuning of CPU training: large freed blocks stay in the process (no page faults when they are
allocated again), it is on in CPU trainings, and BENCH_MALLOC_TUNING=0 turns it off."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the tuning applies to glibc only")

ROOT = Path(__file__).resolve().parents[1]

_FAULTS = """
import ctypes, json, resource
from bench.engine.cpu import tune_allocator
tuned = tune_allocator()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
n = 40 * 2**20  # above glibc's largest dynamic mmap threshold (32 MB), like a 64^3 x 16 x 2 activation
def once():
    p = libc.malloc(n); ctypes.memset(p, 1, n); libc.free(p)
once()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    once()
print(json.dumps({"tuned": tuned, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _run(code: str, **env: str) -> dict:
    full = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    full.update(env, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_tuned_allocator_reuses_large_blocks_without_page_faults() -> None:
    on = _run(_FAULTS)
    off = _run(_FAULTS, BENCH_MALLOC_TUNING="0")
    assert on["tuned"] is True and off["tuned"] is False
    pages = 10 * 40 * 2**20 // 4096  # every page of every block, when each block is a fresh mmap
    assert off["faults"] > 0.8 * pages, off
    assert on["faults"] < 0.02 * pages, on


_TRAIN = """
import dataclasses, json, sys
from bench.engine import api
from bench.engine.config import ModelConfig, TrainConfig
from bench.engine.cpu import allocator_tuned
from bench.engine.synthetic import MemoryDataset
import tricks
ds = MemoryDataset(cases=4, shape=(24, 24, 16), seed=0, folds=2)
before = allocator_tuned()
api.train(ds, sys.argv[1], dataclasses.replace(ModelConfig.cpu(), width=4, depth=2), TrainConfig.cpu(iterations=1, epoch_length=1,
          patch=16, batch=1, val_every=0, num_workers=0, device="cpu"), tricks.resolve([]))
print(json.dumps({"before": before, "after": allocator_tuned()}))
"""


@pytest.mark.parametrize("switch,expected", [(None, True), ("0", False), ("off", False)])
def test_cpu_training_tunes_the_allocator_unless_switched_off(switch, expected, tmp_path: Path) -> None:
    env = {} if switch is None else {"BENCH_MALLOC_TUNING": switch}
    code = _TRAIN.replace("sys.argv[1]", repr(str(tmp_path / "t")))
    res = _run(code, **env)
    assert res == {"before": False, "after": expected}


def _tiny_model(norm: str):
    import dataclasses

    from bench.engine.config import ModelConfig
    from bench.engine.model import build_model

    return build_model(dataclasses.replace(ModelConfig.cpu(), depth=2, width=4, norm=norm))


@pytest.mark.parametrize("norm, expected", [("batch", True), ("instance", False), ("group", False)])
def test_channels_last_on_cpu_only_for_models_whose_norm_keeps_the_layout(norm, expected, monkeypatch) -> None:
    from bench.engine.cpu import LAYOUT_SWITCH, channels_last_on_cpu

    monkeypatch.delenv(LAYOUT_SWITCH, raising=False)
    assert channels_last_on_cpu(_tiny_model(norm)) is expected
    monkeypatch.setenv(LAYOUT_SWITCH, "0")
    assert channels_last_on_cpu(_tiny_model(norm)) is False


def test_cpu_prediction_in_channels_last_equals_ncdhw(monkeypatch) -> None:
    """The layout changes the speed, not the prediction: class probabilities of a batch-norm model agree to
    float32 rounding between channels-last and NCDHW inference on the CPU."""
    import torch

    from bench.engine.config import InferenceConfig
    from bench.engine.cpu import LAYOUT_SWITCH
    from bench.engine.infer import predict_probabilities

    torch.manual_seed(0)
    model = _tiny_model("batch").eval()
    image = torch.rand(4, 20, 18, 16)
    cfg = InferenceConfig(mirror=True, overlap=0.5)
    monkeypatch.setenv(LAYOUT_SWITCH, "0")
    plain = predict_probabilities([model], image, 16, cfg, torch.device("cpu"))
    monkeypatch.setenv(LAYOUT_SWITCH, "1")
    model_cl = model.to(memory_format=torch.channels_last_3d)
    fast = predict_probabilities([model_cl], image, 16, cfg, torch.device("cpu"))
    assert fast.shape == plain.shape == (4, 20, 18, 16)
    assert float((fast - plain).abs().max()) < 1e-5
