"""The nnunet engine end to end on tiny synthetic BraTS-like cases (8 cases of 48x40x32 voxels, 2 folds, 2 test
cases): nnU-Net's plan and preprocessing on bench's split, a 2x2 grid of two tricks with nnU-Net forms through
``bench run`` to ``bench report``, a training killed mid-way that resumes from its checkpoint and trains each
epoch once, and predictions in the source geometry and label convention.

One workspace for the module: its dataset is planned and preprocessed once (about a minute on 2 cores).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

try:
    import nnunetv2  # noqa: F401
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("nnunetv2 is not installed (pip install -e '.[nnunet]'); CI installs it and runs these",
                allow_module_level=True)

from bench.engines import PredictJob, TrainJob, get_engine
from bench.runner.spec import parse_spec
from bench.runner.workspace import Workspace, ensure_dataset

pytestmark = pytest.mark.slow

SPEC = """name = "nn-grid"
design = "full"
factors = ["multitask", "patch_fusion"]
folds = [0]
seeds = [0]
[engine]
name = "nnunet"
[data]
path = "synthetic"
folds = 2
test_fraction = 0.25
[data.synthetic]
cases = 8
shape = [48, 40, 32]
format = "brats2023"
[train]
epochs = 2
iterations_per_epoch = 2
val_iterations = 1
"""


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("nnunet-ws")


@pytest.fixture(scope="module")
def data(ws: Path):
    spec = parse_spec(SPEC, "nn.toml")
    return ensure_dataset(spec, Workspace(ws))


def _bench(ws: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, cwd=ws, env=env,
                          timeout=timeout)


def test_plan_and_preprocess_on_bench_split(data) -> None:
    root = data.raw / "Dataset001_BraTS"
    ds_json = json.loads((root / "dataset.json").read_text())
    assert ds_json["channel_names"] == {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"}
    assert ds_json["regions_class_order"] == [1, 2, 3]
    test = set(data.test_ids())
    assert len(test) == 2
    # nnU-Net trains on bench's split: the test cases are in no fold and were not preprocessed
    assert set(ds_json["dataset"]) == set(data.case_ids) - test
    splits = json.loads((data.preprocessed / "Dataset001_BraTS" / "splits_final.json").read_text())
    assert [s["val"] for s in splits] == [data.val_ids(f) for f in range(data.n_folds)]
    assert [s["train"] for s in splits] == [data.train_ids(f) for f in range(data.n_folds)]
    pre = data.preprocessed / "Dataset001_BraTS"
    plans = data.plans()
    assert "3d_fullres" in plans["configurations"]
    folder = pre / plans["configurations"]["3d_fullres"]["data_identifier"]
    done = {p.name.split(".")[0] for p in folder.iterdir() if p.suffix == ".pkl"}  # one properties file a case
    assert done and not done & test and done <= set(data.case_ids)
    # labels in nnU-Net's BraTS numbering (1 oedema, 2 necrosis, 3 enhancing), from bench's BraTS-2019 labels
    import nibabel as nib

    cid = sorted(ds_json["dataset"])[0]
    nn = np.asarray(nib.load(str(root / "labelsTr" / f"{cid}.nii.gz")).dataobj)
    src = data.source_label(cid)
    assert np.array_equal(nn == 1, src == 2) and np.array_equal(nn == 2, src == 1) and np.array_equal(nn == 3, src == 4)
    # cached: the same inputs give the same folder without planning again
    t0 = time.time()
    again = ensure_dataset(parse_spec(SPEC, "nn.toml"), Workspace(data.root.parents[2]))
    assert again.root == data.root and time.time() - t0 < 5


def test_grid_through_bench_run_and_report(ws: Path) -> None:
    (ws / "nn.toml").write_text(SPEC)
    res = _bench(ws, "run", "nn.toml", "--workspace", ".", "--tracking", "none", "--threads", "2")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    said = res.stdout + res.stderr
    assert "4 done, 0 failed" in said
    # inference tricks share trainings: two trainings for four cells
    assert "(2 trainings)" in said
    import sqlite3

    con = sqlite3.connect(ws / ".bench" / "results.db")
    keys = {k for (k,) in con.execute("select training_key from cells")}
    n_cases = con.execute("select count(distinct case_id) from case_metrics").fetchone()[0]
    assert len(keys) == 2 and n_cases == 2
    res = _bench(ws, "report", "nn-grid", "--workspace", ".")
    assert res.returncode == 0, res.stderr[-3000:]
    table = (ws / "reports" / "nn-grid" / "table1.md").read_text()
    for label in ("BL", "BL+multitask", "BL+patch\\_fusion", "BL+multitask+patch\\_fusion"):
        assert f"| {label} |" in table


KILL = """
import sys, threading
from pathlib import Path
from bench.engines import TrainJob, get_engine
from bench.runner.spec import parse_spec
from bench.runner.workspace import Workspace, ensure_dataset
from tricks import resolve
spec = parse_spec(Path(sys.argv[1]).read_text(), "nn.toml")
data = ensure_dataset(spec, Workspace(Path(sys.argv[2])))
job = TrainJob(0, 1, resolve(["multitask"]), train={"epochs": 3, "iterations_per_epoch": 2, "val_iterations": 1},
               options=dict(spec.engine.options), machine={"device": "cpu", "num_workers": 0, "threads": 1})
get_engine("nnunet").train(data, Path(sys.argv[3]), job)
"""


def test_killed_training_resumes_from_its_checkpoint(ws: Path, data, tmp_path: Path) -> None:
    from tricks import resolve

    eng = get_engine("nnunet")
    out = tmp_path / "training"
    (tmp_path / "nn.toml").write_text(SPEC)
    (tmp_path / "kill.py").write_text(KILL)
    proc = subprocess.Popen([sys.executable, str(tmp_path / "kill.py"), str(tmp_path / "nn.toml"), str(ws), str(out)],
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    t0 = time.time()
    while eng.resume_point(out) is None or not (out / "curve.json").exists():  # the first epoch's checkpoint
        assert proc.poll() is None and time.time() - t0 < 300, "no checkpoint before the training ended"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = json.loads((out / "curve.json").read_text())["curve"]
    assert len(before) in (1, 2)  # killed in its second (or third) epoch
    assert not list(out.glob("nnUNet_results/*/*/fold_0/checkpoint_final.pth"))

    job = TrainJob(0, 1, resolve(["multitask"]), train={"epochs": 3, "iterations_per_epoch": 2, "val_iterations": 1},
                   options=dict(data.options), machine={"device": "cpu", "num_workers": 0, "threads": 1})
    result = eng.train(data, out, job)
    curve = result.curve
    # each epoch trained once: the epochs before the kill are kept as they were, the rest follow them
    assert [r["epoch"] for r in curve] == [1, 2, 3]
    assert curve[: len(before)] == before
    assert result.iterations == 6 and Path(result.checkpoint).name == "checkpoint_final.pth"
    assert eng.resume_point(out) is None
    # a finished training is returned as it is
    assert eng.train(data, out, job).curve == curve


def test_stop_event_checkpoints_and_resumes(data, tmp_path: Path) -> None:
    import threading

    from bench.engine.api import TrainingStopped
    from tricks import resolve

    eng = get_engine("nnunet")
    job = TrainJob(0, 2, resolve([]), train={"epochs": 2, "iterations_per_epoch": 2, "val_iterations": 1},
                   options=dict(data.options), machine={"device": "cpu", "num_workers": 0, "threads": 2})
    stop = threading.Event()

    def progress(info: dict) -> None:
        if "val" in info:  # after the first epoch: a USR1 hand-back or lease loss sets the event
            stop.set()

    with pytest.raises(TrainingStopped) as exc:
        eng.train(data, tmp_path / "t", job, progress=progress, stop=stop)
    assert Path(exc.value.checkpoint).exists() and exc.value.iteration == 2
    result = eng.train(data, tmp_path / "t", job)
    assert [r["epoch"] for r in result.curve] == [1, 2]
    # label-trained: nnU-Net scores classes; WT and TC come from bench's region counts, kept across the resume
    for row in result.curve:
        assert {"val_dice_WT", "val_dice_TC", "val_dice_ET", "val_dice_class_ED"} <= set(row)
        assert all(0.0 <= row[f"val_dice_{r}"] <= 1.0 for r in ("WT", "TC", "ET"))


def test_predictions_in_source_geometry_and_labels(data, tmp_path: Path) -> None:
    import nibabel as nib
    from nnunetv2.imageio.nibabel_reader_writer import NibabelIO

    from bench.data.writers import write_prediction
    from bench.engines.nnunet.data import from_nnunet_labels
    from tricks import resolve

    # the axis convention of the way back: nnU-Net's reader of a raw label, transposed as predict() does,
    # gives bench's source labels voxel for voxel (a non-cubic grid catches swapped axes)
    cid = data.train_ids(0)[0]
    seg, _ = NibabelIO().read_seg(str(data.raw / "Dataset001_BraTS" / "labelsTr" / f"{cid}.nii.gz"))
    assert np.array_equal(from_nnunet_labels(seg[0].transpose(2, 1, 0)), data.source_label(cid))

    eng = get_engine("nnunet")
    stack = resolve(["multitask"])
    job = TrainJob(0, 0, stack, train={"epochs": 1, "iterations_per_epoch": 1, "val_iterations": 1},
                   options=dict(data.options), machine={"device": "cpu", "num_workers": 0, "threads": 2})
    result = eng.train(data, tmp_path / "t", job)
    got = dict(eng.predict([Path(result.checkpoint)], data, data.test_ids(), PredictJob(stack, device="cpu")))
    assert sorted(got) == sorted(data.test_ids())
    for case_id, labels in got.items():
        meta = data.meta(case_id)
        assert labels.shape == tuple(meta.source_shape) == (48, 40, 32) and labels.dtype == np.uint8
        assert set(np.unique(labels)) <= {0, 1, 2, 4}
        # written back in the source's convention (BraTS 2023: enhancing is 3) and geometry
        path = write_prediction(labels, case_id, meta.affine, tmp_path / "pred", meta.format)
        img = nib.load(str(path))
        assert np.allclose(img.affine, meta.affine)
        back = np.asarray(img.dataobj)
        assert set(np.unique(back)) <= {0, 1, 2, 3} and np.array_equal(back == 3, labels == 4)
    # the model predicts with its own plans (spacing, patch, normalisation), never with those of the folder it
    # is given: planned on other data, the folder's plans would put the prediction at another scale
    class OtherPlans:
        def __getattr__(self, name):
            return getattr(data, name)

        def plans(self):
            raise AssertionError("the predicted folder's plans were used instead of the model's")

    again = dict(eng.predict([Path(result.checkpoint)], OtherPlans(), data.test_ids(),
                             PredictJob(stack, device="cpu")))
    assert all(np.array_equal(again[c], got[c]) for c in got)

    # a model used another way refuses in one line: a native checkpoint, and weights of another trainer
    import torch

    from bench.errors import CheckpointError

    native = tmp_path / "native.pt"
    torch.save({"format": 1, "model": {}}, native)
    with pytest.raises(CheckpointError, match="not an nnU-Net checkpoint .*without --engine"):
        list(eng.predict([native], data, data.test_ids()[:1], PredictJob(stack, device="cpu")))
    with pytest.raises(CheckpointError, match="other plans or other training tricks"):
        list(eng.predict([Path(result.checkpoint)], data, data.test_ids()[:1], PredictJob(resolve([]), device="cpu")))


def test_predict_a_folder_of_unlabeled_scans_plans_nothing(data, tmp_path: Path) -> None:
    # `bench predict --engine nnunet` on scans without segmentations (BraTS layout and an MSD 4D file): the
    # checkpoint carries its plans, so the folder is neither planned nor preprocessed by nnU-Net (planning needs
    # labels, and its plans would not be used)
    import shutil

    import nibabel as nib

    from bench.data.synth import synthesize
    from tricks import resolve

    eng = get_engine("nnunet")
    job = TrainJob(0, 0, resolve(["multitask"]), train={"epochs": 1, "iterations_per_epoch": 1, "val_iterations": 1},
                   options=dict(data.options), machine={"device": "cpu", "num_workers": 0, "threads": 2})
    ckpt = Path(eng.train(data, tmp_path / "t", job).checkpoint)
    # another folder than the training one: its segmentations are kept aside as the truth of the evaluation
    truth = tmp_path / "truth"
    synthesize(truth, cases=2, unlabeled=1, shape=(40, 48, 32), fmt="brats2023", seed=7)
    scans = tmp_path / "scans"
    shutil.copytree(truth, scans, ignore=shutil.ignore_patterns("*-seg.nii.gz"))
    work = tmp_path / "w"
    res = _bench(tmp_path, "predict", "--engine", "nnunet", "--tricks", "multitask", "--model", str(ckpt),
                 "--data", str(scans), "--out", str(tmp_path / "pred"), "--workspace", str(work), "--device", "cpu")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "wrote 3 predictions" in res.stdout
    assert not list(work.rglob("nnUNet_preprocessed")) and not list(work.rglob("plans*.json"))
    sources = {p.name[:-len("-t1n.nii.gz")]: p for p in scans.glob("*/*-t1n.nii.gz")}
    sources.update({p.name[:-len(".nii.gz")]: p for p in (scans / "unlabeled" / "imagesTs").glob("*.nii.gz")})
    assert len(sources) == 3
    for cid, src in sources.items():
        img, ref = nib.load(str(tmp_path / "pred" / f"{cid}.nii.gz")), nib.load(str(src))
        assert img.shape == ref.shape[:3] == (40, 48, 32)
        assert np.allclose(img.affine, ref.affine)
        assert set(np.unique(np.asarray(img.dataobj))) <= {0, 1, 2, 3}
    # and the end of the user's path: bench evaluate takes the predictions against the kept segmentations (it
    # refuses a differing geometry or label convention in one line)
    res = _bench(tmp_path, "evaluate", "--pred", str(tmp_path / "pred"), "--gt", str(truth),
                 "--out", str(tmp_path / "metrics.csv"))
    assert res.returncode == 0, res.stderr[-3000:]
    import pandas as pd

    scores = pd.read_csv(tmp_path / "metrics.csv")
    labelled = sorted(c for c in sources if not c.startswith("BRATS_U"))
    assert sorted(scores["case_id"].unique()) == labelled
    assert scores["dice"].between(0, 1).all()
    shutil.rmtree(work)
