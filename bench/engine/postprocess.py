"""Post-processing of predicted BraTS label maps, and its choice on validation cases (nnU-Net's rule).

The steps work on the final uint8 BraTS labels {0, 1, 2, 4} on the case's source grid (what is written and
evaluated), with volumes and distances in mm from the source spacing. The inference-phase tricks
``et_to_necrosis`` and ``drop_stray_components`` put them in ``InferenceConfig.postprocess``; they run in that
tuple's order after the probabilities are mapped back to the source grid (``bench.engine.infer.predict_case``).

- :class:`SmallEtToNecrosis`: a predicted enhancing tumour smaller than ``min_volume`` mm^3 (but not empty)
  becomes necrosis (label 1): on a low-grade case without ET, a few false-positive ET voxels score ET Dice 0
  under the BraTS empty-reference rule, while an empty prediction scores 1 (Isensee et al., BraTS 2018 and
  2020). TC and WT do not change (necrosis and ET are both core).
- :class:`DropStrayComponents`: connected components of the whole tumour (26-connectivity) other than the
  largest are removed (set to background) when they are smaller than ``min_fraction`` of the largest, or
  farther than ``max_distance`` mm from it (0: no distance rule).

``select = "validation"`` on a step: its parameters are chosen on the validation cases of the models' own
folds, as nnU-Net chooses its post-processing: each validation case is predicted by the model of the fold it
validates (out of fold: with model fusion, never by a model that trained on it); the predictions are made once without
post-processing, then for each step in order the candidates of :meth:`candidates` (the given value and a ladder
around it) are applied on top of the steps chosen before, and the best by mean validation Dice (ET, TC, WT, the
BraTS empty rule) is kept only if it is strictly better than leaving the step out. See
:func:`bench.engine.api.select_postprocess`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy import ndimage

__all__ = ["SmallEtToNecrosis", "DropStrayComponents", "SELECT", "apply_postprocess", "mean_region_dice",
           "choose_steps"]

SELECT: tuple[str, ...] = ("fixed", "validation")
_LADDER = (0.25, 0.5, 1.0, 2.0, 4.0)  # candidate multiples of a threshold when chosen on validation


def _voxel_mm3(spacing: Sequence[float]) -> float:
    return float(np.prod([float(s) for s in spacing]))


@dataclass(frozen=True)
class SmallEtToNecrosis:
    """ET below ``min_volume`` mm^3 (and above 0) -> necrosis (label 1)."""

    trick: ClassVar[str] = "et_to_necrosis"
    min_volume: float = 500.0
    select: str = "fixed"

    def __call__(self, labels: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
        et = labels == 4
        n = int(et.sum())
        if n == 0 or n * _voxel_mm3(spacing) >= self.min_volume:
            return labels
        out = labels.copy()
        out[et] = 1
        return out

    def candidates(self) -> list[SmallEtToNecrosis]:
        return [SmallEtToNecrosis(self.min_volume * f, "fixed") for f in _LADDER]

    def describe(self) -> str:
        return f"{self.trick}(min_volume={self.min_volume:g} mm3)"


@dataclass(frozen=True)
class DropStrayComponents:
    """Whole-tumour components other than the largest: removed when smaller than ``min_fraction`` of it or
    farther than ``max_distance`` mm from it (0: no distance rule)."""

    trick: ClassVar[str] = "drop_stray_components"
    min_fraction: float = 0.1
    max_distance: float = 20.0
    select: str = "fixed"

    def __call__(self, labels: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
        wt = labels > 0
        if not wt.any():
            return labels
        hit = [np.flatnonzero(np.any(wt, axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)]
        box = tuple(slice(int(h[0]), int(h[-1]) + 1) for h in hit)  # the components' bounding box only
        comp, n = ndimage.label(wt[box], structure=np.ones((3, 3, 3), bool))
        if n <= 1:
            return labels
        sizes = np.bincount(comp.ravel())[1:]
        main = int(np.argmax(sizes)) + 1
        keep = sizes >= self.min_fraction * sizes.max()
        if self.max_distance > 0:
            dist = ndimage.distance_transform_edt(comp != main, sampling=[float(s) for s in spacing])
            nearest = np.asarray(ndimage.minimum(dist, comp, index=np.arange(1, n + 1)))
            keep &= nearest <= self.max_distance
        keep[main - 1] = True
        if keep.all():
            return labels
        lut = np.concatenate([[True], keep])
        out = labels.copy()
        out[box][~lut[comp]] = 0
        return out

    def candidates(self) -> list[DropStrayComponents]:
        fractions = sorted({min(1.0, self.min_fraction * f) for f in (0.5, 1.0, 2.0)})
        distances = sorted({0.0} | {self.max_distance * f for f in (0.5, 1.0, 2.0)})
        return [DropStrayComponents(fr, d, "fixed") for fr in fractions for d in distances]

    def describe(self) -> str:
        far = f"{self.max_distance:g} mm" if self.max_distance > 0 else "off"
        return f"{self.trick}(min_fraction={self.min_fraction:g}, max_distance={far})"


def apply_postprocess(labels: np.ndarray, steps: Sequence[Any], spacing: Sequence[float]) -> np.ndarray:
    """``labels`` through every step in order."""
    for step in steps:
        labels = step(labels, spacing)
    return labels


def mean_region_dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Mean Dice of ET, TC and WT between two BraTS-2019 label maps, with the evaluation's Dice
    (:func:`bench.evaluation.metrics.dice`: both empty -> 1, one empty -> 0)."""
    from bench.evaluation.metrics import dice

    return float(np.mean([dice(np.isin(pred, labels), np.isin(ref, labels))
                          for labels in ((4,), (1, 4), (1, 2, 4))]))


def choose_steps(steps: Sequence[Any], cases: Sequence[tuple[np.ndarray, np.ndarray, Sequence[float]]]
                 ) -> tuple[tuple[Any, ...], list[str]]:
    """The steps to use, each ``select = "validation"`` one replaced by its best candidate or dropped (see the
    module docstring); ``cases``: (prediction without post-processing, reference, spacing). Returns the steps
    and one line per step saying what was chosen and the mean validation Dice."""
    current = [p for p, _, _ in cases]

    def score(preds: Sequence[np.ndarray]) -> float:
        return float(np.mean([mean_region_dice(p, r) for p, (_, r, _) in zip(preds, cases)]))

    base = score(current)
    chosen: list[Any] = []
    report: list[str] = []
    for step in steps:
        if step.select != "validation":
            chosen.append(step)
            current = [step(p, sp) for p, (_, _, sp) in zip(current, cases)]
            base = score(current)
            continue
        best, best_score, best_preds = None, base, current
        for cand in step.candidates():
            preds = [cand(p, sp) for p, (_, _, sp) in zip(current, cases)]
            s = score(preds)
            if s > best_score + 1e-12:
                best, best_score, best_preds = cand, s, preds
        if best is None:
            report.append(f"{step.trick}: off (no candidate improved the mean validation Dice {base:.4f} on "
                          f"{len(cases)} cases)")
        else:
            report.append(f"{step.trick}: {best.describe()} (mean validation Dice {base:.4f} -> {best_score:.4f} "
                          f"on {len(cases)} cases)")
            chosen.append(best)
            current, base = best_preds, best_score
    return tuple(chosen), report


def step_from(obj: Any) -> Any:
    """Identity for a step; a helpful error otherwise (``[inference] postprocess`` is set by tricks)."""
    if not (callable(obj) and getattr(obj, "select", None) in SELECT and dataclasses.is_dataclass(obj)):
        from bench.errors import SpecError

        raise SpecError("inference.postprocess is set by the post-processing tricks (et_to_necrosis, "
                        "drop_stray_components), not in [inference]")
    return obj
