"""BraTS post-processing tricks (et_to_necrosis, drop_stray_components) on constructed label maps: numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tricks
from bench.engine.postprocess import DropStrayComponents, SmallEtToNecrosis, choose_steps, mean_region_dice


def _ball(shape: tuple[int, int, int], center: tuple[int, int, int], r: float) -> np.ndarray:
    g = np.indices(shape).astype(float)
    return sum((g[i] - center[i]) ** 2 for i in range(3)) <= r * r


def _cube(shape: tuple[int, int, int], corner: tuple[int, int, int], edge: int) -> np.ndarray:
    out = np.zeros(shape, bool)
    out[tuple(slice(c, c + edge) for c in corner)] = True
    return out


SHAPE = (80, 60, 50)


def _low_grade() -> tuple[np.ndarray, np.ndarray]:
    """Reference without ET (oedema around a non-enhancing core); the prediction adds a 4x4x4 = 64 voxel ET."""
    ref = np.zeros(SHAPE, np.uint8)
    ref[_ball(SHAPE, (30, 30, 25), 10)] = 2
    ref[_ball(SHAPE, (30, 30, 25), 6)] = 1
    pred = ref.copy()
    pred[_cube(SHAPE, (28, 28, 23), 4)] = 4
    return pred, ref


def test_small_et_becomes_necrosis_and_scores_the_empty_rule() -> None:
    pred, ref = _low_grade()
    assert mean_region_dice(pred, ref) == pytest.approx(2 / 3)  # ET 0 (empty reference), TC 1, WT 1
    out = SmallEtToNecrosis(min_volume=100.0)(pred, (1.0, 1.0, 1.0))  # 64 mm3 < 100
    assert int((out == 4).sum()) == 0 and int((out == 1).sum()) == int((pred == 1).sum()) + 64
    assert np.array_equal(out == 2, pred == 2)
    assert mean_region_dice(out, ref) == pytest.approx(1.0)
    # the volume is in mm3: at 2 mm the same 64 voxels are 512 mm3, above the threshold
    assert np.array_equal(SmallEtToNecrosis(min_volume=100.0)(pred, (2.0, 2.0, 2.0)), pred)
    assert np.array_equal(SmallEtToNecrosis(min_volume=64.0)(pred, (1.0, 1.0, 1.0)), pred)  # not below: kept
    empty = ref.copy()
    assert SmallEtToNecrosis(min_volume=1e9)(empty, (1.0, 1.0, 1.0)) is empty  # no ET: untouched


def _stray() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    ref = np.zeros(SHAPE, np.uint8)
    main = _ball(SHAPE, (20, 30, 25), 9)
    ref[main] = 2
    parts = {
        "small_near": _cube(SHAPE, (31, 28, 23), 3),  # 27 voxels, 2 mm beyond the main ball's surface
        "large_far": _ball(SHAPE, (65, 30, 25), 6),  # about 30% of the main volume, 30 mm from its surface
        "large_near": _ball(SHAPE, (20, 48, 25), 6),  # about 30%, 3 mm from it
    }
    pred = ref.copy()
    for m in parts.values():
        pred[m] = 2
    return pred, ref, parts


def test_stray_components_small_or_far_are_removed() -> None:
    pred, ref, parts = _stray()
    sp = (1.0, 1.0, 1.0)
    out = DropStrayComponents(min_fraction=0.1, max_distance=20.0)(pred, sp)
    assert not out[parts["small_near"]].any() and not out[parts["large_far"]].any()
    assert out[parts["large_near"]].all() and np.array_equal(out[ref > 0], pred[ref > 0])
    # without the distance rule the far one stays; with min_fraction 1 only the largest stays
    keep_far = DropStrayComponents(min_fraction=0.1, max_distance=0.0)(pred, sp)
    assert keep_far[parts["large_far"]].all() and not keep_far[parts["small_near"]].any()
    only_main = DropStrayComponents(min_fraction=1.0, max_distance=0.0)(pred, sp)
    assert np.array_equal(only_main, ref)
    # WT Dice against a reference of the main tumour alone, before and after (numbers from the voxel counts)
    n_ref, n_near = int((ref > 0).sum()), int(parts["large_near"].sum())
    n_pred = int((pred > 0).sum())
    assert mean_region_dice(pred, ref) == pytest.approx((1 + 1 + 2 * n_ref / (n_ref + n_pred)) / 3)
    assert mean_region_dice(out, ref) == pytest.approx((1 + 1 + 2 * n_ref / (2 * n_ref + n_near)) / 3)
    # distances are in mm: at 0.5 mm voxels the far ball is 15 mm away, within 20 mm
    half = DropStrayComponents(min_fraction=0.1, max_distance=20.0)(pred, (0.5, 0.5, 0.5))
    assert half[parts["large_far"]].all()


def test_choice_on_validation_keeps_a_step_only_when_it_helps() -> None:
    low_pred, low_ref = _low_grade()
    high_ref = low_ref.copy()
    high_ref[_cube(SHAPE, (26, 26, 21), 8) & (low_ref == 1)] = 4  # 512 voxels of real ET
    high = (high_ref.copy(), high_ref, (1.0, 1.0, 1.0))
    low = (low_pred, low_ref, (1.0, 1.0, 1.0))
    steps, lines = choose_steps([SmallEtToNecrosis(min_volume=400.0, select="validation")], [low, high])
    # candidates 100, 200, 400, 800, 1600 mm3: 100 fixes the low-grade case (64) and keeps the real ET (512);
    # 400 ties it, 800 and more turn the real ET into necrosis. The first best wins.
    assert steps == (SmallEtToNecrosis(min_volume=100.0),)
    assert "0.8333 -> 1.0000 on 2 cases" in lines[0]
    steps, lines = choose_steps([SmallEtToNecrosis(min_volume=400.0, select="validation")], [high])
    assert steps == () and "off" in lines[0]
    fixed = SmallEtToNecrosis(min_volume=2000.0)
    assert choose_steps([fixed], [high])[0] == (fixed,)  # a fixed step is kept as given


def test_tricks_fill_the_postprocess_slot_in_order_and_share_trainings() -> None:
    from bench.engine import api
    from bench.engine.config import ModelConfig, TrainConfig

    stack = tricks.resolve(["et_to_necrosis", "drop_stray_components"],
                           {"et_to_necrosis": {"min_volume": 250.0, "select": "validation"}})
    steps = stack.inference_config().postprocess
    assert steps == (DropStrayComponents(0.1, 20.0), SmallEtToNecrosis(250.0, "validation"))
    assert stack.training_items() == []
    key = api.training_key("fp", ModelConfig(), TrainConfig(), stack)
    assert key == api.training_key("fp", ModelConfig(), TrainConfig(), tricks.resolve([]))
    with pytest.raises(Exception, match="select"):
        tricks.resolve(["et_to_necrosis"], {"et_to_necrosis": {"select": "best"}})


def test_choice_on_validation_needs_validation_cases(synth_raw: Path, tmp_path: Path) -> None:
    from bench.data.prepare import prepare
    from bench.engine import api
    from bench.engine.config import InferenceConfig, ModelConfig, TrainConfig
    from bench.errors import SpecError

    ds = prepare(synth_raw, tmp_path / "c", folds=1, progress=False)
    assert ds.val_ids(0) == []
    cfg = TrainConfig(iterations=1, epoch_length=1, patch=16, batch=1, num_workers=0, val_every=0)
    ck = api.train(ds, tmp_path / "t", ModelConfig(width=4, depth=2), cfg).checkpoint
    icfg = InferenceConfig(window=16, postprocess=(SmallEtToNecrosis(500.0, "validation"),))
    with pytest.raises(SpecError, match="et_to_necrosis: select = 'validation' needs validation cases"):
        next(api.predict([ck], ds, ds.test_ids()[:1], icfg))
    fixed = InferenceConfig(window=16, postprocess=(SmallEtToNecrosis(500.0),))
    (cid, labels), = list(api.predict([ck], ds, ds.test_ids()[:1], fixed))
    assert labels.shape == tuple(ds.meta(cid).source_shape)


def test_validation_choice_runs_on_the_models_fold(prepared, tmp_path: Path) -> None:
    from bench.engine import api
    from bench.engine.config import InferenceConfig, ModelConfig, TrainConfig

    cfg = TrainConfig(iterations=1, epoch_length=1, patch=16, batch=1, num_workers=0, val_every=0, fold=1)
    ck = api.train(prepared, tmp_path / "t", ModelConfig(width=4, depth=2), cfg).checkpoint
    icfg = InferenceConfig(window=16, postprocess=(DropStrayComponents(0.1, 20.0, "validation"),))
    chosen, lines = api.select_postprocess([ck], prepared, icfg)
    assert len(lines) == 1 and f"on {len(prepared.val_ids(1))} cases" in lines[0]
    assert all(s.select == "fixed" for s in chosen.postprocess)
