"""Designs: what to run next, given what is finished (one module per design, a small base in ``_base.py``).

``get_design(spec)`` returns the spec's design object; ``list_designs()`` the registered names. Designs are
pure (no training, no stores); adaptive ones read :mod:`bench.analysis`.
"""

from __future__ import annotations

import importlib

from bench.design._base import CellRequest, Design, Results, RowRequest
from bench.errors import SpecError
from bench.spec.model import Spec

__all__ = ["Design", "CellRequest", "RowRequest", "Results", "register", "get_design", "design_class",
           "list_designs", "design_classes", "traits"]

#: modules that register a design when imported (one file each)
_MODULES: tuple[str, ...] = ("full", "ladder", "list", "optuna", "fractional", "forward")

_REGISTRY: dict[str, type[Design]] = {}


def register(cls: type[Design]) -> type[Design]:
    """Class decorator: make ``cls`` available as ``design = cls.name`` in specs."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"design {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def _load() -> None:
    for mod in _MODULES:
        importlib.import_module(f"bench.design.{mod}")


def list_designs() -> list[str]:
    _load()
    return sorted(_REGISTRY)


def design_classes() -> list[type[Design]]:
    """The registered design classes, in registration order."""
    _load()
    return [*_REGISTRY.values()]  # not list(): the submodule bench.design.list shadows the builtin here


def traits(name: str) -> type[Design]:
    """The class of a stored experiment's design, for its class attributes; the base :class:`Design` (no
    design-specific behaviour) for a name this version does not register."""
    _load()
    return _REGISTRY.get(name, Design)


def design_class(name: str) -> type[Design]:
    _load()
    if name not in _REGISTRY:
        raise SpecError(f"design = {name!r} is not one of {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def get_design(spec: Spec) -> Design:
    """The design object of a validated spec."""
    return design_class(spec.design)(spec)
