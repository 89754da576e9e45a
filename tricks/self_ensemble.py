"""``self_ensemble``: a prediction at every decoder scale, combined recursively (paper: part of BL).

y_S = ỹ_S and y_s = Up(y_{s+1}, 2) + ỹ_s for s = S-1 .. 1; the output is y_1 (trilinear up-sampling).
Off, only the finest decoder scale predicts. The loss sees the combined output y_1.

nnU-Net form: deep supervision (``enable_deep_supervision``): nnU-Net's decoder predicts at every scale and
each scale's prediction gets its own loss against the down-sampled labels (weights halving per scale), which is
how nnU-Net makes every decoder scale predict. It is supervision of each scale rather than the recursive sum
y_s = Up(y_{s+1}) + ỹ_s; that sum would need a new network, not a trainer part. Inference uses the finest
output only in both. Bench's nnU-Net baseline turns deep supervision off (the trick's off level).
"""

from __future__ import annotations

import functools
from typing import Any

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

    nnunet_form = "deep supervision: nnU-Net's decoder predicts and is supervised at every scale (baseline: off)"

    def apply(self, recipe: Recipe, params: NoParams) -> None:
        recipe.head = "self_ensemble"

    def nnunet_part(self, params: Any) -> type:
        return _nnunet_part()


@functools.cache
def _nnunet_part() -> type:
    from bench.engines.nnunet.parts import nnunet_trainer_base

    class SelfEnsemblePart(nnunet_trainer_base()):  # type: ignore[misc]
        """Turns nnU-Net's deep supervision on."""

        def _bench_configure(self) -> None:
            super()._bench_configure()
            self.enable_deep_supervision = True

    return SelfEnsemblePart
