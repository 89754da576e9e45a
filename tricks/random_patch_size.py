"""Random patch-size training: every iteration draws a (patch, batch) pair from a pool (paper 2.1).

The paper's pool is (64, 15) (80, 8) (96, 4) (112, 2) (128, 1) (144, 1): large patches see context, small
ones come in large batches. Specs can give their own pool (CPU-sized ones, e.g. ``[[32, 4], [48, 2],
[64, 1]]``). The paper does not say how often each pair is drawn; the default weights are equal, and a spec
may give ``weights`` (one positive number per pair, normalised here).

Each draw uses the generator the engine derives from (seed, iteration), so a resumed run draws the same
sizes as an uninterrupted one, and the learning-rate schedule keeps counting iterations (one optimiser step
per draw, whatever the batch size).

Fills the ``patch_plan`` slot. The pool is not searched by Optuna (a categorical over pools would need
tuples as choices); a spec sets it, e.g. ``[tricks.random_patch_size] pool = [[32, 4], [48, 2], [64, 1]]``.

No nnU-Net form: nnU-Net's patch size and batch size are fixed by its plan; its data loader, augmentation
(initial patch size for rotations), deep-supervision scales and network pooling are built for that one size,
so drawing a (patch, batch) pair per iteration would replace the loader, not be a trainer part.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.engine.recipe import Recipe
from tricks._base import Trick
from tricks._registry import register

__all__ = ["PAPER_POOL", "PatchPool", "PoolPatchPlan", "RandomPatchSize"]

PAPER_POOL: tuple[tuple[int, int], ...] = ((64, 15), (80, 8), (96, 4), (112, 2), (128, 1), (144, 1))


@dataclass(frozen=True)
class PatchPool:
    """A pool of (patch edge, batch size) pairs with draw probabilities."""

    pairs: tuple[tuple[int, int], ...]
    probabilities: tuple[float, ...]

    @classmethod
    def make(
        cls, pairs: Sequence[Sequence[int]], weights: Sequence[float] | None = None, *, where: str = "pool"
    ) -> PatchPool:
        """Validate a pool (and optional weights) given by a user; raise ValueError naming ``where``."""
        clean: list[tuple[int, int]] = []
        for item in pairs:
            if len(item) != 2 or any(int(v) != v or int(v) < 1 for v in item):
                raise ValueError(
                    f"{where}: each entry must be [patch, batch] with positive integers, got {item!r}"
                )
            clean.append((int(item[0]), int(item[1])))
        if not clean:
            raise ValueError(f"{where}: the pool is empty; give at least one [patch, batch] pair")
        if weights is None or len(weights) == 0:
            w = np.ones(len(clean))
        else:
            w = np.asarray(weights, dtype=float)
            if w.shape != (len(clean),) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
                raise ValueError(
                    f"{where}: weights must be {len(clean)} non-negative numbers with a positive sum, got {weights!r}"
                )
        p = w / w.sum()
        return cls(tuple(clean), tuple(float(x) for x in p))

    def draw(self, rng: np.random.Generator) -> tuple[int, int]:
        """One (patch, batch) pair drawn with the pool's probabilities."""
        return self.pairs[int(rng.choice(len(self.pairs), p=np.asarray(self.probabilities)))]

    @property
    def largest(self) -> tuple[int, int]:
        """The pair with the largest patch (what inference windows and memory checks should assume)."""
        return max(self.pairs)


@dataclass(frozen=True)
class PoolPatchPlan:
    """``patch_plan`` filler: each iteration draws its (patch, batch) pair from ``pool``."""

    pool: PatchPool

    def __call__(self, iteration: int, rng: np.random.Generator) -> tuple[int, int]:
        return self.pool.draw(rng)


@register
class RandomPatchSize(Trick):
    name = "random_patch_size"
    summary = "each iteration draws a (patch, batch) pair from a pool (paper: 64/15 ... 144/1)"
    section = "2.1 (random patch-size training)"
    phase = "training"
    replaces = ("patch_plan",)
    smoke_params = {"pool": ((16, 1), (24, 1))}

    @dataclass(frozen=True)
    class Params:
        pool: tuple[tuple[int, int], ...] = field(
            default=PAPER_POOL, metadata={"help": "[patch, batch] pairs, e.g. [[32, 4], [48, 2], [64, 1]]"}
        )
        weights: tuple[float, ...] = field(
            default=(), metadata={"help": "draw weight of each pair (empty = equal weights)"}
        )

    def check(self, params: Any) -> None:
        PatchPool.make(params.pool, params.weights, where="pool/weights")

    def apply(self, recipe: Recipe, params: Any) -> None:
        recipe.patch_plan = PoolPatchPlan(PatchPool.make(params.pool, params.weights))
