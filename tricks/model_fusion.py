"""Model fusion at inference: average of the probabilities of the k fold models (paper 2.2, "result fusing").

The paper averages the 5 models of its 5-fold cross-validation. Here k is the number of folds of the
experiment's dataset (the spec's ``folds``; the paper's 5 by default), so this trick has no parameter. A cell
with this trick needs the training of every fold; :meth:`tricks._registry.Stack.folds_for` says so and the
runner reuses the trainings that other cells already made (the training key is the same: this trick is
inference-only and left out of it). Probabilities (softmax outputs), not labels, are averaged.

Fills the ``model_set`` slot.

nnU-Net form: the fold ensemble: nnU-Net's predictor averages the softmax (or sigmoid) outputs of the fold
models given to it (``fold_ensemble`` of :func:`bench.engines.nnunet.compose.inference_settings`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from bench.engine.recipe import AllFolds, Recipe
from tricks._base import Trick
from tricks._registry import register

__all__ = ["average_probabilities", "ModelFusion"]


def average_probabilities(probabilities: Sequence[torch.Tensor]) -> torch.Tensor:
    """Equal-weight average of the models' probability maps (all of one shape)."""
    if not probabilities:
        raise ValueError("no probability maps to average")
    out = probabilities[0].float().clone()
    for p in probabilities[1:]:
        out += p.float()
    return out / len(probabilities)


@register
class ModelFusion(Trick):
    name = "model_fusion"
    summary = "average the probabilities of the k cross-validation fold models (paper: 5)"
    section = "2.2 (result fusing)"
    phase = "inference"
    replaces = ("model_set",)

    @dataclass(frozen=True)
    class Params:
        pass

    nnunet_form = "nnU-Net's fold ensemble: the predictor averages the probabilities of every fold's model"

    def apply(self, recipe: Recipe, params: Any) -> None:
        recipe.model_set = AllFolds()

    def nnunet_inference(self, params: Any, settings: dict[str, Any]) -> None:
        settings["fold_ensemble"] = True
