"""Label conventions, regions and the canonical in-memory form shared by every layer.

Canonical form (see BRATS.md): image float32 ``(4, X, Y, Z)`` in channel order T1, T1ce, T2, FLAIR; label map
in the BraTS 2019 convention {0, 1, 2, 4}; plus the source affine and spacing so predictions go back in the
source geometry and label convention.

Inside the engine labels are *class indices* 0..3 (``CLASS_LABELS[i]`` is the BraTS label of class ``i``),
so class 3 is enhancing tumour.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "MODALITIES", "REGIONS", "CLASS_LABELS", "HD95_PENALTY", "LabelConvention", "BRATS2019", "BRATS2023", "MSD",
    "CONVENTIONS", "FORMATS", "Case", "region_masks", "to_brats", "from_brats", "brats_to_classes",
    "classes_to_brats", "brats_affine", "CLASS_REGIONS",
]

MODALITIES: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")
REGIONS: tuple[str, ...] = ("ET", "TC", "WT")
CLASS_LABELS: tuple[int, ...] = (0, 1, 2, 4)  # class index -> BraTS 2019 label
# Diagonal of a 240 x 240 x 155 mm BraTS volume: the HD95 given when exactly one mask is empty.
HD95_PENALTY: float = 373.13


@dataclass(frozen=True)
class LabelConvention:
    """How one dataset family writes its labels, and how they map to BraTS 2019 labels."""

    name: str
    labels: tuple[int, ...]
    regions: dict[str, tuple[int, ...]]  # region -> labels of this convention
    to_brats2019: dict[int, int]  # this convention's label -> BraTS 2019 label

    @property
    def from_brats2019(self) -> dict[int, int]:
        return {v: k for k, v in self.to_brats2019.items()}


BRATS2019 = LabelConvention(
    "brats2019", (0, 1, 2, 4), {"ET": (4,), "TC": (1, 4), "WT": (1, 2, 4)}, {0: 0, 1: 1, 2: 2, 4: 4}
)
BRATS2023 = LabelConvention(
    "brats2023", (0, 1, 2, 3), {"ET": (3,), "TC": (1, 3), "WT": (1, 2, 3)}, {0: 0, 1: 1, 2: 2, 3: 4}
)
# MSD Task01: 1 edema, 2 non-enhancing tumour, 3 enhancing tumour. NOT the BraTS numbering.
MSD = LabelConvention("msd", (0, 1, 2, 3), {"ET": (3,), "TC": (2, 3), "WT": (1, 2, 3)}, {0: 0, 1: 2, 2: 1, 3: 4})

CONVENTIONS: dict[str, LabelConvention] = {c.name: c for c in (BRATS2019, BRATS2023, MSD)}
#: region -> the engine's class indices (positions in CLASS_LABELS) of its BraTS 2019 labels:
#: ET (3,), TC (1, 3), WT (1, 2, 3). Training targets, validation Dice and region decoding all read this.
CLASS_REGIONS: dict[str, tuple[int, ...]] = {
    r: tuple(CLASS_LABELS.index(lab) for lab in BRATS2019.regions[r]) for r in REGIONS
}
# Dataset layout name -> label convention. BraTS 2018-2021 share the 2019 layout and labels.
FORMATS: dict[str, LabelConvention] = {"brats2019": BRATS2019, "brats2023": BRATS2023, "msd": MSD}


def _lut(mapping: dict[int, int]) -> np.ndarray:
    lut = np.full(256, 255, dtype=np.uint8)
    for k, v in mapping.items():
        lut[k] = v
    return lut


def _apply(label: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    """Look ``label`` up in ``mapping`` without a full-size int64 temporary; unknown values become 255."""
    a = np.asarray(label)
    lut = _lut(mapping)
    if a.dtype == np.uint8:
        return lut[a]
    if a.dtype.kind == "f":
        a = np.rint(a)
    inside = (a >= 0) & (a <= 255)
    out = lut[np.where(inside, a, 255).astype(np.uint8)]
    out[~inside] = 255
    return out


def to_brats(label: np.ndarray, convention: LabelConvention) -> np.ndarray:
    """Map a label map of ``convention`` to BraTS 2019 labels (uint8). Unknown values become 255."""
    return _apply(label, convention.to_brats2019)


def from_brats(label: np.ndarray, convention: LabelConvention) -> np.ndarray:
    """Map BraTS 2019 labels to ``convention`` (uint8)."""
    return _apply(label, convention.from_brats2019)


def brats_to_classes(label: np.ndarray) -> np.ndarray:
    """BraTS 2019 labels {0,1,2,4} -> class indices {0,1,2,3} (uint8)."""
    return _apply(label, {lab: i for i, lab in enumerate(CLASS_LABELS)})


def classes_to_brats(classes: np.ndarray) -> np.ndarray:
    """Class indices {0,1,2,3} -> BraTS 2019 labels {0,1,2,4} (uint8)."""
    return _apply(classes, dict(enumerate(CLASS_LABELS)))


def region_masks(label: np.ndarray, convention: LabelConvention = BRATS2019) -> dict[str, np.ndarray]:
    """Boolean ET / TC / WT masks of a label map written in ``convention``."""
    return {r: np.isin(label, convention.regions[r]) for r in REGIONS}


def brats_affine(shape: tuple[int, int, int] = (240, 240, 155)) -> np.ndarray:
    """The affine of real BraTS files: diag(-1, -1, 1) with origin (0, Y-1, 0) (LPS, 1 mm)."""
    a = np.diag([-1.0, -1.0, 1.0, 1.0])
    a[1, 3] = shape[1] - 1
    return a


@dataclass
class Case:
    """One case in canonical form.

    ``image`` is float32 (4, X, Y, Z) in order T1, T1ce, T2, FLAIR (raw intensities, not normalised);
    ``label`` is uint8 in BraTS 2019 labels, or None for unlabeled cases.
    """

    case_id: str
    image: np.ndarray
    label: np.ndarray | None
    affine: np.ndarray
    spacing: tuple[float, float, float]
    format: str  # "brats2019" | "brats2023" | "msd"
    files: dict[str, Path] = field(default_factory=dict)  # role ("t1", ..., "seg", "image") -> path

    @property
    def convention(self) -> LabelConvention:
        return FORMATS[self.format]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.image.shape[1:])  # type: ignore[return-value]
