"""Smooth random fields and small geometry helpers of the synthetic phantoms (bench.data.synth, bench.data.traps).

Smooth fields are drawn on a coarse knot grid and interpolated with separable cubic B-spline matrices.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["bspline_matrix", "smooth", "ramp", "box", "coords", "radius"]


def bspline_matrix(n_out: int, n_knots: int) -> np.ndarray:
    """(n_out, n_knots) cubic B-spline interpolation weights, rows summing to 1."""
    t = np.linspace(0.0, n_knots - 1.0, n_out) if n_out > 1 else np.zeros(1)
    d = np.abs(t[:, None] - np.arange(n_knots)[None, :])
    w = np.where(d < 1, 2 / 3 - d**2 + d**3 / 2, np.where(d < 2, (2 - d) ** 3 / 6, 0.0))
    w /= w.sum(axis=1, keepdims=True)
    return w.astype(np.float32)


def smooth(rng: np.random.Generator, shape: Sequence[int], knots: Sequence[int] | np.ndarray, n: int = 1) -> np.ndarray:
    """``n`` smooth random fields of ``shape`` with roughly unit standard deviation, float32 (n, X, Y, Z)."""
    knots = [max(2, min(int(k), int(s) // 2 + 2)) for k, s in zip(knots, shape)]  # no finer than the grid
    mx, my, mz = (bspline_matrix(int(s), k) for s, k in zip(shape, knots))
    gain = float(np.sqrt(np.mean((mx**2).sum(1)) * np.mean((my**2).sum(1)) * np.mean((mz**2).sum(1))))
    c = rng.standard_normal((n, *knots)).astype(np.float32) / np.float32(gain)
    a = c @ mz.T  # (n, kx, ky, Z)
    a = np.matmul(my, a)  # (n, kx, Y, Z)
    a = np.matmul(mx, a.reshape(n, knots[0], -1))  # (n, X, Y*Z)
    return a.reshape(n, *(int(s) for s in shape))


def ramp(x: np.ndarray) -> np.ndarray:
    """Partial-volume fraction of a signed distance in voxels (positive inside), in place."""
    x += 0.5
    return np.clip(x, 0.0, 1.0, out=x)


def box(center: np.ndarray, half: np.ndarray, lim: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    lo = np.maximum(np.floor(center - half).astype(int), 0)
    hi = np.minimum(np.ceil(center + half).astype(int) + 1, np.asarray(lim))
    return lo, hi


def coords(lo: np.ndarray, hi: np.ndarray, center: np.ndarray, radii: np.ndarray) -> list[np.ndarray]:
    """Broadcastable normalised coordinates (x - c) / r over the box [lo, hi)."""
    out = []
    for ax in range(3):
        g = ((np.arange(lo[ax], hi[ax]) - center[ax]) / radii[ax]).astype(np.float32)
        shp = [1, 1, 1]
        shp[ax] = g.size
        out.append(g.reshape(shp))
    return out


def radius(u: Sequence[np.ndarray]) -> np.ndarray:
    r = u[0] ** 2 + u[1] ** 2
    r = r + u[2] ** 2
    return np.sqrt(r, out=r)
