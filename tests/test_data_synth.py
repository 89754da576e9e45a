"""Synthetic phantoms: written like real BraTS files, deterministic, with the contrasts of real scans."""

from __future__ import annotations

import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from bench.data.formats import brats_affine
from bench.data.readers import list_cases, read_case
from bench.data.synth import CasePlan, make_phantom, plan_cases, synthesize

SHAPE = (48, 48, 32)


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.*"))}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    synthesize(tmp_path / "a", cases=2, unlabeled=1, shape=(24, 24, 16), seed=4)
    synthesize(tmp_path / "b", cases=2, unlabeled=1, shape=(24, 24, 16), seed=4)
    a = _digests(tmp_path / "a")
    synthesize(tmp_path / "c", cases=2, unlabeled=1, shape=(24, 24, 16), seed=5)
    assert a == _digests(tmp_path / "b")
    assert len(a) == 2 * 5 + 2  # 5 files per case, 1 unlabeled 4D image, unlabeled/dataset.json
    c = _digests(tmp_path / "c")
    assert set(c) == set(a) and all(c[k] != a[k] for k in a if k.endswith(".nii.gz"))


def test_files_are_written_like_real_brats_files(synth_raw: Path) -> None:
    seg_dtypes, maxima = set(), []
    for cf in list_cases(synth_raw):
        imgs = [nib.load(str(cf.files[m])) for m in ("t1", "t1ce", "t2", "flair")]
        seg = nib.load(str(cf.seg))
        for img in [*imgs, seg]:
            assert img.shape == SHAPE
            np.testing.assert_array_equal(img.affine, brats_affine(SHAPE))
            assert img.header.get_zooms() == (1.0, 1.0, 1.0)
        assert all(img.get_data_dtype() == np.int16 for img in imgs)
        seg_dtypes.add(str(seg.get_data_dtype()))
        data = [np.asanyarray(img.dataobj) for img in imgs]
        brain = data[0] != 0
        for d in data:  # one skull-stripping mask shared by all modalities; background exactly 0
            np.testing.assert_array_equal(d != 0, brain)
            assert d.min() == 0
        lab = np.asanyarray(seg.dataobj)
        assert set(np.unique(lab)) <= {0, 1, 2, 4}
        assert not np.any(lab[~brain])
        maxima.append(max(int(d.max()) for d in data))
    assert seg_dtypes == {"uint8", "int16"}
    assert max(maxima) == 32767  # a low-grade-like case at full int16 range


def test_case_mix_has_low_grade_and_two_lesion_cases(synth_raw: Path) -> None:
    plans = plan_cases(10, np.random.default_rng([0, 7]))
    assert sum(p.low_grade for p in plans) == 2 and sum(p.full_range for p in plans) == 1
    assert sum(p.lesions == 2 for p in plans) in (2, 3)
    no_et = []
    for cf, plan in zip(list_cases(synth_raw), plans):
        lab = read_case(cf).label
        assert lab is not None
        if not np.any(lab == 4):
            no_et.append(cf.case_id)
        assert np.any(lab == 1) and np.any(lab == 2)
        assert (not np.any(lab == 4)) == plan.low_grade
    assert len(no_et) == 2
    for i, plan in enumerate(plans):  # two separate lesions (checked at 96x96x64, where 1 voxel is 2.5 mm)
        if plan.lesions == 2:
            lab = make_phantom((96, 96, 64), np.random.default_rng([0, 1, i]), plan).label
            components = ndimage.label(ndimage.binary_dilation(lab > 0))[0]
            sizes = np.sort(np.bincount(components.ravel())[1:])[::-1]
            assert len(sizes) >= 2 and sizes[1] > 200, sizes


def test_contrasts_follow_real_scans() -> None:
    """Edema bright on FLAIR and T2, ET bright on T1ce around a core dark on T1ce, tumour dark on T1."""
    ph = make_phantom((96, 96, 64), np.random.default_rng(11), CasePlan(lesions=1))
    img = {k: v.astype(np.float64) for k, v in ph.images.items()}
    lab = ph.label
    brain = img["t1"] > 0
    normal = brain & ~ndimage.binary_dilation(lab > 0, iterations=3)
    # medians: normal tissue is mostly white matter, with bright CSF on T2 pulling a mean up
    mean = {m: {r: np.median(img[m][sel]) for r, sel in
                {"n": normal, "ed": lab == 2, "ncr": lab == 1, "et": lab == 4}.items()} for m in img}
    assert mean["flair"]["ed"] > 1.3 * mean["flair"]["n"]
    assert mean["t2"]["ed"] > 1.3 * mean["t2"]["n"]
    assert mean["t1ce"]["et"] > 1.4 * mean["t1ce"]["n"]
    assert mean["t1ce"]["ncr"] < 0.6 * mean["t1ce"]["et"]
    assert mean["t1ce"]["ncr"] < mean["t1ce"]["n"]
    assert mean["t1"]["ncr"] < 0.7 * mean["t1"]["n"] and mean["t1"]["et"] < mean["t1ce"]["et"] * 0.6 * 2
    # the ET rim surrounds the necrotic core: every core voxel's 6-neighbourhood stays within the tumour core
    core = ndimage.binary_dilation(lab == 1) & ~(lab == 1)
    assert np.all(np.isin(lab[core], (1, 4)) | ~brain[core]) or np.mean(np.isin(lab[core], (1, 4))) > 0.9


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float(np.sum(a & b)) / max(float(a.sum() + b.sum()), 1.0)


def test_no_region_is_a_plain_threshold_of_one_modality() -> None:
    """The best single-modality threshold misses: ET needs context beyond T1ce (vessels are bright too),
    and the whole tumour is more than FLAIR-bright voxels (white-matter hyperintensities, faint borders)."""
    best = {"ET": 0.0, "WT": 0.0}
    for seed in (1, 2):
        ph = make_phantom((96, 96, 64), np.random.default_rng(seed), CasePlan())
        brain = ph.images["t1"] > 0
        masks = {"ET": ph.label == 4, "WT": ph.label > 0}
        for region, mask in masks.items():
            for vol in ph.images.values():
                for q in np.linspace(2, 98, 49):
                    t = np.percentile(vol[brain], q)
                    for pred in (vol > t, vol < t):
                        best[region] = max(best[region], _dice(pred & brain, mask))
    assert 0.3 < best["ET"] < 0.95
    assert 0.5 < best["WT"] < 0.95


def test_tumour_sizes_scale_with_the_volume() -> None:
    """Whole tumours of real BraTS cases span about 26k-230k voxels at 240x240x155; at 96x96x64 the same
    physical range is 15.1x smaller."""
    sizes = []
    for seed in range(6):
        ph = make_phantom((96, 96, 64), np.random.default_rng(seed), CasePlan())
        sizes.append(int(np.sum(ph.label > 0)) * (240 * 240 * 155) / (96 * 96 * 64))
    assert 10_000 < min(sizes) and max(sizes) < 300_000
    assert max(sizes) > 2 * min(sizes)


@pytest.mark.parametrize("fmt", ["brats2023", "msd"])
def test_other_layouts_hold_the_same_case(fmt: str, tmp_path: Path) -> None:
    synthesize(tmp_path / "ref", cases=2, shape=(24, 24, 16), fmt="brats2019", seed=3)
    synthesize(tmp_path / fmt, cases=2, shape=(24, 24, 16), fmt=fmt, seed=3)
    ref, other = list_cases(tmp_path / "ref"), list_cases(tmp_path / fmt)
    assert [c.case_id for c in other] == (
        ["BraTS-GLI-00001-000", "BraTS-GLI-00002-000"] if fmt == "brats2023" else ["BRATS_001", "BRATS_002"]
    )
    for a, b in zip(ref, other):
        ca, cb = read_case(a), read_case(b)
        np.testing.assert_array_equal(ca.image, cb.image)
        np.testing.assert_array_equal(ca.label, cb.label)
    raw = np.asanyarray(nib.load(str(other[0].seg)).dataobj)
    assert set(np.unique(raw)) <= {0, 1, 2, 3} and 3 in set(np.unique(raw))
    if fmt == "msd":
        four_d = nib.load(str(other[0].files["image"]))
        assert four_d.shape == (24, 24, 16, 4)
        flair = np.asanyarray(nib.load(str(ref[0].files["flair"])).dataobj)
        np.testing.assert_array_equal(np.asanyarray(four_d.dataobj)[..., 0], flair)  # channel 0 is FLAIR


def test_unlabeled_cases_in_msd_layout(synth_raw: Path) -> None:
    cases = list_cases(synth_raw / "unlabeled")
    assert [c.case_id for c in cases] == ["BRATS_U001", "BRATS_U002"]
    assert all(c.seg is None and c.files["image"].parent.name == "imagesTs" for c in cases)
    assert (synth_raw / "unlabeled" / "dataset.json").is_file()


def test_synth_cli(run_cli, tmp_path: Path) -> None:
    res = run_cli("data", "synth", tmp_path / "d", "--cases", "2", "--shape", "24,24,16", "--format", "brats2023",
                  "--seed", "1", "--unlabeled", "1")
    assert res.code == 0, res.err
    assert "wrote 2 brats2023 cases of 24x24x16" in res.out
    assert (tmp_path / "d" / "BraTS-GLI-00002-000" / "BraTS-GLI-00002-000-t2f.nii.gz").is_file()
    assert (tmp_path / "d" / "unlabeled" / "imagesTs" / "BRATS_U001.nii.gz").is_file()
    bad = run_cli("data", "synth", tmp_path / "e", "--shape", "8,8")
    assert bad.code == 2 and "expected X,Y,Z" in bad.err


def test_a_new_phantom_version_is_new_workspace_data(tmp_path: Path, monkeypatch) -> None:
    """The workspace's synthetic folder is keyed by the generator version: phantoms drawn by an older version
    are not reused after the generator changes."""
    import bench.data.synth as synth
    from bench.runner.spec import parse_spec
    from bench.runner.workspace import Workspace, _synthetic_folder

    spec = parse_spec('name = "v"\ndesign = "list"\nfixed = []\n[[rows]]\nlabel = "BL"\ntricks = []\n'
                      '[data]\npath = "synthetic"\n[data.synthetic]\ncases = 2\nshape = [16, 16, 16]\n',
                      "v.toml", check_data=False)
    ws = Workspace(tmp_path)
    first = _synthetic_folder(spec, ws)
    assert _synthetic_folder(spec, ws) == first and (first / ".complete").exists()
    monkeypatch.setattr(synth, "PHANTOM_VERSION", synth.PHANTOM_VERSION + 1)
    second = _synthetic_folder(spec, ws)
    assert second != first and (second / ".complete").exists()
