"""`bench data check`: every bad input gets its message naming the file, exit code 2, and nothing is modified."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bench.data.check import check_dataset
from bench.data.formats import brats_affine
from bench.data.writers import write_nifti

ID1 = "BraTS19_SYN_001"
ID2 = "BraTS19_SYN_002"


@pytest.fixture
def ds(synth_raw: Path, tmp_path: Path) -> Path:
    """A copy of the first three cases of the shared synthetic dataset (no unlabeled folder)."""
    root = tmp_path / "ds"
    root.mkdir()
    for cid in (ID1, ID2, "BraTS19_SYN_003"):
        shutil.copytree(synth_raw / cid, root / cid)
    return root


def _file(root: Path, cid: str, role: str) -> Path:
    return root / cid / f"{cid}_{role}.nii.gz"


def _data(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(str(path)).dataobj)


def _problems(run_cli, root: Path) -> list[str]:
    res = run_cli("data", "check", root)
    assert res.code == 2, res.out + res.err
    assert "problem(s)" in res.err
    return [ln.strip() for ln in res.out.split("problem(s):", 1)[1].splitlines() if ln.strip()]


def _only(run_cli, root: Path, path: Path, fragment: str) -> str:
    probs = _problems(run_cli, root)
    assert len(probs) == 1, probs
    assert probs[0].startswith(f"{path}: "), probs
    assert fragment in probs[0], probs
    return probs[0]


def test_clean_dataset_passes_with_summary(run_cli, synth_raw: Path) -> None:
    res = run_cli("data", "check", synth_raw)
    assert res.code == 0, res.out + res.err
    assert "cases: 12 (10 labeled, 2 unlabeled)" in res.out
    assert "shapes: 48x48x32 (12)" in res.out
    assert "spacings (mm): 1x1x1 (12)" in res.out
    assert "label dtypes: uint8 (5), int16 (5)" in res.out
    assert "cases with no ET: 2 (BraTS19_SYN_004, BraTS19_SYN_008)" in res.out
    assert "no problems found" in res.out


def test_missing_modality(run_cli, ds: Path) -> None:
    path = _file(ds, ID1, "t1ce")
    path.unlink()
    _only(run_cli, ds, path, f"case {ID1} is missing its t1ce modality")


def test_modalities_of_different_shapes(run_cli, ds: Path) -> None:
    path = _file(ds, ID2, "t2")
    write_nifti(path, _data(path)[:, :, :30], brats_affine((48, 48, 32)))
    _only(run_cli, ds, path, "t2 image shape (48, 48, 30) differs from BraTS19_SYN_002_t1.nii.gz (48, 48, 32)")


def test_modalities_of_different_affines(run_cli, ds: Path) -> None:
    path = _file(ds, ID2, "flair")
    aff = brats_affine((48, 48, 32))
    aff[0, 3] = 5.0
    write_nifti(path, _data(path), aff)
    _only(run_cli, ds, path, "flair image affine differs from the affine of BraTS19_SYN_002_t1.nii.gz")


def test_truncated_gzip(run_cli, ds: Path) -> None:
    path = _file(ds, ID1, "t2")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    _only(run_cli, ds, path, "is a truncated or corrupt")


def test_corrupt_gzip(run_cli, ds: Path) -> None:
    path = _file(ds, ID1, "flair")
    raw = bytearray(path.read_bytes())
    mid = len(raw) // 2
    raw[mid : mid + 64] = bytes(64)
    path.write_bytes(bytes(raw))
    _only(run_cli, ds, path, "truncated or corrupt")


def test_file_that_is_not_nifti(run_cli, ds: Path) -> None:
    text = _file(ds, ID1, "t1")
    text.write_text("this is a text file, not an image\n")
    gz = _file(ds, ID2, "t1")
    gz.write_bytes(gzip.compress(b"PNG?" * 200))
    probs = _problems(run_cli, ds)
    assert f"{text}: is not a gzip-compressed NIfTI file (no gzip signature); expected a .nii.gz NIfTI image" in probs
    assert f"{gz}: is not a NIfTI file (no NIfTI-1/2 header); expected a NIfTI image (.nii or .nii.gz)" in probs
    assert len(probs) == 2


def test_4d_image_where_3d_expected(run_cli, ds: Path) -> None:
    path = _file(ds, ID1, "t1")
    data = _data(path)
    write_nifti(path, np.stack([data, data], axis=-1), brats_affine(data.shape))
    _only(run_cli, ds, path, "is 4D with shape (48, 48, 32, 2); expected a 3D image (X, Y, Z)")


def test_msd_image_without_four_channels(run_cli, synth_raw: Path, tmp_path: Path) -> None:
    from bench.data.synth import synthesize

    root = tmp_path / "msd"
    synthesize(root, cases=2, shape=(24, 24, 16), fmt="msd", seed=1)
    path = root / "imagesTr" / "BRATS_002.nii.gz"
    write_nifti(path, _data(path)[..., :3], brats_affine((24, 24, 16)))
    _only(run_cli, root, path, "4D image has 3 channels; expected 4 (FLAIR, T1w, T1gd, T2w)")


def test_nan_and_inf_voxels(run_cli, ds: Path) -> None:
    path = _file(ds, ID1, "t1ce")
    data = _data(path).astype(np.float32)
    data[10, 10, 10] = np.nan
    data[11, 10, 10] = np.inf
    write_nifti(path, data, brats_affine(data.shape))
    _only(run_cli, ds, path, "t1ce image has 2 NaN or Inf voxels")


def test_all_zero_modality(run_cli, ds: Path) -> None:
    path = _file(ds, ID2, "t2")
    write_nifti(path, np.zeros((48, 48, 32), np.int16), brats_affine((48, 48, 32)))
    _only(run_cli, ds, path, "t2 image is all zero")


def test_label_values_outside_convention(run_cli, ds: Path) -> None:
    path = _file(ds, ID1, "seg")
    lab = _data(path).copy()
    lab[lab == 4] = 3
    lab[0, 0, 0] = 7
    write_nifti(path, lab, brats_affine(lab.shape))
    _only(run_cli, ds, path, "label values [3, 7] are outside the brats2019 convention [0, 1, 2, 4]")


def test_msd_label_values_use_msd_convention(run_cli, tmp_path: Path) -> None:
    from bench.data.synth import synthesize

    root = tmp_path / "msd"
    synthesize(root, cases=2, shape=(24, 24, 16), fmt="msd", seed=1)
    assert run_cli("data", "check", root).code == 0
    path = root / "labelsTr" / "BRATS_001.nii.gz"
    lab = _data(path).copy()
    lab[lab == 3] = 4  # BraTS numbering in an MSD file
    lab[0, 0, 0] = 4
    write_nifti(path, lab, brats_affine(lab.shape))
    _only(run_cli, root, path, "label values [4] are outside the msd convention [0, 1, 2, 3]")


def test_label_shape_differs(run_cli, ds: Path) -> None:
    path = _file(ds, ID2, "seg")
    write_nifti(path, _data(path)[:40], brats_affine((40, 48, 32)))
    _only(run_cli, ds, path, "label map shape (40, 48, 32) differs from the images (48, 48, 32)")


def test_empty_folder(run_cli, ds: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    _only(run_cli, empty, empty, "empty folder: no cases found")
    (ds / "BraTS19_SYN_099").mkdir()
    _only(run_cli, ds, ds / "BraTS19_SYN_099", "empty folder (expected the files of a case)")


def test_folder_without_cases(run_cli, tmp_path: Path) -> None:
    root = tmp_path / "notes"
    root.mkdir()
    (root / "README.txt").write_text("nothing here")
    _only(run_cli, root, root, "no BraTS or MSD cases found")


def test_duplicate_case_ids(run_cli, ds: Path) -> None:
    (ds / "LGG").mkdir()
    shutil.copytree(ds / ID2, ds / "LGG" / ID2)
    _only(run_cli, ds, ds / "LGG" / ID2, f"duplicate case ID {ID2} (also in {ds / ID2})")


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_every_problem_is_reported_and_nothing_is_modified(run_cli, ds: Path) -> None:
    _file(ds, ID1, "t1").write_text("not an image")
    _file(ds, ID1, "seg").unlink()
    _file(ds, ID1, "seg").write_bytes(b"")  # empty file
    write_nifti(_file(ds, ID2, "t2"), np.zeros((48, 48, 32), np.int16), brats_affine((48, 48, 32)))
    _file(ds, "BraTS19_SYN_003", "flair").unlink()
    before = _snapshot(ds)
    report = check_dataset(ds)
    probs = _problems(run_cli, ds)
    assert _snapshot(ds) == before
    assert len(report.problems) == len(probs) == 4, probs
    files = {str(p.file) for p in report.problems}
    assert files == {
        str(_file(ds, ID1, "t1")), str(_file(ds, ID1, "seg")), str(_file(ds, ID2, "t2")),
        str(_file(ds, "BraTS19_SYN_003", "flair")),
    }
    assert report.summary.n_cases == 3


def test_check_as_a_real_command(synth_raw: Path, ds: Path) -> None:
    bench = [sys.executable, "-m", "bench"]
    ok = subprocess.run([*bench, "data", "check", str(synth_raw)], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "no problems found" in ok.stdout
    _file(ds, ID1, "t1ce").unlink()
    bad = subprocess.run([*bench, "data", "check", str(ds)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert f"{_file(ds, ID1, 't1ce')}: case {ID1} is missing its t1ce modality" in bad.stdout
    assert "Traceback" not in bad.stderr


def test_brats2023_and_msd_layouts_pass(run_cli, tmp_path: Path) -> None:
    from bench.data.synth import synthesize

    for fmt in ("brats2023", "msd"):
        root = tmp_path / fmt
        synthesize(root, cases=3, unlabeled=1, shape=(24, 24, 16), fmt=fmt, seed=2)
        res = run_cli("data", "check", root)
        assert res.code == 0, res.out
        assert f"({fmt})" in res.out and "cases: 4 (3 labeled, 1 unlabeled)" in res.out
    assert json.loads((tmp_path / "msd" / "dataset.json").read_text())["numTraining"] == 3
