"""Training batches: whole batches per iteration, a pure function of ``(seed, iteration)``.

:class:`BatchSource` is a map-style dataset whose item ``i`` is the complete batch of iteration ``i``: the
patch plan draws ``(patch, batch)`` from ``rng(seed, i, 0)``, sample ``j`` draws its case, corner and
augmentation from ``rng(seed, i, j + 1)``. The same iteration gives the same batch in any worker process,
with any number of workers and after a resume. :func:`make_loader` wraps it in a DataLoader (worker processes,
prefetch) iterating from a start iteration.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from bench.engine.sampling import Augment, PatchPlan, Sampler, as_patch3, crop

__all__ = ["CasePool", "BatchSource", "make_loader", "iteration_rng"]


@dataclass(frozen=True)
class CasePool:
    """Cases that enter training with one loss weight.

    ``label_dir``: read labels from ``<label_dir>/<case_id>.npy`` (uint8 class indices on the working grid,
    e.g. pseudo-labels) instead of the dataset's own labels. ``weight``: the loss weight of these samples
    (alpha for pseudo-labelled cases).
    """

    dataset: Any
    case_ids: tuple[str, ...]
    weight: float = 1.0
    label_dir: str | None = None


@dataclass
class _Case:
    case_id: str
    image: np.ndarray
    label: np.ndarray | None


def iteration_rng(seed: int, iteration: int, stream: int) -> np.random.Generator:
    """The generator of one iteration's stream (0 = patch plan, j + 1 = sample j)."""
    return np.random.default_rng([int(seed), int(iteration), int(stream)])


class BatchSource(Dataset):
    """Item ``i``: the batch of iteration ``i`` as a dict of tensors
    ``image (B,C,px,py,pz) float32``, ``label (B,px,py,pz) int64``, ``weight (B,) float32``,
    ``iteration`` (int)."""

    def __init__(self, pools: Sequence[CasePool], plan: PatchPlan, sampler: Sampler, augment: Augment,
                 seed: int, total: int):
        self.entries = [(pi, cid) for pi, pool in enumerate(pools) for cid in pool.case_ids]
        if not self.entries:
            raise ValueError("no training cases")
        self.pools = list(pools)
        self.plan, self.sampler, self.augment = plan, sampler, augment
        self.seed, self.total = int(seed), int(total)
        self._cache: dict[tuple[int, str], _Case] = {}

    def __len__(self) -> int:
        return self.total

    def _case(self, pool_index: int, case_id: str) -> _Case:
        key = (pool_index, case_id)
        case = self._cache.get(key)
        if case is None:
            pool = self.pools[pool_index]
            pc = pool.dataset.load(case_id)
            label = pc.label
            if pool.label_dir is not None:
                label = np.load(Path(pool.label_dir) / f"{case_id}.npy", mmap_mode="r")
            if label is None:
                raise ValueError(f"case {case_id} has no label and its pool gives no label_dir")
            case = _Case(case_id, pc.image, label)
            self._cache[key] = case
        return case

    def __getitem__(self, iteration: int) -> dict[str, Any]:
        patch, batch = self.plan(iteration, iteration_rng(self.seed, iteration, 0))
        p3 = as_patch3(patch)
        images, labels, weights = [], [], []
        for j in range(int(batch)):
            rng = iteration_rng(self.seed, iteration, j + 1)
            pi, cid = self.entries[int(rng.integers(len(self.entries)))]
            case = self._case(pi, cid)
            corner = self.sampler(case, p3, rng)
            img = crop(case.image, corner, p3).astype(np.float32, copy=False)
            assert case.label is not None
            lab = crop(case.label, corner, p3)
            img, lab = self.augment(img, lab, rng)
            images.append(img)
            labels.append(lab)
            weights.append(self.pools[pi].weight)
        return {
            "image": torch.from_numpy(np.stack(images)),
            "label": torch.from_numpy(np.stack(labels).astype(np.int64)),
            "weight": torch.tensor(weights, dtype=torch.float32),
            "iteration": iteration,
        }


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


def make_loader(source: BatchSource, start: int, *, num_workers: int = 0, prefetch: int = 2,
                pin_memory: bool = False) -> Iterator[dict[str, Any]]:
    """Iterate the batches of iterations ``start .. source.total - 1`` (in order)."""
    if num_workers <= 0:
        return (source[i] for i in range(start, source.total))
    loader = DataLoader(
        source, batch_size=None, sampler=range(start, source.total), num_workers=num_workers,
        prefetch_factor=max(1, prefetch), persistent_workers=True, pin_memory=pin_memory,
        worker_init_fn=_worker_init,
    )
    return iter(loader)
