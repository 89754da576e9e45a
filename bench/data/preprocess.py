"""Per-case preprocessing (crop to the brain, normalise, resample to the working grid) and its record.

The record (:func:`preprocessing_record`) is what a model must be given again at prediction: a checkpoint stores
the record of the data it was trained on, and prediction prepares (or accepts) data only with an equal record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.data.formats import Case, brats_to_classes
from bench.data.grid import resample, working_geometry

__all__ = [
    "PREPROCESS_VERSION", "NORMALIZATIONS", "CROP_RULE", "CaseMeta", "PreparedCase", "brain_bbox",
    "preprocess_case", "preprocessing_record", "describe_preprocessing", "preprocessing_differences",
]

PREPROCESS_VERSION = 1
NORMALIZATIONS: tuple[str, ...] = ("minmax", "zscore")
# The crop of PREPROCESS_VERSION 1: the bounding box of the voxels non-zero in any modality, united with the
# tumour's box (a new crop rule is a new PREPROCESS_VERSION).
CROP_RULE = "nonzero-bbox"

BBox = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


@dataclass(frozen=True)
class CaseMeta:
    """Where a prepared case came from and how to map it back.

    ``bbox`` is ((x0, x1), (y0, y1), (z0, z1)) in source voxels, half-open (``source[x0:x1, y0:y1, z0:z1]``
    is the crop); ``working_shape`` / ``working_spacing`` describe the stored arrays (equal to the crop's
    shape and the source spacing when no working spacing was asked for).
    """

    case_id: str
    format: str
    source_shape: tuple[int, int, int]
    affine: np.ndarray
    spacing: tuple[float, float, float]
    bbox: BBox
    working_shape: tuple[int, int, int]
    working_spacing: tuple[float, float, float]

    @property
    def crop_shape(self) -> tuple[int, int, int]:
        return tuple(b - a for a, b in self.bbox)  # type: ignore[return-value]

    @property
    def crop_slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(a, b) for a, b in self.bbox)  # type: ignore[return-value]

    @property
    def resampled(self) -> bool:
        return tuple(self.working_shape) != tuple(self.crop_shape)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CaseMeta) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_json(), sort_keys=True))

    def to_json(self) -> dict:
        return {
            "case_id": self.case_id, "format": self.format, "source_shape": list(self.source_shape),
            "affine": np.asarray(self.affine).tolist(), "spacing": list(self.spacing),
            "bbox": [list(b) for b in self.bbox], "working_shape": list(self.working_shape),
            "working_spacing": list(self.working_spacing),
        }

    @classmethod
    def from_json(cls, d: dict) -> CaseMeta:
        return cls(
            d["case_id"], d["format"], tuple(d["source_shape"]), np.asarray(d["affine"], dtype=np.float64),
            tuple(float(s) for s in d["spacing"]), tuple(tuple(b) for b in d["bbox"]),  # type: ignore[arg-type]
            tuple(d["working_shape"]), tuple(float(s) for s in d["working_spacing"]),  # type: ignore[arg-type]
        )


@dataclass
class PreparedCase:
    """One prepared case: ``image`` float32 (4, x, y, z) (memory-mapped), ``label`` uint8 class indices 0..3 on
    the same grid (None for unlabeled cases), ``meta`` to map back to the source grid."""

    case_id: str
    image: np.ndarray
    label: np.ndarray | None
    meta: CaseMeta


# ---------------------------------------------------------------------------------------------------------
# per-case preprocessing


def brain_bbox(image: np.ndarray, label: np.ndarray | None = None) -> BBox:
    """Half-open bounding box of the voxels non-zero in any channel of ``image`` (C, X, Y, Z), united with
    the label's non-zero voxels. The whole volume when everything is zero."""
    nz = np.any(image != 0, axis=0)
    if label is not None:
        nz |= label != 0
    out = []
    for ax in range(3):
        other = tuple(a for a in range(3) if a != ax)
        hit = np.flatnonzero(np.any(nz, axis=other))
        out.append((int(hit[0]), int(hit[-1]) + 1) if hit.size else (0, int(nz.shape[ax])))
    return tuple(out)  # type: ignore[return-value]


def _normalise(crop: np.ndarray, normalization: str) -> np.ndarray:
    out = np.empty_like(crop, dtype=np.float32)
    if normalization == "minmax":
        for c in range(crop.shape[0]):
            lo, hi = float(crop[c].min()), float(crop[c].max())
            out[c] = (crop[c] - lo) / (hi - lo) if hi > lo else 0.0
    else:
        brain = np.any(crop != 0, axis=0)
        for c in range(crop.shape[0]):
            vals = crop[c][brain]
            mean = float(vals.mean()) if vals.size else 0.0
            std = float(vals.std()) if vals.size else 1.0
            out[c] = np.where(brain, (crop[c] - mean) / (std if std > 0 else 1.0), 0.0)
    return out


def preprocess_case(
    case: Case, *, spacing: float | None = None, normalization: str = "minmax"
) -> tuple[np.ndarray, np.ndarray | None, CaseMeta, np.ndarray | None]:
    """(working image float32 (4,x,y,z), working label classes uint8 or None, meta, source label crop or None)."""
    bbox = brain_bbox(case.image, case.label)
    sl = tuple(slice(a, b) for a, b in bbox)
    crop = _normalise(case.image[(slice(None), *sl)], normalization)
    wshape, wsp = working_geometry(crop.shape[1:], case.spacing, spacing)
    image = resample(crop, wshape, mode="linear").astype(np.float32, copy=False)
    label = src_crop = None
    if case.label is not None:
        src_crop = np.ascontiguousarray(case.label[sl])
        label = resample(brats_to_classes(src_crop), wshape, mode="nearest").astype(np.uint8, copy=False)
    meta = CaseMeta(
        case.case_id, case.format, tuple(int(s) for s in case.image.shape[1:]),  # type: ignore[arg-type]
        np.asarray(case.affine, dtype=np.float64), tuple(float(s) for s in case.spacing),  # type: ignore[arg-type]
        bbox, wshape, wsp,
    )
    return image, label, meta, src_crop


def preprocessing_record(spacing: float | None, normalization: str,
                         version: int = PREPROCESS_VERSION) -> dict[str, Any]:
    """What prediction must repeat of a model's training data: working spacing (None: the source grid),
    normalisation, crop rule and preprocessing version. Stored in checkpoints and compared at prediction."""
    return {"spacing": None if spacing is None else float(spacing), "normalization": str(normalization),
            "crop": CROP_RULE if int(version) == 1 else f"version-{int(version)}", "version": int(version)}


def describe_preprocessing(record: dict[str, Any]) -> str:
    """One short phrase: ``2 mm grid, minmax, nonzero-bbox crop`` (``source grid`` when no spacing)."""
    sp = record.get("spacing")
    grid = "source grid" if sp is None else f"{float(sp):g} mm grid"
    return f"{grid}, {record.get('normalization')} normalisation, {record.get('crop')} crop"


def preprocessing_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The keys of two records that differ (empty when equal)."""
    keys = ("spacing", "normalization", "crop", "version")
    return [k for k in keys if json.dumps(a.get(k)) != json.dumps(b.get(k))]
