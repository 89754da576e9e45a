"""Lesion-wise BraTS 2023 metrics against a straightforward full-volume implementation (cc3d +
DeepMind surface-distance), on random and adversarial cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from lesionwise_reference import reference_case, reference_region
from lesionwise_reference import robust_hd95 as ref_hd95

from bench.errors import SpecError
from bench.evaluation.lesionwise import COHORTS, get_cohort, lesionwise_case, lesionwise_region
from bench.evaluation.surface import robust_hd95

FIELDS = ("lesion_dice", "lesion_hd95", "legacy_dice", "legacy_hd95", "sensitivity", "specificity")
COUNTS = ("num_tp", "num_fp", "num_fn")
# surface_distance 0.1 uses the deprecated scipy.ndimage.filters / .morphology namespaces
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def assert_same(mine, ref: dict, what: str = "") -> None:
    got = mine.as_dict()
    for k in FIELDS:
        assert math.isclose(got[k], ref[k], rel_tol=0, abs_tol=1e-9), f"{what} {k}: {got[k]} vs {ref[k]}"
    for k in COUNTS:
        assert got[k] == ref[k], f"{what} {k}: {got[k]} vs {ref[k]}"


def ball(shape, centre, radius, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, spacing))
    return d2 <= radius**2


def random_label(rng: np.random.Generator, shape, n_lesions: int) -> np.ndarray:
    """BraTS-2019 label map with ``n_lesions`` nested blobs (edema 2 around core 1 around enhancing 4)."""
    lab = np.zeros(shape, np.uint8)
    for _ in range(n_lesions):
        c = [rng.uniform(0, n) for n in shape]
        r = rng.uniform(0.6, 5.0)
        lab[ball(shape, c, r)] = 2
        if rng.random() < 0.7:
            lab[ball(shape, c, r * 0.6)] = 1
        if rng.random() < 0.6:
            lab[ball(shape, [x + rng.normal(0, 0.7) for x in c], r * 0.35)] = 4
    return lab


def perturb(rng: np.random.Generator, lab: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    out = lab.copy()
    kind = rng.integers(0, 4)
    if kind == 0:
        out = np.roll(out, tuple(rng.integers(-2, 3, 3)), axis=(0, 1, 2))
    elif kind == 1:
        grown = ndimage.grey_dilation(out, size=(2, 2, 2))
        out = np.where(out == 0, grown, out)
    elif kind == 2:
        out[ndimage.binary_erosion(out > 0) == 0] = 0
    specks = rng.random(lab.shape) < 0.0008  # stray single voxels
    out[specks] = rng.choice(np.array([1, 2, 4], np.uint8), size=int(specks.sum()))
    return out


@pytest.mark.parametrize("seed", range(24))
def test_random_cases_match_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(14, 30, 3))
    spacing = [(1.0, 1.0, 1.0), (0.9375, 0.9375, 1.5), (1.2, 0.8, 2.0)][seed % 3]
    cohort = list(COHORTS)[seed % 5]
    gt = random_label(rng, shape, int(rng.integers(0, 7)))
    pred = perturb(rng, gt) if rng.random() < 0.8 else random_label(rng, shape, int(rng.integers(0, 5)))
    mine = lesionwise_case(pred, gt, spacing, cohort)
    ref = reference_case(pred, gt, spacing, cohort)
    for region in ("ET", "TC", "WT"):
        assert_same(mine[region], ref[region], f"seed {seed} {region} {cohort}")


def _check(pred: np.ndarray, gt: np.ndarray, spacing=(1.0, 1.0, 1.0), cohort: str = "gli"):
    mine = lesionwise_region(pred, gt, spacing, cohort)
    assert_same(mine, reference_region(pred, gt, spacing, cohort), cohort)
    return mine


def test_touching_lesions_are_one_component() -> None:
    gt = np.zeros((20, 20, 20), bool)
    gt[3:8, 3:8, 3:8] = True
    gt[8:12, 8:12, 8:12] = True  # touches the first at one corner: one 26-connected lesion
    pred = gt.copy()
    pred[8:12, 8:12, 8:12] = False
    m = _check(pred, gt)
    assert (m.num_tp, m.num_fp, m.num_fn) == (1, 0, 0)
    assert m.lesion_dice < 1.0


def test_lesions_merged_only_by_dilation() -> None:
    gt = np.zeros((30, 20, 20), bool)
    gt[2:7, 5:10, 5:10] = True
    gt[12:17, 5:10, 5:10] = True  # 5 voxels apart: merged by 3 dilations (reach 6), apart with 1
    pred = np.zeros_like(gt)
    pred[2:7, 5:10, 5:10] = True  # predicts only the first part
    gli = _check(pred, gt, cohort="gli")
    assert (gli.num_tp, gli.num_fn) == (1, 0)
    assert math.isclose(gli.lesion_dice, 2 * 125 / (125 + 250))
    men = _check(pred, gt, cohort="men")
    assert (men.num_tp, men.num_fn) == (1, 1)
    assert math.isclose(men.lesion_dice, 0.5)
    assert math.isclose(men.lesion_hd95, (0.0 + 374.0) / 2)


def test_one_blob_matches_two_lesions_and_missed_lesion() -> None:
    gt = np.zeros((50, 20, 20), bool)
    gt[2:8, 5:11, 5:11] = True
    gt[20:26, 5:11, 5:11] = True
    gt[40:46, 5:11, 5:11] = True  # missed
    pred = np.zeros_like(gt)
    pred[4:24, 6:10, 6:10] = True  # one blob across the first two lesions
    pred[0, 0, 0] = True  # a stray false-positive voxel at the corner of the volume
    m = _check(pred, gt)
    assert (m.num_tp, m.num_fp, m.num_fn) == (2, 1, 1)
    assert m.lesion_hd95 > 2 * 374.0 / 4


def test_lesions_at_the_volume_edge_and_anisotropic_spacing() -> None:
    gt = np.zeros((16, 18, 12), bool)
    gt[0:5, 0:4, 0:3] = True
    gt[11:16, 14:18, 9:12] = True
    pred = np.zeros_like(gt)
    pred[0:4, 0:5, 0:3] = True
    pred[12:16, 13:18, 10:12] = True
    for spacing in ((1.0, 1.0, 1.0), (0.5, 1.25, 3.0)):
        m = _check(pred, gt, spacing)
        assert m.num_tp == 2


def test_empty_masks() -> None:
    z = np.zeros((10, 10, 10), bool)
    one = z.copy()
    one[3:7, 3:7, 3:7] = True  # 64 mm^3, above the GLI threshold
    both = _check(z, z)
    assert (both.lesion_dice, both.lesion_hd95, both.legacy_dice, both.legacy_hd95) == (1.0, 0.0, 1.0, 0.0)
    assert both.sensitivity == 1.0
    no_pred = _check(z, one)
    assert (no_pred.lesion_dice, no_pred.lesion_hd95, no_pred.num_fn) == (0.0, 374.0, 1)
    assert no_pred.legacy_hd95 == 374.0
    no_gt = _check(one, z)
    assert (no_gt.lesion_dice, no_gt.lesion_hd95, no_gt.num_fp) == (0.0, 374.0, 1)
    assert no_gt.sensitivity == 0.0


def test_lesion_exactly_at_the_threshold_is_dropped() -> None:
    gt = np.zeros((20, 20, 20), bool)
    gt[2:7, 2:7, 2:4] = True  # 50 voxels = 50 mm^3 at 1 mm: dropped (<= 50)
    gt[12:18, 12:18, 12:14] = True  # 72 voxels: kept, missed
    pred = np.zeros_like(gt)
    pred[2:7, 2:7, 2:4] = True  # matches only the dropped lesion: not a false positive
    m = _check(pred, gt)
    assert (m.num_tp, m.num_fp, m.num_fn) == (0, 0, 1)
    assert (m.lesion_dice, m.lesion_hd95) == (0.0, 374.0)
    gt[2, 2, 4] = True  # 51 voxels: now kept and matched
    m = _check(pred, gt)
    assert (m.num_tp, m.num_fn) == (1, 1)
    # 2 voxels with 0.5 x 1 x 2 mm: exactly the MET threshold of 2 mm^3
    small = np.zeros((8, 8, 8), bool)
    small[3:5, 3, 3] = True
    met = _check(np.zeros_like(small), small, (0.5, 1.0, 2.0), "met")
    assert (met.num_fn, met.lesion_dice) == (0, 1.0)


def test_surface_hd95_equals_reference_package() -> None:
    rng = np.random.default_rng(7)
    from scipy import ndimage

    for t in range(30):
        shape = tuple(int(v) for v in rng.integers(5, 20, 3))
        spacing = [(1.0, 1.0, 1.0), (0.9375, 0.9375, 1.5), (1.2, 0.7, 2.5)][t % 3]
        a = ndimage.binary_dilation(rng.random(shape) < 0.03, iterations=int(rng.integers(0, 3)))
        b = ndimage.binary_dilation(rng.random(shape) < 0.03, iterations=int(rng.integers(0, 3)))
        if a.any() and b.any():
            assert robust_hd95(a, b, spacing) == ref_hd95(a, b, spacing)


def test_cohort_names() -> None:
    assert (get_cohort("GLI").dilation, get_cohort("met").threshold_mm3) == (3, 2.0)
    assert (get_cohort("men").dilation, get_cohort("men").threshold_mm3) == (1, 50.0)
    with pytest.raises(SpecError, match="expected one of gli, ssa, ped, men, met"):
        get_cohort("brats")


@pytest.mark.parametrize("start", range(0, 9, 2))
@pytest.mark.parametrize("gap", (6, 7, 8))
def test_merges_and_matches_across_block_boundaries(start: int, gap: int) -> None:
    """Lesions 2d+1 voxels apart merge under GLI (d = 3), 2d+2 apart stay two; wherever they sit relative to
    the 8-voxel blocks the work is split into."""
    gt = np.zeros((40, 12, 12), bool)
    gt[start:start + 4, 4:8, 4:8] = True
    b = start + 3 + gap
    gt[b:b + 4, 4:8, 4:8] = True
    pred = np.zeros_like(gt)
    pred[b + 3 + 3, 5, 5] = True  # inside the second lesion's dilation only: a match, not a false positive
    pred[b + 3 + 4, 5:7, 5] = True
    pred[b + 3 + 6, 5, 5] = True  # just outside every dilation: a false positive
    m = _check(pred, gt)
    lesions = 1 if gap <= 7 else 2
    assert (m.num_tp, m.num_fn, m.num_fp) == (1, lesions - 1, 1)
