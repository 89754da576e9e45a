"""Where training patches come from: patch plans, samplers (crop corners), augmentations.

These are the baseline fillers of the ``patch_plan``, ``sampler`` and ``augment`` slots. They run inside
DataLoader worker processes, so every filler must be a picklable object (a module-level class instance, not a
lambda or closure) and must draw its randomness only from the ``numpy.random.Generator`` it is given: the
loader derives that generator from ``(seed, iteration, sample)``, which makes a batch a pure function of the
iteration (identical with any number of workers and after a resume).

Coordinates: a case volume has shape ``(X, Y, Z)`` (the prepared crop on the working grid); a patch edge is
``(px, py, pz)``; a *corner* is the first voxel of the patch and may be negative or exceed ``shape - patch``
when the volume is smaller than the patch, in which case :func:`crop` pads with zeros (background).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

__all__ = [
    "Corner", "Patch3", "CaseLike", "Sampler", "PatchPlan", "Augment", "corner_range", "crop", "foreground_count",
    "UniformSampler", "FixedPatchPlan", "Mirror", "NoAugment", "as_patch3",
]

Corner = tuple[int, int, int]
Patch3 = tuple[int, int, int]


class CaseLike(Protocol):
    """What a sampler sees of a case: ``PreparedCase`` satisfies it (arrays may be memmaps)."""

    case_id: str
    image: np.ndarray  # (C, X, Y, Z) float32
    label: np.ndarray | None  # (X, Y, Z) uint8 class indices


class Sampler(Protocol):
    """``sampler(case, patch, rng) -> corner``: where to crop one training patch in a case."""

    def __call__(self, case: CaseLike, patch: Patch3, rng: np.random.Generator) -> Corner: ...


class PatchPlan(Protocol):
    """``plan(iteration, rng) -> (patch_edge, batch_size)`` for one optimiser step.

    ``patch_edge`` is an int (cubic patches) or a 3-tuple. Every patch edge must suit the model (a multiple
    of ``2**depth`` is fastest; other sizes are padded inside the model).
    """

    def __call__(self, iteration: int, rng: np.random.Generator) -> tuple[int | Patch3, int]: ...


class Augment(Protocol):
    """``augment(image, label, rng) -> (image, label)`` on one cropped patch (numpy, C-contiguous copies)."""

    def __call__(
        self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]: ...


def as_patch3(patch: int | Sequence[int]) -> Patch3:
    if isinstance(patch, (int, np.integer)):
        return (int(patch),) * 3  # type: ignore[return-value]
    p = tuple(int(v) for v in patch)
    if len(p) != 3:
        raise ValueError(f"patch must be an int or 3 ints, got {patch!r}")
    return p  # type: ignore[return-value]


def corner_range(shape: Sequence[int], patch: Sequence[int]) -> tuple[Corner, Corner]:
    """Inclusive (low, high) corners that keep the patch inside the volume, or centred-with-padding ranges
    (low < 0) on axes where the volume is smaller than the patch."""
    lo = tuple(min(0, int(s) - int(p)) for s, p in zip(shape, patch))
    hi = tuple(max(0, int(s) - int(p)) for s, p in zip(shape, patch))
    return lo, hi  # type: ignore[return-value]


def crop(array: np.ndarray, corner: Sequence[int], patch: Sequence[int], fill: float = 0) -> np.ndarray:
    """Copy ``array[..., c:c+p]`` over the last three axes, padding with ``fill`` outside the volume.

    Reads only the needed part of a memmap.
    """
    spatial = array.shape[-3:]
    src, dst = [], []
    for c, p, s in zip(corner, patch, spatial):
        a, b = max(int(c), 0), min(int(c) + int(p), s)
        src.append(slice(a, max(a, b)))
        dst.append(slice(a - int(c), a - int(c) + max(0, b - a)))
    lead = array.shape[:-3]
    out = np.full(lead + tuple(int(p) for p in patch), fill, dtype=array.dtype)
    out[(Ellipsis, *dst)] = array[(Ellipsis, *src)]  # type: ignore[index,arg-type]
    return out


def foreground_count(label: np.ndarray | None, corner: Sequence[int], patch: Sequence[int]) -> int:
    """Number of non-background voxels of ``label`` inside the patch (0 for an unlabeled case)."""
    if label is None:
        return 0
    sl = tuple(slice(max(int(c), 0), max(int(c), 0) + max(0, min(int(c) + int(p), s) - max(int(c), 0)))
               for c, p, s in zip(corner, patch, label.shape))
    return int(np.count_nonzero(label[sl]))


@dataclass(frozen=True)
class UniformSampler:
    """Baseline sampler: a uniformly random corner inside the prepared (brain-cropped) volume."""

    def __call__(self, case: CaseLike, patch: Patch3, rng: np.random.Generator) -> Corner:
        lo, hi = corner_range(case.image.shape[-3:], patch)
        return tuple(int(rng.integers(a, b + 1)) for a, b in zip(lo, hi))  # type: ignore[return-value]


@dataclass(frozen=True)
class FixedPatchPlan:
    """Baseline patch plan: the same (patch, batch) every iteration."""

    patch: int | tuple[int, int, int]
    batch: int

    def __call__(self, iteration: int, rng: np.random.Generator) -> tuple[int | Patch3, int]:
        return self.patch, self.batch


@dataclass(frozen=True)
class Mirror:
    """Random flip along ``axis`` (0 = x, the left-right axis of BraTS volumes) with probability ``p``."""

    axis: int = 0
    p: float = 0.5

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
        if rng.random() < self.p:
            image = np.ascontiguousarray(np.flip(image, axis=1 + self.axis))
            label = np.ascontiguousarray(np.flip(label, axis=self.axis))
        return image, label


@dataclass(frozen=True)
class NoAugment:
    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
        return image, label
