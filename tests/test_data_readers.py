"""Readers and writers: every layout and ID style, canonical order, label conversion, dtypes, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bench.data.formats import brats_affine
from bench.data.readers import detect_format, list_cases, load_nifti, read_case, read_label
from bench.data.synth import synthesize
from bench.data.writers import write_nifti, write_prediction
from bench.errors import DataError

SHAPE = (24, 24, 16)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("small") / "d"
    synthesize(root, cases=2, shape=SHAPE, seed=9)
    return root


def _copy_case(src: Path, dst_root: Path, new_id: str, sub: str = "") -> Path:
    old = src.name
    folder = dst_root / sub / new_id
    folder.mkdir(parents=True)
    for f in src.iterdir():
        shutil.copy(f, folder / f.name.replace(old, new_id))
    return folder


@pytest.mark.parametrize(
    "ids",
    [
        ["BraTS19_2013_10_1", "BraTS19_CBICA_AAB_1"],
        ["Brats18_CBICA_AME_1", "Brats18_TCIA01_131_1"],
        ["BraTS20_Training_001", "BraTS20_Training_002"],
        ["BraTS2021_00000", "BraTS2021_00002"],
    ],
)
def test_brats_2018_to_2021_ids_and_nested_folders(small: Path, tmp_path: Path, ids: list[str]) -> None:
    src = small / "BraTS19_SYN_001"
    _copy_case(src, tmp_path, ids[0], "HGG")
    _copy_case(src, tmp_path, ids[1], "LGG")
    assert detect_format(tmp_path) == "brats2019"
    cases = list_cases(tmp_path)
    assert [c.case_id for c in cases] == sorted(ids)
    assert all(set(c.files) == {"t1", "t1ce", "t2", "flair"} and c.seg is not None for c in cases)
    t1ce = next(c for c in cases if c.case_id == ids[0]).files["t1ce"]
    assert t1ce.name == f"{ids[0]}_t1ce.nii.gz"  # `_t1` must not swallow `_t1ce`


def test_canonical_channel_order_and_dtypes(small: Path) -> None:
    cf = list_cases(small)[0]
    case = read_case(cf)
    assert case.image.dtype == np.float32 and case.image.shape == (4, *SHAPE)
    for i, role in enumerate(("t1", "t1ce", "t2", "flair")):
        raw = np.asanyarray(nib.load(str(cf.files[role])).dataobj)
        np.testing.assert_array_equal(case.image[i], raw.astype(np.float32))
    assert case.label is not None and case.label.dtype == np.uint8
    np.testing.assert_array_equal(case.affine, brats_affine(SHAPE))
    assert case.spacing == (1.0, 1.0, 1.0) and case.format == "brats2019"
    assert set(case.files) == {"t1", "t1ce", "t2", "flair", "seg"}


def test_int16_and_uint8_segmentations_and_full_range_images(small: Path, tmp_path: Path) -> None:
    folder = _copy_case(small / "BraTS19_SYN_001", tmp_path, "BraTS2021_00001")
    seg = folder / "BraTS2021_00001_seg.nii.gz"
    lab = np.asanyarray(nib.load(str(seg)).dataobj)
    t1 = folder / "BraTS2021_00001_t1.nii.gz"
    img = np.asanyarray(nib.load(str(t1)).dataobj).copy()
    img[img > 0] = 32767
    write_nifti(t1, img, brats_affine(SHAPE))
    for dtype in (np.uint8, np.int16, np.float32):
        write_nifti(seg, lab.astype(dtype), brats_affine(SHAPE))
        case = read_case(list_cases(tmp_path)[0])
        np.testing.assert_array_equal(case.label, lab)
        assert case.image[0].max() == 32767.0


def test_brats2023_labels_are_converted(tmp_path: Path) -> None:
    synthesize(tmp_path, cases=1, shape=SHAPE, fmt="brats2023", seed=9)
    assert detect_format(tmp_path) == "brats2023"
    cf = list_cases(tmp_path)[0]
    raw = np.asanyarray(nib.load(str(cf.seg)).dataobj)
    label, affine, spacing = read_label(cf)
    np.testing.assert_array_equal(label == 4, raw == 3)
    np.testing.assert_array_equal(label == 1, raw == 1)
    np.testing.assert_array_equal(label == 2, raw == 2)
    assert spacing == (1.0, 1.0, 1.0) and affine.shape == (4, 4)


def test_msd_labels_and_channels_are_converted(tmp_path: Path) -> None:
    """MSD label 1 is edema (BraTS 2), 2 non-enhancing (BraTS 1), 3 enhancing (BraTS 4): never 2 -> ET."""
    root = tmp_path / "Task01_BrainTumour"
    root.mkdir()
    (root / "dataset.json").write_text(json.dumps({"name": "BRATS"}))
    aff = np.eye(4)
    img = np.zeros((*SHAPE, 4), np.float32)
    for ch in range(4):
        img[..., ch] = ch + 1  # FLAIR=1, T1w=2, T1gd=3, T2w=4
    lab = np.zeros(SHAPE, np.uint8)
    lab[5:10, 5:10, 5:10] = 1
    lab[7:9, 7:9, 7:9] = 2
    lab[8, 8, 8] = 3
    write_nifti(root / "imagesTr" / "BRATS_001.nii.gz", img, aff)
    write_nifti(root / "labelsTr" / "BRATS_001.nii.gz", lab, aff)
    write_nifti(root / "imagesTs" / "BRATS_485.nii.gz", img, aff)
    (root / "imagesTr" / "._BRATS_001.nii.gz").write_bytes(b"macOS resource fork")  # in the real archive
    assert detect_format(root) == "msd"
    cases = list_cases(root)
    assert [(c.case_id, c.labeled) for c in cases] == [("BRATS_001", True), ("BRATS_485", False)]
    case = read_case(cases[0])
    assert [float(case.image[i].max()) for i in range(4)] == [2.0, 3.0, 4.0, 1.0]  # T1, T1ce, T2, FLAIR
    assert case.label is not None
    assert int(case.label[8, 8, 8]) == 4 and int(case.label[7, 7, 7]) == 1 and int(case.label[5, 5, 5]) == 2
    assert read_case(cases[1]).label is None


def test_uncompressed_nii_files(small: Path, tmp_path: Path) -> None:
    folder = tmp_path / "BraTS19_X_1"
    folder.mkdir()
    for f in (small / "BraTS19_SYN_002").iterdir():
        data, aff, _ = load_nifti(f)
        write_nifti(folder / f.name.replace("BraTS19_SYN_002", "BraTS19_X_1").replace(".nii.gz", ".nii"), data, aff)
    a = read_case(list_cases(tmp_path)[0])
    b = read_case(list_cases(small)[1])
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.label, b.label)


def test_errors_name_the_file(small: Path, tmp_path: Path) -> None:
    folder = _copy_case(small / "BraTS19_SYN_001", tmp_path, "BraTS19_Y_1")
    (folder / "BraTS19_Y_1_t2.nii.gz").unlink()
    with pytest.raises(DataError, match=r"BraTS19_Y_1_t2\.nii\.gz: case BraTS19_Y_1 is missing its t2 modality"):
        read_case(list_cases(tmp_path)[0])
    shutil.copy(small / "BraTS19_SYN_001" / "BraTS19_SYN_001_t2.nii.gz", folder / "BraTS19_Y_1_t2.nii.gz")
    seg = folder / "BraTS19_Y_1_seg.nii.gz"
    write_nifti(seg, np.full(SHAPE, 3, np.uint8), brats_affine(SHAPE))
    with pytest.raises(DataError, match=r"_seg\.nii\.gz: label values \[3\] are outside the brats2019"):
        read_case(list_cases(tmp_path)[0])
    raw = seg.read_bytes()
    nii = tmp_path / "short.nii"
    write_nifti(nii, np.ones(SHAPE, np.int16), np.eye(4))
    nii.write_bytes(nii.read_bytes()[:1000])  # header intact, voxels cut
    with pytest.raises(DataError, match=r"short\.nii: is a truncated or corrupt NIfTI file"):
        load_nifti(nii)
    seg.write_bytes(raw[:-12])
    with pytest.raises(DataError, match=r"_seg\.nii\.gz: is a truncated or corrupt \.nii\.gz file"):
        read_label(list_cases(tmp_path)[0])
    with pytest.raises(DataError, match="no BraTS or MSD cases found"):
        detect_format(_empty(tmp_path))


def _empty(tmp_path: Path) -> Path:
    p = tmp_path / "nothing"
    p.mkdir()
    return p


@pytest.mark.parametrize("fmt,et_value", [("brats2019", 4), ("brats2023", 3), ("msd", 3)])
def test_write_prediction_round_trip(tmp_path: Path, fmt: str, et_value: int) -> None:
    labels = np.zeros(SHAPE, np.uint8)
    labels[4:12, 4:12, 4:10] = 2
    labels[6:10, 6:10, 5:8] = 4
    labels[7:9, 7:9, 6:7] = 1
    aff = brats_affine(SHAPE)
    aff[0, 3] = 3.5
    path = write_prediction(labels, "BraTS19_SYN_007", aff, tmp_path / "pred", fmt)
    assert path == tmp_path / "pred" / "BraTS19_SYN_007.nii.gz"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    img = nib.load(str(path))
    assert img.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(img.affine, aff)
    raw = np.asanyarray(img.dataobj)
    np.testing.assert_array_equal(raw == et_value, labels == 4)
    from bench.data.formats import FORMATS, to_brats

    np.testing.assert_array_equal(to_brats(raw, FORMATS[fmt]), labels)
    with pytest.raises(ValueError, match=r"labels \[3\] outside BraTS 2019"):
        write_prediction(np.full(SHAPE, 3, np.uint8), "X", aff, tmp_path / "pred", fmt)


def test_differently_named_segmentation_joins_its_case(small: Path, tmp_path: Path) -> None:
    """BraTS 2020 training case 355 ships its segmentation as W39_1998.09.19_Segm.nii."""
    folder = _copy_case(small / "BraTS19_SYN_001", tmp_path, "BraTS20_Training_355")
    seg = folder / "BraTS20_Training_355_seg.nii.gz"
    data, aff, _ = load_nifti(seg)
    seg.unlink()
    write_nifti(folder / "W39_1998.09.19_Segm.nii", data, aff)
    cases = list_cases(tmp_path)
    assert [c.case_id for c in cases] == ["BraTS20_Training_355"]
    assert cases[0].seg == folder / "W39_1998.09.19_Segm.nii"
    np.testing.assert_array_equal(read_case(cases[0]).label, data)
