"""BraTS 2017-2022 metrics: Dice, HD95, sensitivity and specificity per region, with the empty-mask rules.

Definitions (``P`` predicted mask, ``G`` reference mask, negatives = voxels outside ``G``):

- Dice = 2|P∩G| / (|P|+|G|); both empty -> 1.0; exactly one empty -> 0.0.
- HD95 in mm (below); both empty -> 0.0; exactly one empty -> ``HD95_PENALTY`` (373.13) and ``penalty=True``.
- Sensitivity = |P∩G| / |G|; empty ``G`` -> 1.0 if ``P`` is empty too, else 0.0 (so an empty ``P`` against a
  non-empty ``G`` gives 0.0 by the formula).
- Specificity = TN / (TN + FP) over the whole volume; 1.0 when there is no negative voxel (``G`` fills the
  volume). An empty ``P`` always gives 1.0.

HD95 is medpy's pooled definition (``medpy.metric.binary.hd95``, also used by nnU-Net's BraTS evaluation):
the surface of a mask is ``mask XOR binary_erosion(mask, 6-connected cross)`` with everything outside the
array counted as background; every surface voxel of ``P`` gets its Euclidean distance (in mm, using the voxel
spacing) to the nearest surface voxel of ``G`` and vice versa; HD95 is ``numpy.percentile`` (linear) at 95 of
the two directed sets concatenated. (MONAI and DeepMind's surface-distance take the maximum of the two
directed 95th percentiles instead, which gives different numbers.)

Speed: after one ``flatnonzero`` pass over each volume only labelled voxels are visited, so the cost follows
the tumour size, not the volume size or the extent of the masks (a far-away false-positive speck costs nothing
extra, where a bounding-box crop would grow to the whole volume). Region membership comes from a 256-entry
lookup table (one bit per region); a voxel is on a region's surface when one of its 2*ndim face neighbours
(gathered by flat-index offsets, outside the array = background) is not in the region. Voxels on both
surfaces are at distance 0; every other surface voxel finds its nearest surface voxel of the other mask with
a KD-tree (``scipy.spatial.cKDTree``), and the distance to it is recomputed from the integer offset exactly as
scipy's ``distance_transform_edt`` rounds it, so the values equal medpy's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.spatial import cKDTree

from bench.data.formats import BRATS2019, HD95_PENALTY, REGIONS, LabelConvention

__all__ = [
    "RegionMetrics", "dice", "hd95", "sensitivity", "specificity", "surface_distances", "evaluate_case",
    "METRIC_NAMES",
]

METRIC_NAMES: tuple[str, ...] = ("dice", "hd95", "sensitivity", "specificity")


@dataclass(frozen=True)
class RegionMetrics:
    """The four BraTS metrics of one region of one case.

    ``penalty`` is True when exactly one of the two masks is empty, so HD95 is the 373.13 mm penalty.
    """

    dice: float
    hd95: float
    sensitivity: float
    specificity: float
    penalty: bool

    def as_dict(self) -> dict[str, float | bool]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------- helpers


def _as_bool(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    return mask if mask.dtype == np.bool_ else mask.astype(bool)


def _check_pair(p: np.ndarray, g: np.ndarray) -> None:
    if p.shape != g.shape:
        raise ValueError(f"prediction shape {p.shape} differs from reference shape {g.shape}")


def _spacing(spacing: Sequence[float] | float | None, ndim: int) -> np.ndarray:
    if spacing is None:
        return np.ones(ndim, dtype=np.float64)
    s = np.asarray(spacing, dtype=np.float64).ravel()
    if s.size == 1:
        s = np.repeat(s, ndim)
    if s.size != ndim:
        raise ValueError(f"spacing {tuple(s.tolist())} has {s.size} values for a {ndim}-D mask")
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"spacing {tuple(s.tolist())} must be positive and finite")
    return s


def _bits(values: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Region bits of label values through a 256-entry LUT; values outside 0..255 or non-integer -> 0."""
    if values.dtype == np.uint8 or values.dtype == np.bool_:
        return lut[values.view(np.uint8)]
    valid = (values >= 0) & (values <= 255) & (values == np.round(values))
    return lut[np.where(valid, values, 0).astype(np.intp)]


@dataclass
class _Sparse:
    """The labelled voxels of one flattened label map: flat indices (sorted), coordinates, region bits and
    the bits of the regions on whose surface each voxel lies."""

    idx: np.ndarray
    coords: np.ndarray  # (N, ndim) int64
    bits: np.ndarray  # uint8
    surface: np.ndarray  # uint8


def _sparse(flat: np.ndarray, shape: tuple[int, ...], lut: np.ndarray) -> _Sparse:
    """Region bits of every labelled voxel and of its surface, touching only those voxels.

    A voxel is on the surface of a region when it belongs to it and one of its 2*ndim face neighbours does not
    (neighbours outside the array count as background): ``mask XOR binary_erosion(mask, cross)`` with scipy's
    default ``border_value=0``, which is what medpy computes.
    """
    idx = np.flatnonzero(flat != 0) if flat.dtype != np.bool_ else np.flatnonzero(flat)
    bits = _bits(flat[idx], lut)
    keep = bits != 0
    if not keep.all():
        idx, bits = idx[keep], bits[keep]
    if idx.size:
        coords = np.stack(np.unravel_index(idx, shape), axis=1)
    else:
        coords = np.zeros((0, len(shape)), np.int64)
    interior = bits.copy()
    stride = 1
    for axis in range(len(shape) - 1, -1, -1):
        c = coords[:, axis]
        n = shape[axis]
        for step, inside in ((-stride, c > 0), (stride, c < n - 1)):
            nb = _bits(flat[np.where(inside, idx + step, idx)], lut)
            nb[~inside] = 0
            interior &= nb
        stride *= n
    return _Sparse(idx, coords, bits, bits & ~interior)


def _exact_distances(offsets: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Euclidean length of integer offsets (N, ndim), rounded exactly like scipy's distance_transform_edt."""
    d = offsets.astype(np.float64)
    d *= spacing
    np.multiply(d, d, out=d)
    total = d[:, 0].copy()
    for axis in range(1, d.shape[1]):
        total += d[:, axis]
    return np.sqrt(total)


def _directed(src: np.ndarray, dst: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Distance (mm) of every point of ``src`` (integer voxel coordinates) to its nearest point of ``dst``."""
    if src.shape[0] == 0:
        return np.zeros(0, dtype=np.float64)
    tree = cKDTree(dst * spacing, balanced_tree=False, compact_nodes=False)
    _, nearest = tree.query(src * spacing, k=1)
    return _exact_distances(dst[nearest] - src, spacing)


def _surface_distances_sparse(
    sp_idx: np.ndarray, sp_xyz: np.ndarray, sg_idx: np.ndarray, sg_xyz: np.ndarray, spacing: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Directed distances P->G and G->P between two non-empty surfaces given as sorted flat indices and
    coordinates. Voxels on both surfaces are at distance 0 and need no search."""
    pos = np.minimum(np.searchsorted(sg_idx, sp_idx), sg_idx.size - 1)
    shared_p = sg_idx[pos] == sp_idx
    pos = np.minimum(np.searchsorted(sp_idx, sg_idx), sp_idx.size - 1)
    shared_g = sp_idx[pos] == sg_idx
    d_pg = np.zeros(sp_idx.size, dtype=np.float64)
    d_gp = np.zeros(sg_idx.size, dtype=np.float64)
    if not shared_p.all():
        d_pg[~shared_p] = _directed(sp_xyz[~shared_p], sg_xyz, spacing)
    if not shared_g.all():
        d_gp[~shared_g] = _directed(sg_xyz[~shared_g], sp_xyz, spacing)
    return d_pg, d_gp


def _flat(arr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(arr).reshape(-1)


_MASK_LUT = np.zeros(256, dtype=np.uint8)
_MASK_LUT[1] = 1


def _mask_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[_Sparse, _Sparse, tuple[int, ...]]:
    p = _as_bool(pred)
    g = _as_bool(gt)
    _check_pair(p, g)
    return _sparse(_flat(p), p.shape, _MASK_LUT), _sparse(_flat(g), g.shape, _MASK_LUT), p.shape


# ------------------------------------------------------------------------------------------ public API


def surface_distances(
    pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float] | float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances in mm: (every surface voxel of ``pred`` -> ``gt``, ``gt`` -> ``pred``).

    The values come in the C order of the surface voxels, as in medpy. Both masks must be non-empty;
    raises ValueError otherwise.
    """
    sp, sg, shape = _mask_pair(pred, gt)
    s = _spacing(spacing, len(shape))
    if sp.idx.size == 0 or sg.idx.size == 0:
        raise ValueError("surface distances need two non-empty masks")
    on_p, on_g = sp.surface != 0, sg.surface != 0
    return _surface_distances_sparse(sp.idx[on_p], sp.coords[on_p], sg.idx[on_g], sg.coords[on_g], s)


def _hd95_from(d_pg: np.ndarray, d_gp: np.ndarray) -> float:
    return float(np.percentile(np.concatenate((d_pg, d_gp)), 95))


def hd95(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float] | float | None = None) -> float:
    """95th percentile of the pooled symmetric surface distances in mm (medpy's definition), BraTS rules.

    Both masks empty -> 0.0; exactly one empty -> ``HD95_PENALTY`` (373.13). ``spacing`` is the voxel size
    along each array axis (mm), e.g. from the NIfTI header; None means 1 mm.
    """
    sp, sg, shape = _mask_pair(pred, gt)
    s = _spacing(spacing, len(shape))
    if sp.idx.size == 0 or sg.idx.size == 0:
        return 0.0 if sp.idx.size == sg.idx.size else HD95_PENALTY
    on_p, on_g = sp.surface != 0, sg.surface != 0
    d = _surface_distances_sparse(sp.idx[on_p], sp.coords[on_p], sg.idx[on_g], sg.coords[on_g], s)
    return _hd95_from(*d)


def _dice_counts(n_p: int, n_g: int, n_pg: int) -> float:
    if n_p + n_g == 0:
        return 1.0
    return 2.0 * n_pg / (n_p + n_g)


def _sens_counts(n_p: int, n_g: int, n_pg: int) -> float:
    if n_g == 0:
        return 1.0 if n_p == 0 else 0.0
    return n_pg / n_g


def _spec_counts(n_p: int, n_g: int, n_pg: int, n_total: int) -> float:
    negatives = n_total - n_g
    if negatives == 0:
        return 1.0
    fp = n_p - n_pg
    return (negatives - fp) / negatives


def _counts(p: np.ndarray, g: np.ndarray) -> tuple[int, int, int]:
    return int(np.count_nonzero(p)), int(np.count_nonzero(g)), int(np.count_nonzero(p & g))


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice 2|P∩G|/(|P|+|G|); 1.0 when both masks are empty, 0.0 when exactly one is."""
    p, g = _as_bool(pred), _as_bool(gt)
    _check_pair(p, g)
    return _dice_counts(*_counts(p, g))


def sensitivity(pred: np.ndarray, gt: np.ndarray) -> float:
    """|P∩G|/|G|; with an empty reference: 1.0 if the prediction is empty too, else 0.0."""
    p, g = _as_bool(pred), _as_bool(gt)
    _check_pair(p, g)
    return _sens_counts(*_counts(p, g))


def specificity(pred: np.ndarray, gt: np.ndarray) -> float:
    """TN/(TN+FP) over the whole volume; 1.0 when the reference leaves no negative voxel."""
    p, g = _as_bool(pred), _as_bool(gt)
    _check_pair(p, g)
    return _spec_counts(*_counts(p, g), p.size)


def _region_lut(convention: LabelConvention) -> np.ndarray:
    """uint8 lookup: label value -> bit r set when the label belongs to REGIONS[r]."""
    lut = np.zeros(256, dtype=np.uint8)
    for bit, region in enumerate(REGIONS):
        for label in convention.regions[region]:
            lut[label] |= np.uint8(1 << bit)
    return lut


def evaluate_case(
    pred: np.ndarray,
    gt: np.ndarray,
    spacing: Sequence[float] | float | None = None,
    convention: LabelConvention = BRATS2019,
) -> dict[str, RegionMetrics]:
    """Dice, HD95, sensitivity and specificity for the regions ET, TC, WT of one case.

    ``pred`` and ``gt`` are integer label maps of the same shape written in ``convention`` (BraTS 2019 labels
    {0,1,2,4} by default); ``spacing`` is the voxel size in mm. Values that belong to no region count as
    background. Returns ``{"ET": RegionMetrics, "TC": ..., "WT": ...}`` with the BraTS 2017-2022 empty-mask
    rules (see the module docstring).

    Only the labelled voxels are visited after one pass over each volume, so the cost follows the tumour
    size, not the volume size (far-away false-positive specks cost nothing extra).
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    _check_pair(pred, gt)
    s = _spacing(spacing, pred.ndim)
    n_total = int(pred.size)
    lut = _region_lut(convention)
    gt_flat = _flat(gt)
    sp = _sparse(_flat(pred), pred.shape, lut)
    sg = _sparse(gt_flat, gt.shape, lut)
    gt_bits_at_p = _bits(gt_flat[sp.idx], lut)  # reference regions of every predicted voxel

    out: dict[str, RegionMetrics] = {}
    for bit, region in enumerate(REGIONS):
        b = np.uint8(1 << bit)
        in_p = (sp.bits & b) != 0
        n_p = int(np.count_nonzero(in_p))
        n_g = int(np.count_nonzero(sg.bits & b))
        n_pg = int(np.count_nonzero(in_p & ((gt_bits_at_p & b) != 0)))
        if n_p == 0 and n_g == 0:
            h, penalty = 0.0, False
        elif n_p == 0 or n_g == 0:
            h, penalty = HD95_PENALTY, True
        else:
            on_p, on_g = (sp.surface & b) != 0, (sg.surface & b) != 0
            d = _surface_distances_sparse(sp.idx[on_p], sp.coords[on_p], sg.idx[on_g], sg.coords[on_g], s)
            h, penalty = _hd95_from(*d), False
        out[region] = RegionMetrics(
            dice=_dice_counts(n_p, n_g, n_pg),
            hd95=h,
            sensitivity=_sens_counts(n_p, n_g, n_pg),
            specificity=_spec_counts(n_p, n_g, n_pg, n_total),
            penalty=penalty,
        )
    return out
