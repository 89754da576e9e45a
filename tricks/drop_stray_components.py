"""Drop stray tumour components: BraTS post-processing at inference (not in the paper).

The whole tumour (labels 1, 2, 4) is split into connected components (26-connectivity); every component other
than the largest is removed (set to background) when it is smaller than ``min_fraction`` of the largest or
farther than ``max_distance`` mm from it (0: no distance rule). On real scans, false-positive oedema on
non-tumour FLAIR hyperintensities far from the lesion costs WT Dice and, above all, HD95 (one far voxel sets the
95th percentile of the surface distance); nnU-Net's "keep the largest component" is the strict form of this rule
(``min_fraction = 1``). A second real lesion (multifocal tumours) is kept when it is large and near enough.

Defaults ``min_fraction = 0.1``, ``max_distance = 20`` mm: round values (a stray component of a tenth of the
tumour is not a second focus worth the HD95 risk; 20 mm is about the extent of peritumoural oedema around a
core). ``select = "validation"`` chooses both on the validation cases of the models' folds from
``min_fraction`` x (0.5, 1, 2) and ``max_distance`` x (0.5, 1, 2) or off, and leaves the rule out unless it
raises the mean validation Dice (:func:`bench.engine.api.select_postprocess`, nnU-Net's way).

Inference only: cells that differ only in this trick share their trainings. Adds a step to the ``postprocess``
slot (before ``et_to_necrosis`` when both are on, so a removed component's ET no longer counts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.engine.postprocess import SELECT, DropStrayComponents
from bench.engine.recipe import Recipe
from tricks._base import Trick
from tricks._registry import register

__all__ = ["DropStrayComponentsTrick"]


@register
class DropStrayComponentsTrick(Trick):
    name = "drop_stray_components"
    summary = "tumour components much smaller than or far from the largest one are removed (BraTS post-processing)"
    section = "none: the paper used no post-processing (BraTS practice, Isensee et al. 2018, 2020)"
    phase = "inference"
    wraps = ("postprocess",)
    order = 40

    @dataclass(frozen=True)
    class Params:
        min_fraction: float = field(
            default=0.1,
            metadata={
                "optuna": ("float", 0.01, 1.0, {"log": True}),
                "range": (0.0, 1.0),
                "help": "components below this fraction of the largest one's volume are removed",
            },
        )
        max_distance: float = field(
            default=20.0,
            metadata={
                "optuna": ("float", 0.0, 60.0, {"step": 5.0}),
                "range": (0.0, None),
                "help": "components farther than this many mm from the largest are removed (0: no distance rule)",
            },
        )
        select: str = field(
            default="fixed",
            metadata={
                "choices": SELECT,
                "help": "fixed: use the parameters; validation: choose them on the validation folds (or leave "
                        "the rule out)",
            },
        )

    def apply(self, recipe: Recipe, params: Any) -> None:
        recipe.postprocess.append(DropStrayComponents(float(params.min_fraction), float(params.max_distance),
                                                      params.select))
