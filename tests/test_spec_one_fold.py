"""`[data] folds = 1`: every non-test case trains, there is no validation; designs that select on validation
refuse it in one line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.errors import SpecError
from bench.runner.spec import parse_spec

SPEC = """
name = "one"
design = "{design}"
{tricks}
folds = [0]
seeds = [0]
[data]
path = "synthetic"
folds = {folds}
test_fraction = 0.25
[data.synthetic]
cases = 8
shape = [32, 32, 32]
[model]
depth = 2
width = 4
[train]
iterations = 3
epoch_length = 1
patch = 16
batch = 1
val_every = 1
num_workers = 0
"""


def _text(design: str, folds: int = 1) -> str:
    tricks = 'factors = ["warmup", "patch_fusion"]' if design != "list" else '[[rows]]\nlabel = "BL"\ntricks = []'
    if design == "list":
        return SPEC.format(design=design, tricks="", folds=folds) + tricks.replace("[[rows]]", "\n[[rows]]")
    return SPEC.format(design=design, tricks=tricks, folds=folds)


def test_one_fold_spec_trains_on_every_non_test_case(tmp_path: Path) -> None:
    from bench.engine import api
    from bench.engine.config import ModelConfig, TrainConfig
    from bench.runner.workspace import Workspace, ensure_dataset

    spec = parse_spec(_text("list"), "one.toml")
    assert spec.data.folds == 1
    ds = ensure_dataset(spec, Workspace(tmp_path))
    assert ds.n_folds == 1 and ds.val_ids(0) == [] and len(ds.test_ids()) == 2
    assert sorted(ds.train_ids(0)) == sorted(set(ds.case_ids) - set(ds.test_ids())) and len(ds.train_ids(0)) == 6
    cfg = TrainConfig(**{**spec.train, "device": "cpu"})
    result = api.train(ds, tmp_path / "t", ModelConfig(**spec.model), cfg)
    assert result.iterations == 3 and not any("val_dice_WT" in p for p in result.curve)  # nothing to validate


@pytest.mark.parametrize("design", ["forward", "optuna"])
def test_designs_selecting_on_validation_refuse_one_fold(design: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(_text(design), "one.toml")
    msg = str(info.value)
    assert msg.startswith("one.toml: data.folds = 1 leaves no validation cases") and design in msg
    assert "\n" not in msg
    parse_spec(_text(design, folds=2), "two.toml")  # with validation it is accepted


def test_zero_folds_is_refused() -> None:
    with pytest.raises(SpecError, match=r"data.folds = 0 must be >= 1 \(1: every non-test case trains"):
        parse_spec(_text("list", folds=0), "zero.toml")
