"""``trainer:MODULE.CLASS`` stack entries: a user's nnU-Net trainer as a factor (registry side, no nnunetv2)."""

from __future__ import annotations

import itertools
import sys
import textwrap
from pathlib import Path

import pytest

import tricks
from bench.errors import SpecError, TrickError

_counter = itertools.count()


def _module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str = "class MyLoss:\n    pass\n") -> str:
    """Write a user module into a fresh package on sys.path; return its dotted name."""
    pkg = f"usertrainers{next(_counter)}"
    (tmp_path / pkg).mkdir()
    (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / pkg / "losses.py").write_text(textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(tmp_path))
    return f"{pkg}.losses"


def test_trainer_entry_is_a_training_factor_with_its_source_hash(tmp_path, monkeypatch):
    mod = _module(tmp_path, monkeypatch)
    name = f"trainer:{mod}.MyLoss"
    stack = tricks.resolve(["warmup", name])
    assert name in stack and stack.names == tuple(sorted(["warmup", name]))
    items = dict(stack.training_items())
    assert set(items) == {"warmup", name}
    assert len(items[name]["source"]) == 16 and items[name]["position"] == 0
    assert mod not in sys.modules  # located, not imported: the class is imported when the trainer is composed
    # an edited trainer is a new training
    (tmp_path / mod.split(".")[0] / "losses.py").write_text("class MyLoss:\n    lr = 2\n")
    assert dict(tricks.resolve(["warmup", name]).training_items())[name]["source"] != items[name]["source"]


def test_trainer_entries_keep_the_spec_order_after_the_tricks(tmp_path, monkeypatch):
    mod = _module(tmp_path, monkeypatch, "class B:\n    pass\nclass A:\n    pass\n")
    b, a = f"trainer:{mod}.B", f"trainer:{mod}.A"
    stack = tricks.resolve([b, "focal_loss", a, "warmup"])
    assert [t.name for t, _ in stack.entries][-2:] == [b, a]
    assert [t.name for t, _ in tricks.resolve([a, b]).entries] == [a, b]
    # a stored stack (sorted by name) comes back in the same composition order
    again = tricks.Stack.from_dict(stack.to_dict())
    assert [t.name for t, _ in again.entries] == [t.name for t, _ in stack.entries]
    assert again.training_items() == stack.training_items()


def test_trainer_entry_errors_are_one_line(tmp_path, monkeypatch):
    with pytest.raises(TrickError, match=r"expected trainer:MODULE.CLASS"):
        tricks.resolve(["trainer:NoModule"])
    with pytest.raises(TrickError, match=r"module 'no_such_pkg_x.trainers' cannot be found") as exc:
        tricks.resolve(["trainer:no_such_pkg_x.trainers.MyLoss"])
    assert "\n" not in str(exc.value)
    mod = _module(tmp_path, monkeypatch)
    with pytest.raises(TrickError, match=r"takes no parameters"):
        tricks.resolve([f"trainer:{mod}.MyLoss"], {f"trainer:{mod}.MyLoss": {"lr": 1}})


def test_native_engine_refuses_a_trainer_entry(tmp_path, monkeypatch):
    """The engine contract's check_stack refuses entries with no form on the engine (native: its tricks)."""
    from bench.engines._base import Engine

    class NativeForms(Engine):  # only trick_forms matters to check_stack; the rest is never called here
        name = "native-forms"
        validate = prepare = training_key = train = predict = lambda *a, **k: None  # type: ignore[assignment]

        def trick_forms(self):
            return {t.name: t.summary for t in tricks.list_tricks()}

    NativeForms.__abstractmethods__ = frozenset()
    mod = _module(tmp_path, monkeypatch)
    stack = tricks.resolve(["warmup", f"trainer:{mod}.MyLoss"])
    with pytest.raises(SpecError, match=rf"has no form of trainer:{mod}.MyLoss"):
        NativeForms().check_stack(stack)
    stack.build()  # bench's own recipe ignores the entry (inference settings and fold sets still build)


def test_every_trick_declares_its_nnunet_form_or_none():
    from bench.engines.nnunet.compose import forms

    f = forms()
    assert set(f) == {t.name for t in tricks.list_tricks()}
    assert {n for n, v in f.items() if v is None} == {"dense_blocks", "random_patch_size", "semi_supervised"}
    assert all(isinstance(v, str) and v and "\n" not in v for v in f.values() if v is not None)
