"""The trick registry and the :class:`Stack` that resolves a set of tricks before anything runs.

::

    from tricks import resolve, list_tricks, get
    stack = resolve(["dense_blocks", "self_ensemble", "warmup"], {"warmup": {"epochs": 5}})
    recipe = stack.build(baseline_recipe(train_cfg))   # fills the slots
    stack.training_items()                            # canonical training-phase tricks + params (training key)
    stack.folds_for(fold, n_folds)                    # fold trainings a cell needs (model_fusion: all)
    stack.inference_config(InferenceConfig())         # inference settings with the inference tricks applied

Every refusal is a :class:`bench.errors.TrickError` naming the tricks or parameters involved.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bench.errors import TrickError
from tricks._base import Trick, coerce_value, params_to_dict, parse_text_value, validate_trick_class
from tricks._user_trainer import UserTrainer, is_trainer_name

__all__ = ["register", "get", "list_tricks", "resolve", "Stack", "parse_set_option"]

_REGISTRY: dict[str, Trick] = {}


def register(cls: type[Trick]) -> type[Trick]:
    """Class decorator: register a :class:`Trick` subclass under its ``name``."""
    validate_trick_class(cls)
    if cls.name in _REGISTRY and type(_REGISTRY[cls.name]) is not cls:
        existing = type(_REGISTRY[cls.name])
        if (existing.__module__, existing.__qualname__) != (cls.__module__, cls.__qualname__):
            raise TypeError(f"trick name {cls.name!r} is registered twice ({existing.__module__}, {cls.__module__})")
    _REGISTRY[cls.name] = cls()
    return cls


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


def get(name: str) -> Trick:
    """The registered trick called ``name``; unknown names raise TrickError with the closest name.

    ``trainer:MODULE.CLASS`` names a user's own nnU-Net trainer class (:mod:`tricks._user_trainer`).
    """
    _ensure_loaded()
    if is_trainer_name(name):
        return UserTrainer(name)
    try:
        return _REGISTRY[name]
    except KeyError:
        raise TrickError(
            f"unknown trick {name!r}{_suggest(name, _REGISTRY)} (known: {', '.join(sorted(_REGISTRY))})"
        ) from None


def list_tricks(pattern: str | None = None) -> list[Trick]:
    """All registered tricks sorted by name (``pattern``: a substring filter)."""
    _ensure_loaded()
    return [t for n, t in sorted(_REGISTRY.items()) if pattern is None or pattern in n]


def _ensure_loaded() -> None:
    import tricks  # noqa: F401  (importing the package registers every trick module)


def _make_params(trick: Trick, overrides: Mapping[str, Any] | None) -> Any:
    cls = trick.Params
    names = [f.name for f in dataclasses.fields(cls)]
    values: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        if key not in names:
            accepted = ", ".join(names) if names else "none"
            raise TrickError(
                f"trick {trick.name!r} has no parameter {key!r}{_suggest(key, names)} (accepted: {accepted})"
            )
        try:
            values[key] = coerce_value(cls, key, value)
        except ValueError as exc:
            raise TrickError(f"trick {trick.name!r}: bad parameter {exc}") from None
    params = cls(**values)
    try:
        trick.check(params)
    except ValueError as exc:
        raise TrickError(f"trick {trick.name!r}: {exc}") from None
    return params


@dataclass(frozen=True)
class Stack:
    """A validated set of tricks with their parameters, in canonical application order."""

    entries: tuple[tuple[Trick, Any], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(t.name for t, _ in self.entries))

    def __contains__(self, name: object) -> bool:
        return any(t.name == name for t, _ in self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def params(self, name: str) -> Any:
        for t, p in self.entries:
            if t.name == name:
                return p
        raise KeyError(name)

    def _items(self, phase: str | None) -> list[tuple[str, dict[str, Any]]]:
        return sorted(
            (t.name, params_to_dict(p)) for t, p in self.entries if phase is None or t.phase == phase
        )

    def training_items(self) -> list[tuple[str, dict[str, Any]]]:
        """Training-phase tricks and their parameters, sorted by name, JSON-ready: the training key's input."""
        return self._items("training")

    def inference_items(self) -> list[tuple[str, dict[str, Any]]]:
        return self._items("inference")

    def items(self) -> list[tuple[str, dict[str, Any]]]:
        return self._items(None)

    def label(self) -> str:
        """A short human label such as ``dense_blocks+warmup`` (``baseline`` when empty)."""
        return "+".join(self.names) or "baseline"

    def build(self, recipe: Any = None) -> Any:
        """Apply every trick to ``recipe`` (default: a fresh baseline recipe) and return it."""
        from bench.engine.recipe import baseline_recipe

        recipe = baseline_recipe() if recipe is None else recipe
        for trick, params in self.entries:
            trick.apply(recipe, params)
        return recipe

    def folds_for(self, fold: int, n_folds: int) -> list[int]:
        """The fold trainings a cell of ``fold`` needs for its predictions."""
        return list(self.build().model_set(fold, n_folds))

    def inference_config(self, base: Any = None) -> Any:
        """``base`` (an InferenceConfig) with the inference tricks' window fusion applied."""
        from bench.engine.config import InferenceConfig

        cfg = base if base is not None else InferenceConfig()
        fusion = self.build().window_fusion
        if fusion is not None:
            cfg = dataclasses.replace(cfg, overlap=fusion.overlap, weights=fusion.weights)
        return cfg

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: params for name, params in self.items()}

    @staticmethod
    def from_dict(data: Mapping[str, Mapping[str, Any]]) -> Stack:
        return resolve(list(data), data)


def resolve(names: Iterable[str] | str | None = None,
            params: Mapping[str, Mapping[str, Any]] | None = None) -> Stack:
    """Validate a set of trick names (+ parameter overrides ``{trick: {param: value}}``) into a :class:`Stack`.

    Refuses (TrickError): unknown names (closest suggested), parameters for a trick not in the set, unknown or
    invalid parameters, a required trick missing, two conflicting tricks, two tricks replacing one slot.

    ``trainer:MODULE.CLASS`` entries (a user's nnU-Net trainer) are training-phase entries whose parameters
    bench sets: the hash of the module's file and their position among the trainer entries (spec order).
    """
    _ensure_loaded()
    if isinstance(names, str):
        names = [n for n in (s.strip() for s in names.split(",")) if n]
    wanted: list[str] = []
    for n in names or ():
        if n not in wanted:
            wanted.append(n)
    tricks = [get(n) for n in wanted]
    params = dict(params or {})
    for n in params:
        if n not in wanted:
            hint = "" if n in _REGISTRY else _suggest(n, _REGISTRY)
            raise TrickError(f"parameters given for trick {n!r}, which is not in the stack "
                             f"({', '.join(wanted) or 'empty'}){hint}")
    in_stack = set(wanted)
    for t in tricks:
        missing = [r for r in t.requires if r not in in_stack]
        if missing:
            raise TrickError(f"trick {t.name!r} requires {', '.join(map(repr, missing))}, which is not in the stack")
    for t in tricks:
        for c in t.conflicts:
            if c in in_stack:
                raise TrickError(f"tricks {t.name!r} and {c!r} conflict and cannot be combined")
    owner: dict[str, str] = {}
    for t in sorted(tricks, key=lambda t: t.name):
        for slot in t.replaces:
            if slot in owner:
                raise TrickError(
                    f"tricks {owner[slot]!r} and {t.name!r} both replace the {slot!r} slot and cannot be combined"
                )
            owner[slot] = t.name
    trainers = [t for t in tricks if isinstance(t, UserTrainer)]
    entries = [(t, t.params_for(params.get(t.name), trainers.index(t)) if isinstance(t, UserTrainer)
                else _make_params(t, params.get(t.name))) for t in tricks]
    # Replacements first (they set the base fillers), then wrappers and hook-only tricks by (order, name);
    # user trainers last, in the order the spec gives them.
    entries.sort(key=lambda e: (0 if e[0].replaces and not e[0].wraps else 1, e[0].order,
                                e[1].position if isinstance(e[0], UserTrainer) else 0, e[0].name))
    return Stack(tuple(entries))


def parse_set_option(text: str) -> tuple[str, str, Any]:
    """Parse ``trick.param=value`` (from ``--set``) into ``(trick, param, typed value)``; TrickError if bad."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise TrickError(f"--set {text!r}: expected trick.param=value, e.g. warmup.epochs=20")
    key, raw = text.split("=", 1)
    trick_name, param = key.strip().split(".", 1)
    trick = get(trick_name)
    names = [f.name for f in dataclasses.fields(trick.Params)]
    if param not in names:
        raise TrickError(f"--set {key}: trick {trick_name!r} has no parameter {param!r}{_suggest(param, names)} "
                         f"(accepted: {', '.join(names) or 'none'})")
    try:
        value = parse_text_value(trick.Params, param, raw.strip())
    except ValueError as exc:
        raise TrickError(f"--set {key}: {exc}") from None
    return trick_name, param, value
