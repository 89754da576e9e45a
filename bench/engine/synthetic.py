"""An in-memory stand-in for a prepared dataset, made of synthetic phantoms (no files).

:class:`MemoryDataset` has the interface of ``bench.data.prepare.PreparedDataset`` that the engine uses
(``load``, ``train_ids``, ``val_ids``, ``test_ids``, ``case_ids``, ``unlabeled_ids``, ``fingerprint``,
``n_folds``), with the same preprocessing as the cache (crop to the brain, min-max to [0, 1] per modality,
labels as class indices). Used by fast tests, ``benchmarks/gpu_check.py`` (a bare GPU box) and benchmarks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.data.formats import MODALITIES, brats_affine, brats_to_classes

__all__ = ["MemoryDataset", "SimpleMeta", "SimpleCase", "preprocess"]


@dataclass
class SimpleMeta:
    case_id: str
    format: str
    source_shape: tuple[int, int, int]
    affine: np.ndarray
    spacing: tuple[float, float, float]
    bbox: tuple[tuple[int, int], ...]
    working_shape: tuple[int, int, int]
    working_spacing: tuple[float, float, float]


@dataclass
class SimpleCase:
    case_id: str
    image: np.ndarray
    label: np.ndarray | None
    meta: SimpleMeta


def preprocess(case_id: str, image: np.ndarray, label_brats: np.ndarray | None) -> tuple[SimpleCase, np.ndarray | None]:
    """Crop to the non-zero brain box, min-max each modality to [0, 1], labels -> classes.
    Returns the case and its source-grid BraTS label."""
    brain = np.any(image != 0, axis=0)
    if label_brats is not None:
        brain |= label_brats > 0
    idx = np.nonzero(brain)
    bbox = tuple((int(i.min()), int(i.max()) + 1) for i in idx) if idx[0].size else tuple(
        (0, s) for s in image.shape[1:])
    sl = tuple(slice(a, b) for a, b in bbox)
    img = image[(slice(None), *sl)].astype(np.float32)
    for c in range(img.shape[0]):
        lo, hi = float(img[c].min()), float(img[c].max())
        img[c] = (img[c] - lo) / (hi - lo) if hi > lo else 0.0
    lab = brats_to_classes(label_brats[sl]) if label_brats is not None else None
    shape = tuple(int(s) for s in image.shape[1:])
    meta = SimpleMeta(case_id, "brats2019", shape, brats_affine(shape), (1.0, 1.0, 1.0), bbox,  # type: ignore[arg-type]
                      tuple(img.shape[1:]), (1.0, 1.0, 1.0))  # type: ignore[arg-type]
    return SimpleCase(case_id, np.ascontiguousarray(img), lab, meta), label_brats


class MemoryDataset:
    """Synthetic phantoms of ``shape`` kept in memory; fold split: 20% test, the rest split into ``folds``."""

    def __init__(self, cases: int = 8, shape: tuple[int, int, int] = (64, 64, 48), seed: int = 0, folds: int = 2,
                 unlabeled: int = 0):
        from bench.data.synth import make_phantom, plan_cases

        rng = np.random.default_rng([seed, 11])
        plans = plan_cases(cases + unlabeled, rng)
        self._cases: dict[str, SimpleCase] = {}
        self._source: dict[str, np.ndarray] = {}
        self.case_ids: list[str] = []
        self.unlabeled_ids: list[str] = []
        for i, plan in enumerate(plans):
            ph = make_phantom(shape, np.random.default_rng([seed, i]), plan)
            image = np.stack([ph.images[m] for m in MODALITIES]).astype(np.float32)
            labeled = i < cases
            cid = f"SYN_{i:03d}" if labeled else f"UNL_{i:03d}"
            case, src = preprocess(cid, image, np.asarray(ph.label, np.uint8))
            if not labeled:
                case.label = None
                self.unlabeled_ids.append(cid)
            else:
                self.case_ids.append(cid)
                self._source[cid] = src  # type: ignore[assignment]
            self._cases[cid] = case
        self.n_folds = folds
        self.format = "brats2019"
        self.fingerprint = hashlib.sha256(f"memory:{cases}:{shape}:{seed}:{folds}:{unlabeled}".encode()).hexdigest()[:16]
        n_test = max(1, round(0.2 * cases)) if cases >= 3 else 0
        self._test = self.case_ids[:n_test]
        rest = self.case_ids[n_test:]
        self._folds = [rest[k::folds] for k in range(folds)]

    def load(self, case_id: str) -> SimpleCase:
        return self._cases[case_id]

    def source_label(self, case_id: str) -> np.ndarray:
        return self._source[case_id]

    def train_ids(self, fold: int) -> list[str]:
        return [c for k, f in enumerate(self._folds) if k != fold % self.n_folds for c in f]

    def val_ids(self, fold: int) -> list[str]:
        return list(self._folds[fold % self.n_folds])

    def test_ids(self) -> list[str]:
        return list(self._test)

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__
