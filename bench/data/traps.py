"""Phantom traps for BraTS post-processing: the two failures that post-processing repairs on real scans.

Opt-in (``synthesize(..., traps=True)``, ``bench data synth --traps``); the default phantoms do not change.

- **faint spurious enhancement** in low-grade-like cases (reference without ET): a few small blobs inside the
  non-enhancing core that are brighter on T1ce than white matter but fainter than a real enhancing rim. A
  model that has learned "bright on T1ce inside a core is ET" predicts a little ET there, which scores ET Dice
  0 under the BraTS empty-reference rule; replacing a small predicted ET by necrosis repairs it.
- **bright non-tumour FLAIR spots far from the lesion**: blobs with the contrast of oedema (bright on FLAIR and
  T2) in the white matter, at least ``FAR_MM`` from any tumour voxel and labelled background. A model predicts
  oedema there: stray components far from the tumour that cost WT Dice and, above all, HD95; removing
  components far from or much smaller than the main tumour repairs it.

Each trap is drawn from its own generator (``plan.trap_seed``), so the rest of the phantom is the one the same
seed draws without traps.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from bench.data.fields import box, coords, radius, ramp

__all__ = ["FAINT_T1CE", "FAR_MM", "trap_fields"]

FAINT_T1CE = 1.45  # relative to white matter (1.0): fainter than the enhancing rim (1.72) and vessels (1.70)
FAR_MM = 30.0  # the FLAIR spots' least distance from the tumour, in reference millimetres


def _blob(field: np.ndarray, center: np.ndarray, r: float) -> None:
    """Raise ``field`` (a box-shaped array) to a soft ball of radius ``r`` voxels around ``center``."""
    lo, hi = box(center, np.full(3, r + 1.0), field.shape)
    sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    ball = ramp(r * (1.0 - radius(coords(lo, hi, center, np.full(3, r)))))
    np.maximum(field[sl], ball, out=field[sl])


def trap_fields(plan: Any, label: np.ndarray, brain: np.ndarray, idx: np.ndarray,
                scale: float) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(spurious T1ce enhancement, far FLAIR spots) as fractions over the brain voxels ``idx`` (flat indices
    into the brain box), or None where the case has none. ``label``: BraTS labels on the box; ``brain``: the
    box's brain mask; ``scale``: voxels per reference millimetre."""
    rng = np.random.default_rng([int(plan.trap_seed), 20])
    spur = None
    core = np.argwhere(label == 1)
    if plan.low_grade and len(core):
        field = np.zeros(label.shape, np.float32)
        for k in rng.choice(len(core), size=min(3, len(core)), replace=False):
            _blob(field, core[k].astype(np.float64), float(rng.uniform(1.8, 2.8)) * scale)
        field *= label == 1  # stays inside the non-enhancing core
        spur = field.reshape(-1)[idx]
    far = ndimage.distance_transform_edt(label == 0) > FAR_MM * scale
    depth = ndimage.distance_transform_edt(brain) > 12.0 * scale  # white matter, away from the cortex
    where = np.argwhere(far & depth)
    spots = None
    if len(where):
        field = np.zeros(label.shape, np.float32)
        for k in rng.choice(len(where), size=min(2, len(where)), replace=False):
            _blob(field, where[k].astype(np.float64), float(rng.uniform(3.0, 5.0)) * scale)
        field *= brain
        spots = field.reshape(-1)[idx]
    return spur, spots
