"""How a model's output channels become probabilities and labels at inference: output heads.

The engine's own head reads the class channels (softmax, then argmax). A trick that trains other outputs
(multitask's sigmoid region channels) defines how they decode in its own module and registers the head
under a name (``tricks.multitask`` registers ``"regions"``); :class:`InferenceConfig` picks the head with
``regions``. The engine never imports a trick: a head that is asked for but not registered is an error that
says which import registers it.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

__all__ = ["OutputHead", "ClassHead", "register_head", "get_head", "head_for"]


class OutputHead(Protocol):
    """Decoding of one kind of model output."""

    name: str

    def channels(self, n_classes: int) -> int:
        """How many probability channels :meth:`probabilities` returns."""

    def check(self, model: torch.nn.Module) -> None:
        """Raise :class:`bench.errors.SpecError` when ``model`` has no such outputs."""

    def probabilities(self, logits: torch.Tensor, n_classes: int) -> torch.Tensor:
        """``(B, channels, ...)`` probabilities from the model's logits ``(B, n_classes + extra, ...)``."""

    def labels(self, probs: torch.Tensor) -> torch.Tensor:
        """uint8 class indices ``(...)`` from averaged probabilities ``(channels, ...)``."""


class ClassHead:
    """The class channels: softmax over the first ``n_classes`` logits (extra outputs are dropped), argmax."""

    name = "classes"

    def channels(self, n_classes: int) -> int:
        return n_classes

    def check(self, model: torch.nn.Module) -> None:
        return None

    def probabilities(self, logits: torch.Tensor, n_classes: int) -> torch.Tensor:
        return torch.softmax(logits[:, :n_classes].float(), 1)

    def labels(self, probs: torch.Tensor) -> torch.Tensor:
        return probs.argmax(0).to(torch.uint8)


_HEADS: dict[str, Any] = {"classes": ClassHead()}
_REGISTERED_BY = {"regions": "tricks.multitask"}


def register_head(head: OutputHead) -> OutputHead:
    """Make ``head`` available under ``head.name`` (a trick module does this at import)."""
    _HEADS[head.name] = head
    return head


def get_head(name: str) -> OutputHead:
    try:
        return _HEADS[name]
    except KeyError:
        from bench.errors import SpecError

        where = _REGISTERED_BY.get(name)
        raise SpecError(f"output head {name!r} is not registered"
                        + (f" (importing {where} registers it)" if where else "")) from None


def head_for(cfg: Any) -> OutputHead:
    """The head an :class:`~bench.engine.config.InferenceConfig` asks for (``regions``: the region head)."""
    return get_head("regions" if getattr(cfg, "regions", False) else "classes")
