"""Stand-in for :mod:`bench.engines.nnunet.compose` in a checkout without it: plain ``nnUNetTrainer`` with the
budget set, no trick has a form. Removed once the composition is merged."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.errors import SpecError

_ATTRS = {"epochs": "num_epochs", "iterations_per_epoch": "num_iterations_per_epoch",
          "val_iterations": "num_val_iterations_per_epoch"}
_CLASSES: dict[tuple, type] = {}


def forms() -> dict[str, str | None]:
    import tricks

    return {t.name: None for t in tricks.list_tricks()}


def check_stack(stack: Any) -> None:
    if stack is not None and stack.names:
        raise SpecError(f"engine 'nnunet' has no form of {', '.join(stack.names)} (accepted: none in this checkout)")


def trainer_class(stack: Any, *, budget: Mapping[str, Any] | None = None) -> type:
    check_stack(stack)
    attrs = {_ATTRS[k]: int(v) for k, v in (budget or {}).items() if v is not None}
    key = tuple(sorted(attrs.items()))
    if key not in _CLASSES:
        import torch
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

        def __init__(self: Any, plans: dict, configuration: str, fold: int, dataset_json: dict,
                     device: torch.device = torch.device("cuda")) -> None:
            nnUNetTrainer.__init__(self, plans, configuration, fold, dataset_json, device)
            for a, v in attrs.items():
                setattr(self, a, v)

        _CLASSES[key] = type("nnUNetTrainer_bench", (nnUNetTrainer,), {"__init__": __init__})
    return _CLASSES[key]


def inference_settings(stack: Any, inference: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"tile_step_size": 1.0, "use_gaussian": False,
            "use_mirroring": bool((inference or {}).get("mirror", False)), "fold_ensemble": False}
