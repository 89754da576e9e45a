"""Each cell's nnU-Net trainer class, composed at run time from ``nnUNetTrainer`` and one part per trick.

::

    check_stack(stack)                               # refuses before anything trains
    cls = trainer_class(stack, budget={"epochs": 2, "iterations_per_epoch": 2, "val_iterations": 1})
    trainer = cls(plans | {"continue_training": False}, "3d_fullres", fold, dataset_json, torch.device("cpu"))
    inference_settings(stack, inference)             # tile step, Gaussian weights, mirroring, fold ensemble

A part is a subclass of ``nnUNetTrainer`` that overrides the few methods its trick needs and calls ``super()``
in each (:meth:`tricks.Trick.nnunet_part`; a user's ``trainer:MODULE.CLASS`` is a part as it is). The composed
class's method resolution order is, outermost first::

    composed (budget) > user trainers, last in the spec first > bench's parts, in the stack's canonical order
    reversed > BenchBaseline > nnUNetTrainer

so bench's parts wrap each other in the order the native engine applies the tricks (replacements, then
wrappers by their ``order``), the user's trainers wrap bench's parts in spec order, and the spec's budget is
set last. ``BenchBaseline`` holds the state every factor's "off" level means on nnU-Net: no deep supervision,
no foreground oversampling, four softmax classes (BraTS labels, not regions); the parts of ``self_ensemble``,
``heuristic_sampling`` and ``multitask`` turn those on (docs/engines.md, "Tricks on nnU-Net").

Two parts that override one method, where the outer one does not call ``super()`` there (it would silently
discard the inner one), are refused before anything trains, naming both parts and the method.

nnU-Net finds trainers by class name (``nnUNetv2_train -tr``, ``initialize_from_trained_model_folder``); a
composed class is not in nnU-Net's folders. Its name is a deterministic hash of its parts and budget (so a
resumed cell finds its own output folder), and it is reachable as an attribute of this module once composed
(pickle works in the composing process). Predictors are initialised by hand: ``cls.build_network_architecture``
for the network, the ``dataset_json`` the trainer trained on (:func:`dataset_json_for`, equal to the checkpoint's
``init_args["dataset_json"]``: four classes, or regions with ``multitask``; not the raw dataset.json), then
``nnUNetPredictor.manual_initialization``.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import types
from collections.abc import Mapping
from typing import Any

from bench.engines.nnunet.parts import label_form, nnunet_trainer_base, require_nnunet
from bench.errors import SpecError, TrickError

__all__ = ["trainer_class", "check_stack", "forms", "inference_settings", "dataset_json_for", "composition",
           "BUDGET_KEYS", "baseline_part"]

#: ``[train]`` budget keys -> the nnUNetTrainer attribute each sets
BUDGET_KEYS: dict[str, str] = {"epochs": "num_epochs", "iterations_per_epoch": "num_iterations_per_epoch",
                               "val_iterations": "num_val_iterations_per_epoch"}

_COMPOSED: dict[str, type] = {}


def __getattr__(name: str) -> type:  # composed classes are attributes of this module (pickling by name)
    try:
        return _COMPOSED[name]
    except KeyError:
        raise AttributeError(name) from None


# ------------------------------------------------------------------------------------------------ baseline


@functools.cache
def baseline_part() -> type:
    """The innermost part: what every factor's "off" level means on nnU-Net.

    It offers two cooperative hooks that parts override (calling ``super()``): ``_bench_dataset_json(dj)``,
    the dataset.json the trainer is built with (four BraTS classes here; ``multitask`` makes regions of it),
    and ``_bench_configure()``, run right after ``nnUNetTrainer.__init__`` (attributes such as
    ``enable_deep_supervision`` and ``oversample_foreground_percent``), so a user trainer's own ``__init__``
    still comes after them.
    """
    import torch

    base = nnunet_trainer_base()

    class BenchBaseline(base):  # type: ignore[misc, valid-type]
        def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                     device: torch.device = torch.device("cuda")) -> None:
            super().__init__(plans, configuration, fold, self._bench_dataset_json(dataset_json), device)
            self._bench_configure()

        def _bench_dataset_json(self, dataset_json: dict) -> dict:
            return label_form(dataset_json)

        def _bench_configure(self) -> None:
            self.enable_deep_supervision = False
            self.oversample_foreground_percent = 0.0

    BenchBaseline.__module__ = __name__
    return BenchBaseline


# ------------------------------------------------------------------------------------------------ the parts


def _training_entries(stack: Any) -> list[tuple[Any, Any]]:
    return [(t, p) for t, p in stack.entries if t.phase == "training"]


def _is_user(trick: Any) -> bool:
    return str(trick.name).startswith("trainer:")


def composition(stack: Any) -> list[tuple[str, type]]:
    """``(label, part class)`` of the stack's training entries, innermost first: bench's parts in the stack's
    canonical order, then the user's trainers in spec order (the stack keeps them last, by position)."""
    require_nnunet()
    out: list[tuple[str, type]] = []
    for trick, params in _training_entries(stack):
        part = trick.nnunet_part(params)
        if part is not None:
            out.append((trick.name, part))
    return out


def _calls_super(func: Any, name: str) -> bool:
    """Whether ``func`` (a function, staticmethod or classmethod) calls ``super()...name`` (read from its code)."""
    func = getattr(func, "__func__", func)
    code = getattr(func, "__code__", None)
    if code is None:
        return True  # not Python code (a builtin, a descriptor): nothing to check
    names = set(code.co_names)
    for const in code.co_consts:  # a call inside a nested function or comprehension
        if isinstance(const, types.CodeType):
            names |= set(const.co_names)
    return "super" in names and name in names


def _overrides(part: type, base: type) -> dict[str, bool]:
    """Methods ``part`` (and its own parent classes below ``base``) define -> whether every one of those
    definitions calls ``super()`` (so the method cooperates with the parts inside it)."""
    out: dict[str, bool] = {}
    for klass in part.__mro__:
        if klass is base or issubclass(base, klass):
            break
        for name, value in vars(klass).items():
            if name.startswith("__") or not callable(getattr(value, "__func__", value)) or isinstance(value, type):
                continue
            out[name] = out.get(name, True) and _calls_super(value, name)
    return out


def _check_conflicts(parts: list[tuple[str, type]]) -> None:
    base = nnunet_trainer_base()
    layers = [("bench's baseline", baseline_part())] + parts  # innermost first
    seen: dict[str, str] = {}  # method -> label of the nearest part inside that defines it
    for label, part in layers:
        for name, cooperates in sorted(_overrides(part, base).items()):
            if name in seen and not cooperates:
                raise TrickError(f"{seen[name]!r} and {label!r} both override {name}() and {label!r} does not "
                                 f"call super() there, so it would discard {seen[name]!r}; they cannot be combined")
            seen[name] = label


def _budget_attributes(budget: Mapping[str, Any] | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, value in (budget or {}).items():
        if key not in BUDGET_KEYS:
            raise SpecError(f"train.{key} is not a budget key of the nnunet engine (accepted: {', '.join(BUDGET_KEYS)})")
        if value is None:
            continue
        low = 0 if key == "val_iterations" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise SpecError(f"train.{key}={value!r} must be an integer >= {low}")
        out[BUDGET_KEYS[key]] = int(value)
    return out


# ------------------------------------------------------------------------------------------------ public API


def forms() -> dict[str, str | None]:
    """Every registered trick -> one line of what it becomes on nnU-Net, None when it has no form there."""
    import tricks

    return {t.name: t.nnunet_form for t in tricks.list_tricks()}


def check_stack(stack: Any) -> None:
    """Refuse, before anything trains: tricks with no nnU-Net form (one line naming them), parameters with no
    nnU-Net meaning, user trainers that cannot be imported or are not nnUNetTrainer subclasses, and two parts
    that override one method without cooperating (naming both and the method)."""
    missing = [t.name for t, _ in stack.entries if not _is_user(t) and t.nnunet_form is None]
    if missing:
        accepted = [n for n, f in forms().items() if f is not None]
        raise SpecError(f"engine 'nnunet' has no form of {', '.join(sorted(missing))} "
                        f"(accepted: {', '.join(accepted)}, trainer:MODULE.CLASS)")
    for trick, params in stack.entries:
        try:
            trick.nnunet_check(params)
        except ValueError as exc:
            raise SpecError(f"trick {trick.name!r} on engine 'nnunet': {exc}") from None
    _check_conflicts(composition(stack))


def trainer_class(stack: Any, *, budget: Mapping[str, Any] | None = None) -> type:
    """The cell's trainer class: ``nnUNetTrainer`` + bench's baseline + one part per training-phase entry of
    ``stack``, composed in the fixed order of the module docstring, with the ``budget`` (``epochs``,
    ``iterations_per_epoch``, ``val_iterations``; absent or None: nnU-Net's 1000/250/50) set as
    ``num_epochs``, ``num_iterations_per_epoch``, ``num_val_iterations_per_epoch``. Equal stacks and budgets
    give the same class (and name)."""
    check_stack(stack)
    parts = composition(stack)
    attrs = _budget_attributes(budget)
    keys = [[t.name, _plain(p)] for t, p in _training_entries(stack)]
    digest = hashlib.sha256(json.dumps([keys, attrs], sort_keys=True, default=str).encode()).hexdigest()[:12]
    name = f"nnUNetTrainer_bench_{digest}"
    if name in _COMPOSED:
        return _COMPOSED[name]
    import torch

    bases = tuple(cls for _, cls in reversed(parts)) + (baseline_part(),)
    holder: list[type] = []

    def __init__(self: Any, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")) -> None:
        # keywords, so that a user trainer with extra (defaulted) parameters still gets the right values
        owner: type = holder[0]
        super(owner, self).__init__(plans=plans, configuration=configuration, fold=fold,  # type: ignore[arg-type]
                                    dataset_json=dataset_json, device=device)
        for attr, value in attrs.items():
            setattr(self, attr, value)

    labels = [label for label, _ in parts]
    namespace = {"__init__": __init__, "__module__": __name__, "__qualname__": name,
                 "bench_parts": tuple(labels), "bench_budget": dict(attrs),
                 "__doc__": f"nnU-Net trainer composed by bench: {' + '.join(labels) or 'baseline'}"}
    try:
        cls = type(name, bases, namespace)
    except TypeError as exc:  # e.g. two user trainers given in an order their own inheritance contradicts
        raise TrickError(f"the trainer parts {', '.join(labels)} cannot be composed in this order: "
                         f"{exc}") from None
    holder.append(cls)
    _COMPOSED[name] = cls
    return cls


def inference_settings(stack: Any, inference: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What the stack's inference-phase tricks become on nnU-Net's predictor.

    ``tile_step_size`` (1.0 = non-overlapping tiles, bench's off level; ``patch_fusion``: 1 - overlap),
    ``use_gaussian`` (constant weights off; ``patch_fusion`` weights), ``use_mirroring`` (the spec's
    ``[inference] mirror``, bench's default off: no trick), ``fold_ensemble`` (``model_fusion``: the fold
    models' probabilities averaged; which folds: :meth:`bench.engines.Engine.folds_for`).
    """
    settings: dict[str, Any] = {"tile_step_size": 1.0, "use_gaussian": False,
                                "use_mirroring": bool((inference or {}).get("mirror", False)),
                                "fold_ensemble": False}
    for trick, params in stack.entries:
        if trick.phase == "inference":
            trick.nnunet_inference(params, settings)
    return settings


def dataset_json_for(cls: Any, dataset_json: dict) -> dict:
    """The dataset.json a trainer of the composed class ``cls`` trains with (and its predictor must use): the
    raw one through the parts' ``_bench_dataset_json`` hooks (four BraTS classes, or regions with ``multitask``).
    Equal to the checkpoint's ``init_args["dataset_json"]``."""
    bare = cls.__new__(cls)  # the hooks read no trainer state: no __init__ (which would build the trainer)
    return bare._bench_dataset_json(dataset_json)


def _plain(params: Any) -> Any:
    import dataclasses

    return {f.name: getattr(params, f.name) for f in dataclasses.fields(params)} \
        if dataclasses.is_dataclass(params) else repr(params)


def signature_ok(cls: type) -> bool:
    """Whether nnU-Net can record ``cls``'s init arguments (its ``__init__`` names only nnUNetTrainer's)."""
    base = nnunet_trainer_base()
    wanted = [p for p in inspect.signature(base.__init__).parameters if p != "self"]  # type: ignore[misc]
    got = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]  # type: ignore[misc]
    return got == wanted
