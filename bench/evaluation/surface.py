"""Area-weighted surface distances and the robust Hausdorff distance (DeepMind ``surface-distance`` rules).

This is the HD95 of the BraTS 2023+ evaluator (lesion-wise and "legacy" values), not the medpy pooled HD95 of
:mod:`bench.evaluation.metrics`. Definitions, for two boolean masks on one grid:

- Surfels live on the voxel corners: the corner between voxels ``i-1`` and ``i`` on every axis gets the
  8-bit code of its 2x2x2 neighbourhood (outside the array = background); a corner whose code is neither 0
  nor 255 is a surfel, its area is the summed length of the marching-cubes triangle normals of that code
  (:mod:`bench.evaluation._surfel_normals`) scaled by the spacing.
- Each surfel of one mask gets its Euclidean distance (mm) to the nearest surfel of the other mask.
- The robust Hausdorff distance at ``percent``: per direction, the distances sorted by (distance, area), the
  first one whose cumulated area fraction reaches ``percent/100``; the maximum of the two directions. A
  mask without surfels gives ``inf`` in its direction.

Only a box holding both masks is visited (the caller crops); distances come from a KD-tree over the surfels
and are recomputed from the integer offsets the way scipy's ``distance_transform_edt`` rounds them, so the
values equal the package's (which runs an EDT over the box).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from scipy import ndimage

from bench.evaluation._surfel_normals import NORMALS
from bench.evaluation.metrics import _directed

__all__ = ["Surfels", "surfels", "surfel_area_table", "robust_hausdorff", "robust_hausdorff_surfels", "robust_hd95"]

# bit weights of the 2x2x2 neighbourhood: weight 128 on voxel (i-1, j-1, k-1) ... 1 on voxel (i, j, k)
_KERNEL = np.array([[[128, 64], [32, 16]], [[8, 4], [2, 1]]], dtype=np.uint8)


@lru_cache(maxsize=32)
def _area_table(spacing: tuple[float, float, float]) -> np.ndarray:
    s0, s1, s2 = spacing
    table = np.zeros(256, dtype=np.float64)
    for code, normals in enumerate(NORMALS):
        total = 0.0
        for nx, ny, nz in normals:
            n = np.zeros(3)
            n[0] = nx * s1 * s2  # area vectors scale with the other two axes' spacing
            n[1] = ny * s0 * s2
            n[2] = nz * s0 * s1
            total += float(np.linalg.norm(n))
        table[code] = total
    table.setflags(write=False)
    return table


def surfel_area_table(spacing: Sequence[float]) -> np.ndarray:
    """Area (mm^2) of the surfel of every 2x2x2 neighbourhood code for voxels of size ``spacing``."""
    return _area_table(tuple(float(s) for s in spacing))  # type: ignore[arg-type]


class Surfels:
    """The surfels of one mask: integer corner coordinates ``(N, 3)`` and areas ``(N,)`` in mm^2."""

    __slots__ = ("coords", "areas")

    def __init__(self, coords: np.ndarray, areas: np.ndarray) -> None:
        self.coords = coords
        self.areas = areas

    @staticmethod
    def join(parts: list[Surfels]) -> Surfels:
        """The surfels of disjoint pieces of one mask (their 2x2x2 neighbourhoods must not overlap)."""
        if not parts:
            return Surfels(np.zeros((0, 3), np.int64), np.zeros(0, np.float64))
        return Surfels(np.concatenate([p.coords for p in parts]), np.concatenate([p.areas for p in parts]))


def surfels(mask: np.ndarray, spacing: Sequence[float], offset: Sequence[int] | None = None) -> Surfels:
    """Surfels of a 3-D boolean mask; corner ``c`` lies between voxels ``c-1`` and ``c`` (0 .. shape).

    ``offset`` (the position of ``mask[0, 0, 0]`` in a larger volume) is added to the coordinates.
    """
    padded = np.zeros(tuple(n + 1 for n in mask.shape), dtype=np.uint8)
    padded[:-1, :-1, :-1] = mask
    codes = ndimage.correlate(padded, _KERNEL, mode="constant", cval=0)
    border = (codes != 0) & (codes != 255)
    coords = np.argwhere(border)
    if offset is not None:
        coords += np.asarray(offset, dtype=coords.dtype)
    return Surfels(coords, surfel_area_table(spacing)[codes[border]])


def _percentile_distance(dist: np.ndarray, areas: np.ndarray, percent: float) -> float:
    if dist.size == 0:
        return float("inf")
    order = np.lexsort((areas, dist))
    # the same (N, 2) layout the reference sorts into, so np.sum adds the areas in the same blocks
    pairs = np.stack((dist[order], areas[order]), axis=1)
    d, a = pairs[:, 0], pairs[:, 1]
    cum = np.cumsum(a) / np.sum(a)
    idx = int(np.searchsorted(cum, percent / 100.0))
    return float(d[min(idx, d.size - 1)])


def robust_hausdorff(gt: np.ndarray, pred: np.ndarray, spacing: Sequence[float], percent: float = 95.0) -> float:
    """Robust Hausdorff distance (mm) between two boolean masks of the same box; ``inf`` if one is empty.

    Both masks empty gives ``inf`` too (no surfel in either direction), as in the reference package; the
    BraTS callers decide the empty cases before calling.
    """
    if gt.shape != pred.shape:
        raise ValueError(f"mask shapes differ: {gt.shape} vs {pred.shape}")
    return robust_hausdorff_surfels(surfels(gt, spacing), surfels(pred, spacing), spacing, percent)


def robust_hausdorff_surfels(
    sg: Surfels, sp: Surfels, spacing: Sequence[float], percent: float = 95.0
) -> float:
    """:func:`robust_hausdorff` from the surfels of the two masks (coordinates in one frame)."""
    s = np.asarray([float(v) for v in spacing], dtype=np.float64)
    if sg.coords.shape[0] == 0 or sp.coords.shape[0] == 0:
        return float("inf")
    d_gp = _directed(sg.coords, sp.coords, s)
    d_pg = _directed(sp.coords, sg.coords, s)
    return max(_percentile_distance(d_gp, sg.areas, percent), _percentile_distance(d_pg, sp.areas, percent))


def robust_hd95(gt: np.ndarray, pred: np.ndarray, spacing: Sequence[float]) -> float:
    """:func:`robust_hausdorff` at the 95th percentile."""
    return robust_hausdorff(gt, pred, spacing, 95.0)
