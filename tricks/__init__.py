"""The trick registry: one module per trick, registered by name on import.

``_MODULES`` lists every trick module in the order they are imported. Modules of issue 4 that are not written
yet are skipped (only a missing module of exactly that name is tolerated; an error inside a module that exists
is raised).
"""

from __future__ import annotations

import importlib

from tricks._base import NoParams, Trick, optuna_space, to_optuna_distribution
from tricks._registry import Stack, get, list_tricks, parse_set_option, register, resolve

__all__ = ["Trick", "NoParams", "Stack", "register", "get", "list_tricks", "resolve", "parse_set_option",
           "optuna_space", "to_optuna_distribution"]

_MODULES: tuple[str, ...] = (
    # engine issue (3): the paper's baseline "BL"
    "dense_blocks",
    "self_ensemble",
    "warmup",
    # tricks issue (4)
    "heuristic_sampling",
    "hard_mining",
    "focal_loss",
    "random_patch_size",
    "multitask",
    "patch_fusion",
    "model_fusion",
    "semi_supervised",
    # BraTS post-processing (not in the paper)
    "drop_stray_components",
    "et_to_necrosis",
)

for _name in _MODULES:
    try:
        importlib.import_module(f"tricks.{_name}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"tricks.{_name}":
            raise

