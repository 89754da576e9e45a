"""A user's own nnU-Net trainer subclass as a stack entry: ``factors = ["warmup", "trainer:mypkg.trainers.MyLoss"]``.

A ``trainer:`` entry is a training-phase factor like a trick, with two parameters that the registry fills, not
the user: ``source``, a hash of the file of the class's module (an edited trainer is a new training), and
``position``, its place among the stack's trainer entries in the order the spec gives them (trainers compose
in that order, after bench's parts). Locating the module does not import it (its parent packages are
imported); the class itself is imported when the nnU-Net engine composes the cell's trainer
(:func:`bench.engines.nnunet.compose.trainer_class`), which also checks that it subclasses ``nnUNetTrainer``.

On the native engine a trainer entry has no form: the engine refuses the stack before anything trains.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bench.errors import TrickError
from tricks._base import Trick

__all__ = ["PREFIX", "UserTrainer", "is_trainer_name", "split_path"]

PREFIX = "trainer:"
_ORDER = 10_000  # after every trick (wrapper order), so trainers sort last, in their spec order


def is_trainer_name(name: object) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


def split_path(name: str) -> tuple[str, str]:
    """``trainer:pkg.mod.Class`` -> ``("pkg.mod", "Class")``; TrickError when it is not a dotted class path."""
    path = name[len(PREFIX):]
    module, _, cls = path.rpartition(".")
    if not module or not all(p.isidentifier() for p in path.split(".")):
        raise TrickError(f"{name!r}: expected trainer:MODULE.CLASS with a dotted Python path, "
                         "e.g. trainer:mypkg.trainers.MyLoss")
    return module, cls


def module_hash(name: str) -> str:
    """Hash of the source file of the entry's module, found without importing the module itself."""
    module, _ = split_path(name)
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:
        raise TrickError(f"{name!r}: module {module!r} cannot be found ({type(exc).__name__}: {exc})") from None
    if spec is None or not spec.origin or not spec.has_location:
        raise TrickError(f"{name!r}: module {module!r} cannot be found on the Python path "
                         "(install its package or add its folder to PYTHONPATH)")
    with open(spec.origin, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()[:16]


@dataclass(frozen=True)
class TrainerParams:
    source: str = field(default="", metadata={"help": "hash of the trainer module's file (set by bench)"})
    position: int = field(default=0, metadata={"help": "place among the trainer entries, in spec order"})


class UserTrainer(Trick):
    """The stack entry of one ``trainer:MODULE.CLASS``."""

    phase = "training"
    section = "user trainer"
    Params = TrainerParams

    def __init__(self, name: str) -> None:
        split_path(name)
        self.name = name  # type: ignore[misc]
        self.summary = f"your nnU-Net trainer {name[len(PREFIX):]} (composed after bench's parts)"  # type: ignore[misc]
        self.order = _ORDER  # type: ignore[misc]
        self.nnunet_form = "your trainer class as it is, composed after bench's parts"  # type: ignore[misc]

    def params_for(self, overrides: Mapping[str, Any] | None, position: int) -> TrainerParams:
        """The entry's parameters: the recorded ones when a stored stack gives them, else computed."""
        overrides = dict(overrides or {})
        unknown = [k for k in overrides if k not in ("source", "position")]
        if unknown:
            raise TrickError(f"{self.name!r} takes no parameters (got {', '.join(unknown)})")
        source = overrides.get("source") or module_hash(self.name)
        return TrainerParams(str(source), int(overrides.get("position", position)))

    def apply(self, recipe: Any, params: Any) -> None:
        """Nothing on bench's own recipe: the entry acts only as an nnU-Net trainer part."""

    def load_class(self) -> type:
        """Import the class; TrickError in one line when it cannot be imported or is not an nnUNetTrainer."""
        module, cls_name = split_path(self.name)
        try:
            mod = importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001  (any error inside the user's module is reported in one line)
            raise TrickError(f"{self.name!r}: importing {module!r} failed: {type(exc).__name__}: {exc}") from None
        cls = getattr(mod, cls_name, None)
        if cls is None:
            raise TrickError(f"{self.name!r}: module {module!r} has no {cls_name!r}")
        from bench.engines.nnunet.parts import nnunet_trainer_base

        base = nnunet_trainer_base()
        if not isinstance(cls, type) or not issubclass(cls, base):
            raise TrickError(f"{self.name!r}: {module}.{cls_name} is not a subclass of nnU-Net's nnUNetTrainer")
        return cls

    def nnunet_part(self, params: Any) -> type:
        return self.load_class()

    def __repr__(self) -> str:
        return f"<trainer {self.name[len(PREFIX):]}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UserTrainer) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)
