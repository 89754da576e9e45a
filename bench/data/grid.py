"""Moving arrays between a case's source grid and its working grid (crop + optional resampling)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from bench.data.formats import classes_to_brats

__all__ = ["resample", "working_geometry", "to_source_grid", "probs_to_source_labels", "classes_to_source_labels",
           "SourceGeometry"]


class SourceGeometry(Protocol):
    """Where a working-grid array goes back to: what these functions read of a case's record
    (:class:`bench.data.preprocess.CaseMeta` has it)."""

    @property
    def source_shape(self) -> tuple[int, int, int]: ...

    @property
    def crop_shape(self) -> tuple[int, int, int]: ...

    @property
    def crop_slices(self) -> tuple[slice, slice, slice]: ...


def resample(array: np.ndarray, shape: Sequence[int], *, mode: str = "linear") -> np.ndarray:
    """Resize (C, x, y, z) or (x, y, z) to the spatial ``shape``: "linear" (trilinear) or "nearest".

    Voxel centres are aligned the same way in both directions (``align_corners=False`` / nearest-exact), so
    going to the working grid and back is consistent.
    """
    arr = np.asarray(array)
    shape = tuple(int(s) for s in shape)
    if tuple(arr.shape[-3:]) == shape:
        return arr
    import torch
    import torch.nn.functional as F

    squeeze = arr.ndim == 3
    arr = arr[None] if squeeze else arr
    arr = np.ascontiguousarray(arr) if arr.flags.writeable else np.array(arr)  # torch refuses read-only memmaps
    t = torch.from_numpy(arr)[None]
    if mode == "linear":
        out = F.interpolate(t.float(), size=shape, mode="trilinear", align_corners=False)
    elif mode == "nearest":
        out = F.interpolate(t.float(), size=shape, mode="nearest-exact").to(t.dtype)
    else:
        raise ValueError(f"unknown resampling mode {mode!r} (linear, nearest)")
    res = out[0].numpy()
    return res[0] if squeeze else res


def working_geometry(
    crop_shape: Sequence[int], spacing: Sequence[float], target: float | None
) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """(working shape, working spacing) of a crop resampled to ``target`` mm (None: unchanged)."""
    if target is None:
        return tuple(int(s) for s in crop_shape), tuple(float(s) for s in spacing)  # type: ignore[return-value]
    shape = tuple(max(1, int(np.floor(n * s / target + 0.5))) for n, s in zip(crop_shape, spacing))
    wsp = tuple(float(n * s / w) for n, s, w in zip(crop_shape, spacing, shape))
    return shape, wsp  # type: ignore[return-value]




def to_source_grid(
    array: np.ndarray, meta: SourceGeometry, *, mode: str = "linear", fill: float | Sequence[float] = 0.0
) -> np.ndarray:
    """Put a working-grid array ((C, x, y, z) or (x, y, z)) back on the source grid: resample to the crop's
    shape, then paste at the bbox; outside it the value is ``fill`` (one per channel allowed)."""
    arr = np.asarray(array)
    crop = resample(arr, meta.crop_shape, mode=mode)
    lead = crop.shape[:-3]
    out = np.empty((*lead, *meta.source_shape), dtype=crop.dtype)
    fills = np.broadcast_to(np.asarray(fill, dtype=crop.dtype), lead) if lead else np.asarray(fill, crop.dtype)
    if lead:
        for c in range(lead[0]):
            out[c] = fills[c]
    else:
        out[...] = fills
    out[(..., *meta.crop_slices)] = crop
    return out


def probs_to_source_labels(probs: np.ndarray, meta: SourceGeometry) -> np.ndarray:
    """Class probabilities or logits (4, x, y, z) on the working grid -> uint8 BraTS-2019 labels on the
    source grid (trilinear upsampling inside the bbox, argmax, background outside the bbox)."""
    crop = resample(np.asarray(probs, dtype=np.float32), meta.crop_shape, mode="linear")
    out = np.zeros(meta.source_shape, np.uint8)
    out[meta.crop_slices] = classes_to_brats(np.argmax(crop, axis=0))
    return out


def classes_to_source_labels(classes: np.ndarray, meta: SourceGeometry) -> np.ndarray:
    """Class indices (x, y, z) on the working grid -> uint8 BraTS-2019 labels on the source grid (nearest)."""
    crop = resample(np.asarray(classes, dtype=np.uint8), meta.crop_shape, mode="nearest")
    out = np.zeros(meta.source_shape, np.uint8)
    out[meta.crop_slices] = classes_to_brats(crop)
    return out
