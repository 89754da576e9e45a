"""bench.evaluation.metrics against medpy (the reference), and the BraTS 2017-2022 empty-mask rules."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from medpy.metric import binary as mb
from scipy import ndimage as ndi

from bench.data.formats import BRATS2019, BRATS2023, HD95_PENALTY, MSD, REGIONS, from_brats, region_masks
from bench.evaluation.metrics import (
    RegionMetrics,
    dice,
    evaluate_case,
    hd95,
    sensitivity,
    specificity,
    surface_distances,
)

_medpy_surface_distances = getattr(mb, "__surface_distances")


def _blob(rng: np.random.Generator, shape: tuple[int, ...], fill: float) -> np.ndarray:
    field = ndi.gaussian_filter(rng.random(shape), rng.uniform(0.7, 3.0))
    return field > np.quantile(field, 1.0 - fill)


def _random_pair(rng: np.random.Generator, case: int) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """A varied pair: random shape and spacing, blobs, near copies, border contact, specks, single voxels."""
    shape = tuple(int(v) for v in rng.integers(4, 36, 3))
    spacing = tuple(float(v) for v in rng.uniform(0.4, 3.0, 3)) if case % 3 else (1.0, 1.0, 1.0)
    g = _blob(rng, shape, rng.uniform(0.02, 0.5))
    kind = case % 6
    if kind == 0:  # independent blob
        p = _blob(rng, shape, rng.uniform(0.02, 0.5))
    elif kind == 1:  # near copy: a few flipped voxels
        p = g.copy()
        for _ in range(int(rng.integers(1, 6))):
            p[tuple(int(rng.integers(0, s)) for s in shape)] ^= True
    elif kind == 2:  # shifted copy (touches the border after the roll)
        p = np.roll(g, tuple(int(v) for v in rng.integers(-3, 4, 3)), axis=(0, 1, 2))
    elif kind == 3:  # dilated copy plus a far-away speck in a corner
        p = ndi.binary_dilation(g)
        p[0, 0, 0] = p[-1, -1, -1] = True
    elif kind == 4:  # single voxel against a blob
        p = np.zeros(shape, bool)
        p[tuple(int(rng.integers(0, s)) for s in shape)] = True
    else:  # both masks fill a slab that touches two faces of the volume
        p = g.copy()
        p[: max(1, shape[0] // 3)] = True
        g = g.copy()
        g[:, -max(1, shape[1] // 4) :] = True
    if not p.any():
        p[0, 0, 0] = True
    if not g.any():
        g[-1, -1, -1] = True
    return p, g, spacing


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hd95_and_surface_distances_equal_medpy_on_random_pairs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for case in range(40):
        p, g, spacing = _random_pair(rng, case)
        ref = mb.hd95(p, g, voxelspacing=spacing)
        assert abs(hd95(p, g, spacing) - ref) <= 1e-9, (seed, case, p.shape, spacing)
        d_pg, d_gp = surface_distances(p, g, spacing)
        ref_pg = _medpy_surface_distances(p, g, spacing, 1)
        ref_gp = _medpy_surface_distances(g, p, spacing, 1)
        # same values in the same (C) order as medpy
        np.testing.assert_allclose(d_pg, ref_pg, rtol=0, atol=1e-12)
        np.testing.assert_allclose(d_gp, ref_gp, rtol=0, atol=1e-12)


def test_hd95_known_values() -> None:
    p = np.zeros((10, 10, 10), bool)
    g = np.zeros((10, 10, 10), bool)
    p[0, 0, 0] = True
    g[3, 4, 0] = True
    assert hd95(p, g) == pytest.approx(5.0)
    assert hd95(p, g, (2.0, 0.5, 7.0)) == pytest.approx(np.hypot(6.0, 2.0))
    # a cube and the same cube shifted by one voxel along z with 2.5 mm slices
    a = np.zeros((12, 12, 12), bool)
    a[3:8, 3:8, 3:8] = True
    b = np.roll(a, 1, axis=2)
    assert hd95(a, b, (1.0, 1.0, 2.5)) == pytest.approx(mb.hd95(a, b, voxelspacing=(1.0, 1.0, 2.5)))
    assert hd95(a, a, (1.0, 1.0, 2.5)) == 0.0


def test_hd95_is_pooled_not_max_of_directed_percentiles() -> None:
    # A 4x4x4 cube against the same cube plus a 1-voxel bump: the directed P->G percentile is 0, the G->P one
    # is not; the pooled percentile lies strictly between them.
    g = np.zeros((10, 10, 10), bool)
    g[2:6, 2:6, 2:6] = True
    p = g.copy()
    p[6:9, 3, 3] = True
    d_pg, d_gp = surface_distances(p, g)
    pooled = hd95(p, g)
    assert pooled == pytest.approx(mb.hd95(p, g))
    assert pooled == pytest.approx(float(np.percentile(np.concatenate((d_pg, d_gp)), 95)))
    assert pooled < max(np.percentile(d_pg, 95), np.percentile(d_gp, 95))


def test_masks_touching_every_face_and_2d_masks() -> None:
    p = np.ones((7, 9, 5), bool)
    g = np.zeros((7, 9, 5), bool)
    g[1:, :, 2:] = True
    spacing = (0.9, 1.7, 3.1)
    assert hd95(p, g, spacing) == pytest.approx(mb.hd95(p, g, voxelspacing=spacing), abs=1e-9)
    rng = np.random.default_rng(5)
    for _ in range(10):
        a = _blob(rng, (30, 25), 0.3)
        b = _blob(rng, (30, 25), 0.2)
        assert hd95(a, b, (1.3, 0.7)) == pytest.approx(mb.hd95(a, b, voxelspacing=(1.3, 0.7)), abs=1e-9)


def _medpy_dc(p: np.ndarray, g: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(mb.dc(p, g))


def test_dice_sensitivity_specificity_equal_medpy_on_non_empty_pairs() -> None:
    rng = np.random.default_rng(11)
    for case in range(30):
        p, g, _ = _random_pair(rng, case)
        assert dice(p, g) == pytest.approx(_medpy_dc(p, g), abs=1e-12)
        assert sensitivity(p, g) == pytest.approx(mb.sensitivity(p, g), abs=1e-12)
        if (~g).any():
            assert specificity(p, g) == pytest.approx(mb.specificity(p, g), abs=1e-12)


def test_empty_mask_rules() -> None:
    empty = np.zeros((6, 6, 6), bool)
    some = empty.copy()
    some[2:4, 2:4, 2:4] = True
    # both empty: perfect scores (medpy's dc gives NaN here under numpy 2 and its hd95 raises)
    assert dice(empty, empty) == 1.0
    assert hd95(empty, empty, (1, 1, 1)) == 0.0
    assert sensitivity(empty, empty) == 1.0
    assert specificity(empty, empty) == 1.0
    with pytest.raises(RuntimeError):
        mb.hd95(empty, empty)
    # prediction empty, reference not: Dice 0, penalty, sensitivity 0, specificity 1
    assert dice(empty, some) == 0.0
    assert hd95(empty, some) == HD95_PENALTY == 373.13
    assert sensitivity(empty, some) == 0.0
    assert specificity(empty, some) == 1.0
    # reference empty, prediction not: Dice 0, penalty, sensitivity 0, specificity = TN/(TN+FP)
    assert dice(some, empty) == 0.0
    assert hd95(some, empty) == HD95_PENALTY
    assert sensitivity(some, empty) == 0.0
    assert specificity(some, empty) == pytest.approx((216 - 8) / 216)
    # no negative voxel at all
    full = np.ones((3, 3, 3), bool)
    assert specificity(full, full) == 1.0
    assert specificity(empty[:3, :3, :3], full) == 1.0


def _labels(rng: np.random.Generator, shape: tuple[int, int, int], with_et: bool = True) -> np.ndarray:
    lab = np.zeros(shape, np.uint8)
    lab[_blob(rng, shape, 0.3)] = 2
    core = _blob(rng, shape, 0.12) & (lab == 2)
    lab[core] = 1
    if with_et:
        lab[core & ~ndi.binary_erosion(core)] = 4
    return lab


def _reference_case(pred: np.ndarray, gt: np.ndarray, spacing) -> dict[str, tuple[float, float]]:
    out = {}
    mp, mg = region_masks(pred), region_masks(gt)
    for r in REGIONS:
        p, g = mp[r], mg[r]
        if p.any() and g.any():
            out[r] = (_medpy_dc(p, g), float(mb.hd95(p, g, voxelspacing=spacing)))
        elif p.any() or g.any():
            out[r] = (0.0, HD95_PENALTY)
        else:
            out[r] = (1.0, 0.0)
    return out


def test_evaluate_case_equals_medpy_per_region() -> None:
    rng = np.random.default_rng(3)
    for i in range(8):
        shape = tuple(int(v) for v in rng.integers(16, 40, 3))
        spacing = (1.0, 1.0, 1.0) if i % 2 else tuple(float(v) for v in rng.uniform(0.5, 2.5, 3))
        gt = _labels(rng, shape, with_et=i != 3)
        pred = _labels(rng, shape, with_et=i != 5) if i % 3 else np.roll(gt, 1, axis=i % 3)
        pred[0, 0, 0] = 4  # a far-away enhancing speck at the corner of the volume
        res = evaluate_case(pred, gt, spacing)
        ref = _reference_case(pred, gt, spacing)
        assert set(res) == set(REGIONS)
        for r in REGIONS:
            assert res[r].dice == pytest.approx(ref[r][0], abs=1e-12)
            assert abs(res[r].hd95 - ref[r][1]) <= 1e-9, (i, r)
            p, g = region_masks(pred)[r], region_masks(gt)[r]
            assert res[r].sensitivity == pytest.approx(sensitivity(p, g))
            assert res[r].specificity == pytest.approx(specificity(p, g))
            assert res[r].penalty == (p.any() != g.any())


def test_evaluate_case_empty_rules_and_penalty_flag() -> None:
    rng = np.random.default_rng(4)
    gt = _labels(rng, (20, 20, 20), with_et=False)  # low-grade-like: no enhancing tumour
    pred = gt.copy()
    res = evaluate_case(pred, gt)
    assert res["ET"] == RegionMetrics(1.0, 0.0, 1.0, 1.0, False)
    assert res["WT"].dice == 1.0 and res["WT"].hd95 == 0.0
    pred[5, 5, 5] = 4  # a single false enhancing voxel
    res = evaluate_case(pred, gt)
    assert res["ET"].dice == 0.0 and res["ET"].hd95 == HD95_PENALTY and res["ET"].penalty
    assert res["ET"].sensitivity == 0.0
    assert res["ET"].specificity == pytest.approx(1 - 1 / gt.size)
    empty = np.zeros_like(gt)
    both_empty = evaluate_case(empty, empty)
    assert all(m == RegionMetrics(1.0, 0.0, 1.0, 1.0, False) for m in both_empty.values())
    missed = evaluate_case(empty, gt)
    assert missed["WT"].penalty and missed["WT"].hd95 == HD95_PENALTY and missed["WT"].dice == 0.0
    assert not missed["ET"].penalty  # no ET on either side


def test_evaluate_case_conventions_dtypes_and_layouts() -> None:
    rng = np.random.default_rng(9)
    gt = _labels(rng, (24, 20, 18))
    pred = np.roll(gt, 2, axis=0)
    spacing = (1.2, 0.8, 2.0)
    base = evaluate_case(pred, gt, spacing)
    for conv in (BRATS2023, MSD):
        other = evaluate_case(from_brats(pred, conv), from_brats(gt, conv), spacing, convention=conv)
        assert other == base
    # MSD labels read as if they were BraTS labels give other numbers (label 2 is not enhancing in MSD)
    assert evaluate_case(from_brats(pred, MSD), from_brats(gt, MSD), spacing) != base
    # int16 labels and Fortran-ordered arrays (as nibabel returns them) give the same result
    assert evaluate_case(pred.astype(np.int16), np.asfortranarray(gt.astype(np.int16)), spacing) == base
    # values of no region count as background
    odd = pred.copy()
    odd[0, 0, :] = 7
    assert evaluate_case(odd, gt, spacing) == evaluate_case(np.where(odd == 7, 0, odd), gt, spacing)


def test_bad_arguments() -> None:
    a = np.zeros((4, 4, 4), bool)
    with pytest.raises(ValueError, match="shape"):
        hd95(a, np.zeros((4, 4, 5), bool))
    with pytest.raises(ValueError, match="shape"):
        evaluate_case(np.zeros((4, 4, 4), np.uint8), np.zeros((4, 5, 4), np.uint8))
    with pytest.raises(ValueError, match="spacing"):
        hd95(a, a, (1.0, 1.0))
    with pytest.raises(ValueError, match="spacing"):
        hd95(a, a, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="non-empty"):
        surface_distances(a, a)
    assert BRATS2019.regions["ET"] == (4,)
