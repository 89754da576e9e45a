"""The trick registry and Stack: resolution rules, parameters, and a smoke training of every trick and pair.

The smoke tests are parametrised over the registry, so a trick added later is trained alone and with every
other trick the day it lands (tiny model: width 4, depth 2, patch 16, 2 iterations, no workers/validation).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import tricks
from bench.engine import api
from bench.engine.config import InferenceConfig, ModelConfig, TrainConfig
from bench.engine.recipe import baseline_recipe
from bench.errors import TrickError
from tricks import _registry
from tricks._base import Trick, optuna_space, to_optuna_distribution

NAMES = [t.name for t in tricks.list_tricks()]
TINY_MODEL = ModelConfig(width=4, depth=2)
TINY_TRAIN = TrainConfig(iterations=2, epoch_length=1, patch=16, batch=1, num_workers=0, val_every=0,
                         checkpoint_every=0)


def _valid_pairs() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    ok, refused = [], []
    for a, b in itertools.combinations(NAMES, 2):
        try:
            tricks.resolve([a, b])
        except TrickError:
            refused.append((a, b))
        else:
            ok.append((a, b))
    return ok, refused


VALID_PAIRS, REFUSED_PAIRS = _valid_pairs()


def _smoke(names: list[str], dataset, tmp_path: Path) -> None:
    params = {n: dict(tricks.get(n).smoke_params) for n in names if tricks.get(n).smoke_params}
    stack = tricks.resolve(names, params)
    losses: list[float] = []
    result = api.train(dataset, tmp_path / "t", TINY_MODEL, TINY_TRAIN, stack,
                       progress=lambda info: losses.append(info["loss"]))
    assert len(losses) >= 2
    assert all(math.isfinite(v) for v in losses), losses
    assert result.checkpoint.exists()
    if any(tricks.get(n).phase == "inference" for n in names):
        icfg = stack.inference_config(InferenceConfig(window=16))
        folds = stack.folds_for(0, dataset.n_folds)
        case_id = dataset.test_ids()[0]
        (cid, labels), = list(api.predict([result.checkpoint] * len(folds), dataset, [case_id], icfg))
        assert cid == case_id and labels.shape == tuple(dataset.load(case_id).meta.source_shape)


# ---------------------------------------------------------------------------------------------- smoke
@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_every_trick_alone_trains_with_finite_loss(name: str, prepared, tmp_path: Path) -> None:
    _smoke([name], prepared, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("pair", VALID_PAIRS, ids=["+".join(p) for p in VALID_PAIRS])
def test_every_valid_pair_trains_with_finite_loss(pair: tuple[str, str], prepared, tmp_path: Path) -> None:
    _smoke(list(pair), prepared, tmp_path)


@pytest.mark.parametrize("pair", REFUSED_PAIRS or [("", "")], ids=["+".join(p) for p in REFUSED_PAIRS] or ["none"])
def test_refused_pairs_name_both_tricks(pair: tuple[str, str]) -> None:
    if pair == ("", ""):
        pytest.skip("no trick pair is refused in the current registry")
    with pytest.raises(TrickError) as exc:
        tricks.resolve(list(pair))
    assert pair[0] in str(exc.value) and pair[1] in str(exc.value)


# ---------------------------------------------------------------------------------------------- declarations
@pytest.mark.parametrize("name", NAMES)
def test_declaration_and_parameters_are_complete(name: str) -> None:
    t = tricks.get(name)
    assert t.summary and t.section and t.phase in ("training", "inference")
    assert t.replaces or t.wraps or t.adds_hooks, f"{name} declares no slot"
    defaults = t.Params()
    for f in dataclasses.fields(t.Params):
        assert "help" in f.metadata, f"{name}.{f.name} has no help text"
    for pname, spec in optuna_space(t.Params).items():
        dist = to_optuna_distribution(spec)
        value = getattr(defaults, pname)
        if spec[0] == "categorical":
            assert value in dist.choices
        else:
            assert dist.low <= value <= dist.high, f"{name}.{pname} default {value} outside its search range"
    for other in (*t.requires, *t.conflicts):
        assert other in NAMES, f"{name} requires or conflicts with {other!r}, which is not a registered trick"
    # smoke parameters are valid parameters
    tricks.resolve([name, *t.requires], {name: dict(t.smoke_params)} if t.smoke_params else None)


def test_list_and_get() -> None:
    assert {"dense_blocks", "self_ensemble", "warmup"} <= set(NAMES)
    assert NAMES == sorted(NAMES)
    assert tricks.get("warmup").name == "warmup"
    assert [t.name for t in tricks.list_tricks("warm")] == ["warmup"]


# ---------------------------------------------------------------------------------------------- refusals
def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(TrickError, match=r"unknown trick 'warmpu'; did you mean 'warmup'"):
        tricks.resolve(["warmpu"])
    with pytest.raises(TrickError, match="did you mean 'dense_blocks'"):
        tricks.resolve("dense_block,warmup")


def test_unknown_and_invalid_parameters_are_refused() -> None:
    with pytest.raises(TrickError, match=r"'warmup' has no parameter 'epoch'; did you mean 'epochs'"):
        tricks.resolve(["warmup"], {"warmup": {"epoch": 3}})
    with pytest.raises(TrickError, match=r"warmup.*epochs='many' must be a number"):
        tricks.resolve(["warmup"], {"warmup": {"epochs": "many"}})
    with pytest.raises(TrickError, match=r"warmup.*k=0.5 is out of range"):
        tricks.resolve(["warmup"], {"warmup": {"k": 0.5}})
    with pytest.raises(TrickError, match=r"parameters given for trick 'warmup', which is not in the stack"):
        tricks.resolve(["dense_blocks"], {"warmup": {"epochs": 3}})


@pytest.fixture
def fake_tricks(monkeypatch: pytest.MonkeyPatch):
    """Register throw-away tricks for the resolution rules (removed after the test)."""

    def add(cls: type[Trick]) -> type[Trick]:
        monkeypatch.setitem(_registry._REGISTRY, cls.name, cls())
        return cls

    class A(Trick):
        name, summary, section = "fake_a", "a", "-"
        replaces = ("sampler",)

        def apply(self, recipe, params):
            recipe.notes.setdefault("order", []).append("a")

    class B(Trick):
        name, summary, section = "fake_b", "b", "-"
        replaces = ("sampler",)

        def apply(self, recipe, params):
            recipe.notes.setdefault("order", []).append("b")

    class C(Trick):
        name, summary, section = "fake_c", "c", "-"
        wraps = ("loss",)
        requires = ("fake_a",)
        conflicts = ("warmup",)
        order = 10

        @dataclass(frozen=True)
        class Params:
            w: float = field(default=0.5, metadata={"optuna": ("float", 0.0, 1.0), "range": (0.0, 1.0),
                                                     "help": "w"})
            mode: str = field(default="x", metadata={"optuna": ("categorical", ("x", "y")), "help": "m"})

        def apply(self, recipe, params):
            recipe.notes.setdefault("order", []).append("c")

    class D(Trick):
        name, summary, section = "fake_d", "d", "-"
        wraps = ("loss",)
        order = 5

        def apply(self, recipe, params):
            recipe.notes.setdefault("order", []).append("d")

    for cls in (A, B, C, D):
        add(cls)
    return None


def test_slot_clash_conflict_and_requirement(fake_tricks) -> None:
    with pytest.raises(TrickError, match=r"'fake_a' and 'fake_b' both replace the 'sampler' slot"):
        tricks.resolve(["fake_b", "fake_a"])
    with pytest.raises(TrickError, match=r"'fake_c' requires 'fake_a'"):
        tricks.resolve(["fake_c"])
    with pytest.raises(TrickError, match=r"'fake_c' and 'warmup' conflict"):
        tricks.resolve(["fake_a", "fake_c", "warmup"])
    with pytest.raises(TrickError, match=r"mode='z' is not one of 'x', 'y'"):
        tricks.resolve(["fake_a", "fake_c"], {"fake_c": {"mode": "z"}})


def test_application_order_is_canonical(fake_tricks) -> None:
    # replacements first, then wrappers by (order, name), whatever order the names come in
    for names in (["fake_c", "fake_d", "fake_a"], ["fake_d", "fake_a", "fake_c"]):
        recipe = tricks.resolve(names).build(baseline_recipe())
        assert recipe.notes["order"] == ["a", "d", "c"]


def test_training_items_and_key(fake_tricks) -> None:
    s1 = tricks.resolve(["warmup", "dense_blocks"], {"warmup": {"epochs": 5}})
    s2 = tricks.resolve(["dense_blocks", "warmup"], {"warmup": {"epochs": 5.0}})
    assert s1.training_items() == s2.training_items() == [
        ("dense_blocks", {"layers": 3, "growth": 0.5}), ("warmup", {"epochs": 5.0, "k": 4.0})]
    k1 = api.training_key("fp", TINY_MODEL, TINY_TRAIN, s1)
    assert k1 == api.training_key("fp", TINY_MODEL, TINY_TRAIN, s2)
    # machine settings do not change the key; training settings and tricks do
    assert k1 == api.training_key("fp", TINY_MODEL, dataclasses.replace(TINY_TRAIN, num_workers=3, device="cpu"), s1)
    assert k1 != api.training_key("fp", TINY_MODEL, dataclasses.replace(TINY_TRAIN, seed=1), s1)
    assert k1 != api.training_key("fp2", TINY_MODEL, TINY_TRAIN, s1)
    assert k1 != api.training_key("fp", TINY_MODEL, TINY_TRAIN, tricks.resolve(["dense_blocks", "warmup"]))


def test_inference_tricks_do_not_change_the_training_key(monkeypatch: pytest.MonkeyPatch) -> None:
    class Inf(Trick):
        name, summary, section, phase = "fake_inf", "i", "-", "inference"
        replaces = ("window_fusion",)

        def apply(self, recipe, params):
            from bench.engine.recipe import WindowFusion

            recipe.window_fusion = WindowFusion(0.5, "gaussian")

    monkeypatch.setitem(_registry._REGISTRY, "fake_inf", Inf())
    with_inf = tricks.resolve(["warmup", "fake_inf"])
    without = tricks.resolve(["warmup"])
    assert api.training_key("fp", TINY_MODEL, TINY_TRAIN, with_inf) == api.training_key(
        "fp", TINY_MODEL, TINY_TRAIN, without)
    cfg = with_inf.inference_config(InferenceConfig())
    assert (cfg.overlap, cfg.weights) == (0.5, "gaussian")
    assert without.inference_config(InferenceConfig()) == InferenceConfig()
    assert without.folds_for(2, 5) == [2]


def test_parse_set_option() -> None:
    assert tricks.parse_set_option("warmup.epochs=7") == ("warmup", "epochs", 7.0)
    for bad, msg in (("warmup=3", "expected trick.param=value"), ("warmup.epoks=3", "did you mean 'epochs'"),
                     ("warmup.epochs=abc", "must be a number"), ("nope.x=1", "unknown trick 'nope'")):
        with pytest.raises(TrickError, match=msg):
            tricks.parse_set_option(bad)
