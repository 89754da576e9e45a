"""Learning-rate schedules: the ``schedule`` slot.

A schedule is a picklable callable ``schedule(iteration, total, epoch_length) -> factor``; the learning rate of
step ``iteration`` (0-based) is ``train_cfg.lr * factor``. It is a pure function of the iteration, so resuming
a training needs no scheduler state beyond the iteration counter. A wrapping trick (``warmup``) keeps the
schedule it wraps and calls it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["Schedule", "PolySchedule", "ConstantSchedule", "lr_curve"]


class Schedule(Protocol):
    def __call__(self, iteration: int, total: int, epoch_length: int) -> float: ...


@dataclass(frozen=True)
class PolySchedule:
    """Baseline: poly decay ``(1 - iteration / total) ** power``."""

    power: float = 0.9

    def __call__(self, iteration: int, total: int, epoch_length: int) -> float:
        if total <= 0:
            return 1.0
        return max(0.0, 1.0 - iteration / total) ** self.power


@dataclass(frozen=True)
class ConstantSchedule:
    def __call__(self, iteration: int, total: int, epoch_length: int) -> float:
        return 1.0


def lr_curve(schedule: Schedule, base_lr: float, total: int, epoch_length: int) -> list[float]:
    """The learning rate of every step, for plots and tests."""
    return [base_lr * schedule(i, total, epoch_length) for i in range(total)]
