"""Engines: what trains and predicts a cell (one module per engine, a small base in ``_base.py``).

``get_engine(name)`` returns the engine object; ``list_engines()`` the registered names. The runner knows no
engine by name. ``native`` is bench's own U-Net (:mod:`bench.engine`); ``nnunet`` is nnU-Net v2
(``pip install -e ".[nnunet]"``).
"""

from __future__ import annotations

import importlib

from bench.engines._base import Engine, PredictJob, PreparedData, TrainJob
from bench.errors import SpecError

__all__ = ["Engine", "PreparedData", "TrainJob", "PredictJob", "register", "get_engine", "list_engines"]

#: modules that register an engine when imported (one each); none may import its framework at import time
_MODULES: tuple[str, ...] = ("native", "nnunet.engine")

_REGISTRY: dict[str, type[Engine]] = {}


def register(cls: type[Engine]) -> type[Engine]:
    """Class decorator: make ``cls`` available as ``[engine] name = cls.name`` in specs."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"engine {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def _load() -> None:
    for mod in _MODULES:
        importlib.import_module(f"bench.engines.{mod}")


def list_engines() -> list[str]:
    _load()
    return sorted(_REGISTRY)


def get_engine(name: str = "native") -> Engine:
    """The engine registered as ``name``; a SpecError naming the accepted ones otherwise."""
    _load()
    if name not in _REGISTRY:
        raise SpecError(f"engine {name!r} is not one of {', '.join(sorted(_REGISTRY)) or '(none registered)'}")
    return _REGISTRY[name]()
