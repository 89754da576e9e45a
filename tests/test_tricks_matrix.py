"""The conflict matrix of all tricks (the paper's eleven and the BraTS post-processing): refused pairs, why."""

from __future__ import annotations

import itertools

import pytest

from bench.errors import TrickError
from tricks import list_tricks, resolve

ALL = {
    "dense_blocks",
    "self_ensemble",
    "warmup",  # engine issue: the baseline BL
    "heuristic_sampling",
    "hard_mining",
    "focal_loss",
    "random_patch_size",
    "multitask",
    "patch_fusion",
    "model_fusion",
    "semi_supervised",
    "drop_stray_components",  # BraTS post-processing (not in the paper)
    "et_to_necrosis",
}

# Every refused pair and the reason given. Any pair not listed must resolve.
REFUSED: dict[frozenset[str], str] = {
    # both set how each voxel's cross-entropy counts (the voxel_weighting slot)
    frozenset({"focal_loss", "hard_mining"}): "conflict",
}

PHASES = {"patch_fusion": "inference", "model_fusion": "inference", "drop_stray_components": "inference",
          "et_to_necrosis": "inference"}


def test_registry_holds_all_tricks_with_declarations() -> None:
    tricks = {t.name: t for t in list_tricks()}
    assert set(tricks) == ALL
    for name, t in tricks.items():
        assert t.summary and t.section, name
        assert t.phase == PHASES.get(name, "training"), name
        assert t.slots, f"{name} declares no slot"


@pytest.mark.parametrize(
    "pair", [tuple(sorted(p)) for p in itertools.combinations(sorted(ALL), 2)], ids=lambda p: "+".join(p)
)
def test_pair(pair: tuple[str, str]) -> None:
    reason = REFUSED.get(frozenset(pair))
    if reason is None:
        stack = resolve(list(pair))
        assert set(stack.names) == set(pair)
        stack.build()  # applying both to a recipe works
        return
    with pytest.raises(TrickError) as info:
        resolve(list(pair))
    msg = str(info.value)
    assert pair[0] in msg and pair[1] in msg and reason in msg, msg
    with pytest.raises(TrickError):  # refused in either order
        resolve(list(reversed(pair)))


def test_conflicts_are_declared_on_both_sides() -> None:
    tricks = {t.name: t for t in list_tricks()}
    for t in tricks.values():
        for c in t.conflicts:
            assert c in tricks, f"{t.name} conflicts with unknown trick {c}"
            assert t.name in tricks[c].conflicts, f"{t.name} conflicts with {c} but not the reverse"


def test_all_compatible_tricks_together() -> None:
    # the largest stacks: everything but one of the conflicting pair
    for drop in ("focal_loss", "hard_mining"):
        names = sorted(ALL - {drop})
        stack = resolve(names)
        recipe = stack.build()
        assert stack.folds_for(1, 5) == [0, 1, 2, 3, 4]
        assert stack.inference_config().overlap == 0.5
        assert recipe.block == "dense" and recipe.head == "self_ensemble"
