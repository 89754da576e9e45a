"""``dense_blocks``: densely connected convolutions inside each U-Net level (paper: part of the baseline BL).

Off, each level is a plain double 3x3x3 convolution. On, each level is a dense block: ``layers`` convolutions
where each sees the concatenation of the block input and all previous layers' outputs (growth rate
``growth`` x the level's width), followed by a 1x1 transition back to the level's width.

No nnU-Net form: nnU-Net's networks (dynamic_network_architectures: plain and residual encoders) have no dense
block, and a dense U-Net would be a new architecture, not a trainer part. A user who has one can bring it as
their own trainer (``trainer:MODULE.CLASS`` overriding ``build_network_architecture``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.engine.recipe import Recipe
from tricks._base import Trick
from tricks._registry import register


@register
class DenseBlocks(Trick):
    name = "dense_blocks"
    summary = "densely connected convolutions inside each U-Net level (off: plain double convolution)"
    section = "2.2 (network: U-Net with dense blocks)"
    phase = "training"
    replaces = ("model.block",)

    @dataclass(frozen=True)
    class Params:
        layers: int = field(default=3, metadata={"optuna": ("int", 2, 4), "range": (1, 8),
                                                  "help": "convolutions per dense block"})
        growth: float = field(default=0.5, metadata={"optuna": ("float", 0.25, 1.0), "range": (0.05, 4.0),
                                                      "help": "growth rate as a fraction of the level's width"})

    def apply(self, recipe: Recipe, params: Params) -> None:
        recipe.block = "dense"
        recipe.block_options = {"layers": params.layers, "growth": params.growth}
