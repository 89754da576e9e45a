"""Building blocks of the tricks' nnU-Net trainer parts: the CE term swap, the warm-up scheduler, the BraTS
label and region forms of ``dataset.json``, and the one-line install hint.

A trick's part lives with its trick (``tricks/<name>.py``, :meth:`tricks.Trick.nnunet_part`); what several
parts share is here. Only torch is imported at module level; nnunetv2 is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from bench.errors import SpecError

__all__ = ["INSTALL_HINT", "require_nnunet", "nnunet_trainer_base", "compound_loss", "replace_voxel_term",
           "WarmupLR", "BRATS_LABELS", "BRATS_REGIONS", "BRATS_REGIONS_CLASS_ORDER", "label_form", "region_form"]

INSTALL_HINT = 'engine "nnunet" needs nnU-Net v2: pip install -e ".[nnunet]" (nnunetv2 2.8.1)'


def require_nnunet() -> None:
    """Raise a one-line :class:`SpecError` saying how to install nnU-Net when it is missing."""
    try:
        import nnunetv2  # noqa: F401
    except ImportError:
        raise SpecError(INSTALL_HINT) from None


def nnunet_trainer_base() -> type:
    """nnU-Net's ``nnUNetTrainer`` (after checking that nnunetv2 is installed)."""
    require_nnunet()
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    return nnUNetTrainer


# ------------------------------------------------------------------------------------------------ losses


def compound_loss(loss: Any) -> Any:
    """The Dice + CE (or Dice + BCE) loss inside nnU-Net's deep-supervision wrapper (or ``loss`` itself)."""
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper

    return loss.loss if isinstance(loss, DeepSupervisionWrapper) else loss


def replace_voxel_term(loss: Any, make: Callable[[bool], torch.nn.Module]) -> Any:
    """Replace the cross-entropy term of nnU-Net's compound loss by ``make(regions)`` and return ``loss``.

    ``regions`` is False for label training (``DC_and_CE_loss``: the term gets logits (B, C, ...) and class
    indices (B, ...) or (B, 1, ...)) and True for region training (``DC_and_BCE_loss``: sigmoid logits
    (B, R, ...) and binary region maps (B, R, ...)). The Dice term is left as it is, as on the native engine.
    """
    from nnunetv2.training.loss.compound_losses import DC_and_BCE_loss, DC_and_CE_loss

    inner = compound_loss(loss)
    if isinstance(inner, DC_and_BCE_loss):
        if inner.use_ignore_label:
            raise SpecError("engine nnunet: a loss part cannot replace the BCE term of a dataset with an ignore label")
        inner.ce = make(True)
    elif isinstance(inner, DC_and_CE_loss):
        if inner.ignore_label is not None:
            raise SpecError("engine nnunet: a loss part cannot replace the CE term of a dataset with an ignore label")
        inner.ce = make(False)
    else:
        raise SpecError(f"engine nnunet: the trainer's loss is {type(inner).__name__}, not nnU-Net's Dice + CE "
                        "(or Dice + BCE); a part that replaces the CE term cannot act on it")
    return loss


def class_indices(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """nnU-Net's CE target (B, 1, ...) or (B, ...), float -> class indices (B, ...), long."""
    if target.ndim == logits.ndim:
        target = target[:, 0]
    return target.long()


# ------------------------------------------------------------------------------------------------ schedule


class WarmupLR:
    """nnU-Net learning-rate scheduler wrapped by a warm-up: nnU-Net calls ``step(epoch)`` at every epoch start.

    For ``epoch < warmup_epochs`` the rate is ``initial_lr * factor(epoch)``; from then on ``inner`` (the
    scheduler below: nnU-Net's poly by default) runs from its own beginning, over the remaining epochs when it
    has a ``max_steps`` (nnU-Net's ``PolyLRScheduler``), so the curve joins as on the native engine.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, inner: Any, initial_lr: float, warmup_epochs: int,
                 num_epochs: int, factor: Callable[[int], float]) -> None:
        self.optimizer = optimizer
        self.inner = inner
        self.initial_lr = float(initial_lr)
        self.warmup_epochs = int(warmup_epochs)
        self.factor = factor
        self.ctr = 0
        if hasattr(inner, "max_steps"):
            inner.max_steps = max(1, int(num_epochs) - self.warmup_epochs)
        self._last_lr = [g["lr"] for g in optimizer.param_groups]

    def step(self, current_step: int | None = None) -> None:
        if current_step is None or current_step == -1:
            current_step = self.ctr
            self.ctr += 1
        if current_step < self.warmup_epochs:
            lr = self.initial_lr * self.factor(current_step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        else:
            self.inner.step(current_step - self.warmup_epochs)
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        return {"ctr": self.ctr}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ctr = int(state.get("ctr", 0))


# ------------------------------------------------------------------------------------------------ BraTS forms

# nnU-Net's BraTS numbering (its Dataset137 conversion, and bench's nnU-Net raw dataset): 1 oedema,
# 2 necrosis / non-enhancing core, 3 enhancing tumour. Label form: four softmax classes; region form: three
# overlapping sigmoid regions decoded in REGIONS_CLASS_ORDER (WT, then TC over it, then ET over both).
BRATS_LABELS: dict[str, int] = {"background": 0, "edema": 1, "necrosis and non-enhancing core": 2,
                                "enhancing tumor": 3}
BRATS_REGIONS: dict[str, Any] = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3],
                                 "enhancing tumor": [3]}
BRATS_REGIONS_CLASS_ORDER: list[int] = [1, 2, 3]


def _values(dataset_json: dict[str, Any]) -> list[Any]:
    return [sorted(v) if isinstance(v, (list, tuple)) else v for v in dataset_json.get("labels", {}).values()]


def _is_brats_regions(dataset_json: dict[str, Any]) -> bool:
    wanted = [0, [1, 2, 3], [2, 3], [3]]
    got = _values(dataset_json)
    return sorted(map(str, got)) == sorted(map(str, wanted)) and \
        list(dataset_json.get("regions_class_order") or []) == BRATS_REGIONS_CLASS_ORDER


def _is_brats_labels(dataset_json: dict[str, Any]) -> bool:
    return sorted(str(v) for v in _values(dataset_json)) == ["0", "1", "2", "3"]


def label_form(dataset_json: dict[str, Any]) -> dict[str, Any]:
    """``dataset.json`` with BraTS regions turned into nnU-Net's four BraTS label classes (softmax training);
    any other label layout is returned unchanged."""
    if not _is_brats_regions(dataset_json):
        return dataset_json
    out = {k: v for k, v in dataset_json.items() if k != "regions_class_order"}
    out["labels"] = dict(BRATS_LABELS)
    return out


def region_form(dataset_json: dict[str, Any]) -> dict[str, Any]:
    """``dataset.json`` in nnU-Net's BraTS region form (whole tumour, tumour core, enhancing tumour: sigmoid
    region training, as nnU-Net's own BraTS conversion); SpecError when the labels are not BraTS's."""
    if _is_brats_regions(dataset_json):
        return dataset_json
    if not _is_brats_labels(dataset_json):
        raise SpecError(f"trick 'multitask' on engine nnunet: dataset.json labels {dataset_json.get('labels')} are "
                        "not the BraTS labels 0..3 (1 edema, 2 necrosis/non-enhancing, 3 enhancing) nor its regions")
    out = dict(dataset_json)
    out["labels"] = {k: (list(v) if isinstance(v, list) else v) for k, v in BRATS_REGIONS.items()}
    out["regions_class_order"] = list(BRATS_REGIONS_CLASS_ORDER)
    return out
