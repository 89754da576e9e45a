"""Small enhancing tumour to necrosis: BraTS post-processing at inference (not in the paper).

When the predicted enhancing tumour (ET, label 4) of a case is smaller than ``min_volume`` mm^3 (and not
empty), all of it becomes necrosis (label 1). On a low-grade case whose reference has no ET, a few false-positive
ET voxels score ET Dice 0 under the BraTS empty-reference rule while an empty ET scores 1; on a high-grade case
a real ET is large, so a threshold below its usual volume costs little. TC and WT do not change (necrosis and ET
are both tumour core). Isensee et al. used this rule in BraTS 2018 (No New-Net) and 2020 (nnU-Net), choosing the
threshold on cross-validation.

``min_volume`` default 500 mm^3 (a round value between a few stray voxel clusters and the smallest real
enhancing rims); ``select = "validation"`` chooses it instead on the validation cases of the models' folds from
``min_volume`` x (0.25, 0.5, 1, 2, 4), and leaves the rule out unless it raises the mean validation Dice
(:func:`bench.engine.api.select_postprocess`, nnU-Net's way of choosing post-processing).

Inference only: cells that differ only in this trick share their trainings. Adds a step to the ``postprocess``
slot (after ``drop_stray_components`` when both are on).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.engine.postprocess import SELECT, SmallEtToNecrosis
from bench.engine.recipe import Recipe
from tricks._base import Trick
from tricks._registry import register

__all__ = ["EtToNecrosis"]


@register
class EtToNecrosis(Trick):
    name = "et_to_necrosis"
    summary = "a predicted ET below min_volume mm^3 becomes necrosis (BraTS empty-ET rule; Isensee 2018/2020)"
    section = "none: the paper used no post-processing (BraTS practice, Isensee et al. 2018, 2020)"
    phase = "inference"
    wraps = ("postprocess",)
    order = 60

    @dataclass(frozen=True)
    class Params:
        min_volume: float = field(
            default=500.0,
            metadata={
                "optuna": ("float", 50.0, 4000.0, {"log": True}),
                "range": (0.0, None),
                "help": "ET volume in mm^3 below which the predicted ET becomes necrosis",
            },
        )
        select: str = field(
            default="fixed",
            metadata={
                "choices": SELECT,
                "help": "fixed: use min_volume; validation: choose it on the validation folds (or leave it out)",
            },
        )

    def apply(self, recipe: Recipe, params: Any) -> None:
        recipe.postprocess.append(SmallEtToNecrosis(float(params.min_volume), params.select))
