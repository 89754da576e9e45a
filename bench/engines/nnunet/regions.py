"""BraTS region pseudo-Dice of a label-trained nnU-Net's validation batches.

nnU-Net's online validation scores what the network outputs: in the label form its classes (oedema,
necrosis/non-enhancing core, enhancing), of which only enhancing tumour is a BraTS region; whole tumour and
tumour core are unions of classes, which per-class counts cannot give. :class:`RegionCounts` watches the
network's output during the validation steps (a forward hook, removed after them), takes the argmax as
nnU-Net does, and counts true positives, false positives and false negatives of WT, TC and ET over the epoch's
batches: the same "global" pseudo-Dice as nnU-Net's, per region. The values are logged in nnU-Net's own logger
under :data:`REGION_LOG`, so they travel in its checkpoints and a resumed training keeps its curve.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["REGION_LOG", "REGION_LABELS", "RegionCounts", "log_regions", "logged_regions"]

#: key in nnU-Net's logger: [WT, TC, ET] pseudo-Dice per epoch of a label-trained network
REGION_LOG = "bench_region_dice"
#: nnU-Net label ids (bench's conversion: 1 oedema, 2 necrosis/non-enhancing core, 3 enhancing) of each region
REGION_LABELS = {"WT": (1, 2, 3), "TC": (2, 3), "ET": (3,)}


class RegionCounts:
    """``with RegionCounts(trainer) as rc:`` around the validation steps, ``rc.add(batch)`` after each one;
    ``rc.dice()`` gives [WT, TC, ET] (None when nothing was counted: the region form, which nnU-Net scores
    itself, or a network whose output is not background plus three classes)."""

    def __init__(self, trainer: Any):
        self._network = trainer.network
        self._on = not bool(getattr(trainer.label_manager, "has_regions", False))
        self._out: Any = None
        self._handle: Any = None
        self.counts = [[0, 0, 0] for _ in REGION_LABELS]  # per region: tp, fp, fn
        self.batches = 0

    def __enter__(self) -> RegionCounts:
        if self._on:
            self._handle = self._network.register_forward_hook(self._keep)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self._out = None

    def _keep(self, module: Any, inputs: Any, output: Any) -> None:
        self._out = output[0] if isinstance(output, (list, tuple)) else output  # the full-resolution output

    def add(self, batch: dict[str, Any]) -> None:
        """Count the output the last validation step produced against ``batch``'s target."""
        import torch

        out, self._out = self._out, None
        if out is None or out.ndim < 3 or out.shape[1] != 4:
            return
        target = batch["target"]
        target = target[0] if isinstance(target, (list, tuple)) else target
        target = target.to(out.device)[:, 0].long()
        pred = out.argmax(1)
        for k, labels in enumerate(REGION_LABELS.values()):
            ids = torch.tensor(labels, device=out.device)
            p, t = torch.isin(pred, ids), torch.isin(target, ids)
            self.counts[k][0] += int((p & t).sum())
            self.counts[k][1] += int((p & ~t).sum())
            self.counts[k][2] += int((~p & t).sum())
        self.batches += 1

    def dice(self) -> list[float] | None:
        if not self.batches:
            return None
        return [2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else math.nan for tp, fp, fn in self.counts]


def _lists(logger: Any) -> dict[str, list[Any]]:
    """The per-epoch lists of nnU-Net's logger: those of its local logger where the trainer's logger is a
    MetaLogger (nnunetv2 2.8.1; it also forwards to Weights & Biases when that is on), else its own."""
    return getattr(logger, "local_logger", logger).my_fantastic_logging


def log_regions(trainer: Any, epoch: int, dice: list[float]) -> None:
    """Log ``dice`` ([WT, TC, ET]) for ``epoch`` in nnU-Net's logger (padded with NaN for the epochs of a
    checkpoint written before bench counted regions)."""
    values = _lists(trainer.logger).setdefault(REGION_LOG, [])
    while len(values) < epoch:
        values.append([math.nan] * len(REGION_LABELS))
    trainer.logger.log(REGION_LOG, list(dice), epoch)


def logged_regions(trainer: Any, epoch: int) -> dict[str, float]:
    """The region pseudo-Dice logged for ``epoch`` ({} when none was)."""
    values = _lists(trainer.logger).get(REGION_LOG, [])
    if epoch >= len(values):
        return {}
    return {r: float(d) for r, d in zip(REGION_LABELS, values[epoch]) if not math.isnan(float(d))}
