"""Heuristic sampling: draw K random patches, keep the one with the most foreground voxels (paper 2.1).

The paper crops several random patches and keeps the one holding the most tumour. It does not give the
number of candidates; the default here is ``k = 4`` (searched over 2..8). Foreground is every non-background
class (the whole tumour). Ties go to the first candidate drawn, so a draw is a pure function of the RNG, and
``k = 1`` is exactly the sampler below it.

Wraps the ``sampler`` slot: the K candidate corners are drawn by whatever sampler is below (uniform crops in
the baseline) for the patch size the patch plan chose (any size ``random_patch_size`` draws), so it composes
with every other sampler-side trick. Unlabeled cases (no label map) keep the first candidate.

nnU-Net form: foreground oversampling. nnU-Net's loader forces a fraction f of each batch to be centred on a
foreground voxel (``oversample_foreground_percent``, the rest uniform); bench's nnU-Net baseline sets f = 0
(uniform patches, as the native baseline) and this trick sets f = 1 - 1/K: K = 1 is exactly the baseline, and
the larger K, the more of each batch is chosen for its tumour (K = 4: 0.75). nnU-Net's loader cannot count the
foreground of K candidate patches (it sees only sampled foreground locations), so best-of-K itself has no
nnU-Net form; the oversampled fraction is the nearest one.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.engine.recipe import Recipe
from bench.engine.sampling import CaseLike, Corner, Patch3, Sampler, foreground_count
from tricks._base import Trick
from tricks._registry import register

__all__ = ["best_candidate", "HeuristicSampler", "HeuristicSampling"]


def best_candidate(counts: Sequence[int]) -> int:
    """Index of the candidate with the most foreground (the first one on a tie)."""
    return int(np.argmax(np.asarray(counts)))


@dataclass(frozen=True)
class HeuristicSampler:
    """``sampler`` filler: ``k`` corners from ``base``, keep the one whose patch has the most foreground."""

    base: Sampler
    k: int = 4

    def candidates(
        self, case: CaseLike, patch: Patch3, rng: np.random.Generator
    ) -> tuple[list[Corner], list[int]]:
        """The ``k`` candidate corners and their foreground counts (for tests and diagnostics)."""
        corners = [self.base(case, patch, rng) for _ in range(self.k)]
        return corners, [foreground_count(case.label, c, patch) for c in corners]

    def __call__(self, case: CaseLike, patch: Patch3, rng: np.random.Generator) -> Corner:
        corners, counts = self.candidates(case, patch, rng)
        return corners[best_candidate(counts)]


@register
class HeuristicSampling(Trick):
    name = "heuristic_sampling"
    summary = "draw K random patches per sample, keep the one with the most tumour voxels"
    section = "2.1 (data sampling)"
    phase = "training"
    wraps = ("sampler",)
    order = 20  # inner: wraps the base sampler before anything that would wrap the heuristic's choice

    @dataclass(frozen=True)
    class Params:
        k: int = field(
            default=4,
            metadata={"optuna": ("int", 2, 8), "range": (1, 64), "help": "number of candidate patches K"},
        )

    nnunet_form = "foreground oversampling: oversample_foreground_percent = 1 - 1/K of each batch (baseline 0)"

    def apply(self, recipe: Recipe, params: Any) -> None:
        recipe.sampler = HeuristicSampler(recipe.sampler, params.k)

    def nnunet_part(self, params: Any) -> type:
        return _nnunet_part(1.0 - 1.0 / int(params.k))


@functools.cache
def _nnunet_part(fraction: float) -> type:
    from bench.engines.nnunet.parts import nnunet_trainer_base

    class HeuristicSamplingPart(nnunet_trainer_base()):  # type: ignore[misc]
        """Sets the oversampled foreground fraction of each batch."""

        def _bench_configure(self) -> None:
            super()._bench_configure()
            self.oversample_foreground_percent = fraction

    return HeuristicSamplingPart
