"""A trained stack must predict every region its test cases have: a trick (or an engine change) that erases
a region fails here, and in any run it is named in `bench run`'s table and in the report's notes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.data.synth import synthesize
from bench.evaluation.missed import missed_regions
from bench.store import queries as q

SPEC = """
name = "regions"
design = "list"
fixed = []
folds = [0]
seeds = [0]

[[rows]]
label = "BL"
tricks = []

[data]
path = "{data}"
folds = 3
test_ids = {test_ids}

[model]
depth = 3
width = 8
norm = "batch"

[train]
iterations = 160
epoch_length = 50
patch = 32
batch = 2
lr = 0.01
val_every = 0
num_workers = 0
"""


@pytest.mark.slow
def test_the_trained_baseline_predicts_every_region_its_test_cases_have(tmp_path: Path) -> None:
    import nibabel as nib

    raw = tmp_path / "raw"
    ids = synthesize(raw, cases=8, shape=(96, 96, 64), seed=3)
    has_et = {i: bool(np.any(np.asarray(nib.load(next((raw / i).glob("*_seg.nii.gz"))).dataobj) == 4))
              for i in ids}
    test = [next(i for i in ids if has_et[i]), next(i for i in ids if not has_et[i])]  # high- and low-grade
    spec = tmp_path / "regions.toml"
    spec.write_text(SPEC.format(data=raw, test_ids=repr(test).replace("'", '"')))
    ws = tmp_path / "ws"
    res = subprocess.run([sys.executable, "-m", "bench", "run", str(spec), "--workspace", str(ws)],
                         env={**os.environ, "OMP_NUM_THREADS": "2"}, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    m = q.case_metrics(f"sqlite:///{ws}/.bench/results.db", "regions")
    assert sorted(m["case_id"].unique()) == sorted(test) and len(m) == 2 * 3
    missed = missed_regions(m)
    assert missed == [], f"the trained baseline predicted no voxel of {[x.region for x in missed]}:\n{res.stdout}"
    assert "voxel predicted" not in res.stdout
