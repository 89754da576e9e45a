"""``self_ensemble``: a prediction at every decoder scale, combined recursively (paper: part of BL).

y_S = ỹ_S and y_s = Up(y_{s+1}, 2) + ỹ_s for s = S-1 .. 1; the output is y_1 (trilinear up-sampling).
Off, only the finest decoder scale predicts. The loss sees the combined output y_1.
"""

from __future__ import annotations

from bench.engine.recipe import Recipe
from tricks._base import NoParams, Trick
from tricks._registry import register


@register
class SelfEnsemble(Trick):
    name = "self_ensemble"
    summary = "predictions at every decoder scale summed recursively: y_s = Up(y_{s+1}, 2) + ỹ_s, output y_1"
    section = "2.2 (self-ensemble U-Net)"
    phase = "training"
    replaces = ("model.head",)
    Params = NoParams

    def apply(self, recipe: Recipe, params: NoParams) -> None:
        recipe.head = "self_ensemble"
