"""The base class of every trick, and the conventions of its parameters.

A trick is one module in ``tricks/`` holding one :class:`Trick` subclass decorated with
:func:`tricks._registry.register`::

    @register
    class Warmup(Trick):
        name = "warmup"
        summary = "learning rate rises linearly from eta/k to eta over W epochs, then the base schedule"
        section = "2.3"                      # where the paper describes it
        phase = "training"                   # or "inference": changes only prediction, shares checkpoints
        requires = ()                        # trick names that must be in the stack too
        conflicts = ()                       # trick names that may not be in the stack
        replaces = ()                        # slots it fills exclusively (see bench.engine.recipe.SLOTS)
        wraps = ("schedule",)                # slots it wraps (keeps the current filler and calls it)
        order = 50                           # wrappers are applied in increasing order (lower = inner)

        @dataclass(frozen=True)
        class Params:
            epochs: int = field(default=20, metadata={"optuna": ("int", 1, 40), "range": (0, None),
                                                      "help": "warm-up length W in epochs"})

        def apply(self, recipe, params):
            recipe.schedule = WarmupSchedule(recipe.schedule, params.epochs)

Parameter conventions (``Params`` must be a frozen dataclass; every field has a default = the paper's value,
or a sensible choice documented in the trick's docstring):

- allowed field types: ``int``, ``float``, ``bool``, ``str``, and tuples of those (or tuples of tuples, e.g. a
  patch pool ``((64, 15), (80, 8))``); lists given by a TOML spec are turned into tuples;
- ``metadata["optuna"]`` is the search distribution, one of
    ``("float", low, high)``, ``("float", low, high, {"log": True})``, ``("float", low, high, {"step": s})``,
    ``("int", low, high)``, ``("int", low, high, {"step": s, "log": bool})``,
    ``("categorical", (choice, ...))``;
  :func:`optuna_space` returns ``{field: spec}`` and :func:`to_optuna_distribution` turns one spec into an
  ``optuna.distributions`` object (optuna is imported only there). A field without it is not searched.
- ``metadata["range"] = (low, high)`` (inclusive, ``None`` = open) and ``metadata["choices"] = (...)`` are
  validity checks applied to every value, from a spec, ``--set`` or a search; a ``categorical`` optuna spec
  implies its choices. A trick can check more in :meth:`Trick.check` (raise ``ValueError`` with a message);
- ``metadata["help"]`` is the one-line description shown by ``bench tricks show``.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, ClassVar

from bench.engine.recipe import Recipe

__all__ = ["Trick", "NoParams", "optuna_space", "to_optuna_distribution", "coerce_value", "params_to_dict",
           "parse_text_value"]

PHASES = ("training", "inference")


@dataclass(frozen=True)
class NoParams:
    """Parameters of a trick that has none."""


class Trick:
    """Base class of a trick. Subclasses set the class attributes and implement :meth:`apply`."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    section: ClassVar[str] = ""
    phase: ClassVar[str] = "training"
    requires: ClassVar[tuple[str, ...]] = ()
    conflicts: ClassVar[tuple[str, ...]] = ()
    replaces: ClassVar[tuple[str, ...]] = ()
    wraps: ClassVar[tuple[str, ...]] = ()
    adds_hooks: ClassVar[bool] = False
    order: ClassVar[int] = 50
    Params: ClassVar[type] = NoParams
    # Parameter overrides for the registry's smoke tests (tiny CPU trainings: width 4, depth 2, patch 16,
    # 2 iterations): set them when the paper defaults would be too big there, e.g. a CPU-sized patch pool.
    smoke_params: ClassVar[dict[str, Any]] = {}
    # What the trick becomes on the nnU-Net engine (one line for ``bench tricks --engine nnunet``); None = no
    # faithful nnU-Net form, and the engine refuses a stack holding it (docs/engines.md says why, per trick).
    nnunet_form: ClassVar[str | None] = None

    def apply(self, recipe: Recipe, params: Any) -> None:
        """Change ``recipe`` in place: replace or wrap the declared slots, add hooks."""
        raise NotImplementedError

    def check(self, params: Any) -> None:
        """Extra validation of a parameter set; raise ``ValueError`` naming the parameter."""

    # ---------------------------------------------------------------- nnU-Net v2 (bench.engines.nnunet)

    def nnunet_check(self, params: Any) -> None:
        """Refuse (``ValueError`` naming the parameter) values that have no meaning on nnU-Net."""

    def nnunet_part(self, params: Any) -> type | None:
        """A training-phase trick's trainer part: a subclass of nnU-Net's ``nnUNetTrainer`` overriding the few
        methods the trick needs, each calling ``super()``, so that parts compose
        (:func:`bench.engines.nnunet.compose.trainer_class`). Built lazily: nnunetv2 is imported here, never
        when the tricks are imported; equal parameters give the same class. None: no trainer part."""
        return None

    def nnunet_inference(self, params: Any, settings: dict[str, Any]) -> None:
        """An inference-phase trick's nnU-Net form: change the predictor ``settings`` in place (keys of
        :func:`bench.engines.nnunet.compose.inference_settings`)."""

    @property
    def slots(self) -> tuple[str, ...]:
        return tuple(self.replaces) + tuple(self.wraps)

    def __repr__(self) -> str:
        return f"<trick {self.name}>"


def params_to_dict(params: Any) -> dict[str, Any]:
    """Canonical plain form of a Params instance (tuples become lists: JSON-ready)."""

    def plain(v: Any) -> Any:
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        return v

    return {f.name: plain(getattr(params, f.name)) for f in dataclasses.fields(params)}


def _field_type(params_cls: type, name: str) -> Any:
    hints = typing.get_type_hints(params_cls)
    return hints.get(name, Any)


def coerce_value(params_cls: type, name: str, value: Any) -> Any:
    """Check and convert one parameter value to the field's type; raise ``ValueError`` with the reason."""
    fields = {f.name: f for f in dataclasses.fields(params_cls)}
    f = fields[name]
    typ = _field_type(params_cls, name)
    out = _coerce(typ, value, name)
    meta = f.metadata
    choices = meta.get("choices")
    spec = meta.get("optuna")
    if choices is None and spec and spec[0] == "categorical":
        choices = tuple(spec[1])
    if choices is not None and out not in tuple(choices):
        raise ValueError(f"{name}={value!r} is not one of {', '.join(map(repr, choices))}")
    rng = meta.get("range")
    if rng is not None and isinstance(out, (int, float)) and not isinstance(out, bool):
        lo, hi = rng
        if (lo is not None and out < lo) or (hi is not None and out > hi):
            raise ValueError(f"{name}={value!r} is out of range [{'-inf' if lo is None else lo}, "
                             f"{'inf' if hi is None else hi}]")
    return out


def _coerce(typ: Any, value: Any, name: str) -> Any:
    origin = typing.get_origin(typ)
    if typ is Any:
        return value
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{name}={value!r} must be true or false")
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ValueError(f"{name}={value!r} must be an integer")
        return int(value)
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name}={value!r} must be a number")
        return float(value)
    if typ is str:
        if not isinstance(value, str):
            raise ValueError(f"{name}={value!r} must be a string")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{name}={value!r} must be a list")
        args = typing.get_args(typ)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, name) for v in value)
        if len(args) != len(value):
            raise ValueError(f"{name}={value!r} must have {len(args)} items")
        return tuple(_coerce(a, v, name) for a, v in zip(args, value))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        errors = []
        for a in typing.get_args(typ):
            if a is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(a, value, name)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError(errors[0] if errors else f"{name}={value!r} has the wrong type")
    return value


def parse_text_value(params_cls: type, name: str, text: str) -> Any:
    """Parse a ``--set trick.param=TEXT`` value for the field's type (JSON for tuples), then coerce it."""
    import json

    typ = _field_type(params_cls, name)
    value: Any
    if typ is bool:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            value = True
        elif low in ("0", "false", "no", "off"):
            value = False
        else:
            raise ValueError(f"{name}={text!r} must be true or false")
    elif typ is int or typ is float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{name}={text!r} must be a number") from None
        if typ is int:
            if value != int(value):
                raise ValueError(f"{name}={text!r} must be an integer")
            value = int(value)
    elif typ is str:
        value = text
    else:
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
    return coerce_value(params_cls, name, value)


def optuna_space(params_cls: type) -> dict[str, tuple[Any, ...]]:
    """``{field name: optuna spec tuple}`` of the searchable fields of a Params class."""
    return {f.name: tuple(f.metadata["optuna"]) for f in dataclasses.fields(params_cls) if "optuna" in f.metadata}


def to_optuna_distribution(spec: tuple[Any, ...]) -> Any:
    """Turn one ``metadata["optuna"]`` spec into an ``optuna.distributions.BaseDistribution``."""
    from optuna import distributions as d

    kind = spec[0]
    opts = dict(spec[3]) if len(spec) > 3 else {}
    if kind == "float":
        return d.FloatDistribution(float(spec[1]), float(spec[2]), log=bool(opts.get("log", False)),
                                   step=opts.get("step"))
    if kind == "int":
        return d.IntDistribution(int(spec[1]), int(spec[2]), log=bool(opts.get("log", False)),
                                 step=int(opts.get("step", 1)))
    if kind == "categorical":
        return d.CategoricalDistribution(tuple(spec[1]))
    raise ValueError(f"unknown optuna spec kind {kind!r}; accepted float, int, categorical")


def validate_trick_class(cls: type[Trick]) -> None:
    """Registration-time checks of a trick's declaration (programming errors, not user errors)."""
    from bench.engine.recipe import SLOTS

    if not cls.name or not cls.name.isidentifier():
        raise TypeError(f"trick {cls.__name__}: name {cls.name!r} must be a Python identifier")
    if cls.phase not in PHASES:
        raise TypeError(f"trick {cls.name}: phase {cls.phase!r} must be one of {PHASES}")
    for slot in (*cls.replaces, *cls.wraps):
        if slot not in SLOTS:
            raise TypeError(f"trick {cls.name}: unknown slot {slot!r}; slots are {', '.join(SLOTS)}")
    if set(cls.replaces) & set(cls.wraps):
        raise TypeError(f"trick {cls.name}: a slot cannot be both replaced and wrapped")
    if not dataclasses.is_dataclass(cls.Params):
        raise TypeError(f"trick {cls.name}: Params must be a dataclass")
    for f in dataclasses.fields(cls.Params):
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise TypeError(f"trick {cls.name}: parameter {f.name} needs a default")
        if "optuna" in f.metadata:
            spec = f.metadata["optuna"]
            if not isinstance(spec, tuple) or spec[0] not in ("float", "int", "categorical"):
                raise TypeError(f"trick {cls.name}: parameter {f.name}: bad optuna spec {spec!r}")
