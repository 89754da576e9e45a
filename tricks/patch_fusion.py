"""Overlapped-patch fusion at inference: overlapping sliding windows averaged (paper 2.2, "result fusing").

Off (the baseline), the volume is tiled by non-overlapping windows. On, windows overlap by ``overlap`` of
their edge (default 0.5, the usual sliding-window step of half a window) and every voxel's probability is the
weighted average of the windows that cover it. The paper averages (constant weights, the default here);
``weights = "gaussian"`` (sigma = 1/8 of the window, as nnU-Net) is offered as a search choice.

Inference only: cells that differ only in this trick share their trainings (the training key leaves it out).
Fills the ``window_fusion`` slot, which :meth:`tricks._registry.Stack.inference_config` turns into the
``overlap`` and ``weights`` of the :class:`bench.engine.config.InferenceConfig`.

nnU-Net form: the predictor's tile step (``tile_step_size = 1 - overlap``; off: 1.0, non-overlapping tiles)
and its Gaussian weighting (``use_gaussian``: weights = "gaussian"; off and "constant": no weighting).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.engine.recipe import Recipe, WindowFusion
from tricks._base import Trick
from tricks._registry import register

__all__ = ["PatchFusion"]


@register
class PatchFusion(Trick):
    name = "patch_fusion"
    summary = "overlapping sliding windows (overlap 0.5) averaged at inference; off = non-overlapping tiles"
    section = "2.2 (result fusing)"
    phase = "inference"
    replaces = ("window_fusion",)

    @dataclass(frozen=True)
    class Params:
        overlap: float = field(
            default=0.5,
            metadata={
                "optuna": ("float", 0.25, 0.75, {"step": 0.25}),
                "range": (0.0, 0.95),
                "help": "fraction of the window shared by neighbours",
            },
        )
        weights: str = field(
            default="constant",
            metadata={
                "optuna": ("categorical", ("constant", "gaussian")),
                "help": "window weights: constant (paper) or gaussian",
            },
        )

    nnunet_form = "nnU-Net predictor's tile_step_size = 1 - overlap, use_gaussian = weights == 'gaussian' (off: 1.0)"

    def apply(self, recipe: Recipe, params: Any) -> None:
        recipe.window_fusion = WindowFusion(overlap=params.overlap, weights=params.weights)

    def nnunet_inference(self, params: Any, settings: dict[str, Any]) -> None:
        settings["tile_step_size"] = 1.0 - float(params.overlap)
        settings["use_gaussian"] = params.weights == "gaussian"
