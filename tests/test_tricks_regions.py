"""Region-based prediction from the multitask trick's sigmoid ET/WT/TC outputs (nnU-Net's way)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

import tricks
from bench.engine import api
from bench.engine.config import InferenceConfig, ModelConfig, TrainConfig
from bench.errors import SpecError
from tricks.multitask import regions_to_classes


def test_regions_to_classes_follows_the_nesting() -> None:
    #               ET    WT    TC       expected class
    cases = [((0.1, 0.2, 0.1), 0), ((0.1, 0.7, 0.2), 2), ((0.2, 0.8, 0.6), 1), ((0.7, 0.9, 0.8), 3),
             ((0.6, 0.1, 0.1), 3), ((0.4, 0.3, 0.51), 1)]
    q = torch.tensor([c for c, _ in cases], dtype=torch.float32).T.reshape(3, len(cases), 1, 1)
    assert regions_to_classes(q).flatten().tolist() == [k for _, k in cases]


def test_region_prediction_needs_region_outputs(tmp_path: Path) -> None:
    from bench.engine.synthetic import MemoryDataset

    ds = MemoryDataset(cases=3, shape=(24, 24, 16), seed=0, folds=2)
    cfg = TrainConfig(iterations=1, epoch_length=1, patch=16, batch=1, num_workers=0, val_every=0, device="cpu")
    res = api.train(ds, tmp_path, ModelConfig(width=4, depth=2), cfg, tricks.resolve([]))
    with pytest.raises(SpecError, match="inference.regions: the model has no sigmoid region outputs"):
        list(api.predict([res.checkpoint], ds, ds.case_ids[:1], InferenceConfig(regions=True, device="cpu")))


def test_region_prediction_thresholds_the_models_region_outputs(tmp_path: Path) -> None:
    import numpy as np

    from bench.data.formats import classes_to_brats
    from bench.engine.checkpoint import load_checkpoint
    from bench.engine.infer import model_from_checkpoint
    from bench.engine.synthetic import MemoryDataset

    ds = MemoryDataset(cases=3, shape=(24, 24, 16), seed=0, folds=2)
    cfg = TrainConfig(iterations=2, epoch_length=1, patch=16, batch=1, num_workers=0, val_every=0, device="cpu")
    res = api.train(ds, tmp_path, ModelConfig(width=4, depth=2), cfg, tricks.resolve(["multitask"]))
    cid = ds.case_ids[0]
    case = ds.load(cid)
    shape = case.image.shape[1:]
    window = int(max(shape) + (-max(shape)) % 4)  # one window covers the whole volume
    (_, got), = api.predict([res.checkpoint], ds, [cid], InferenceConfig(regions=True, window=window, device="cpu"))
    (_, by_class), = api.predict([res.checkpoint], ds, [cid], InferenceConfig(window=window, device="cpu"))
    model = model_from_checkpoint(res.checkpoint, load_checkpoint(res.checkpoint)).eval()
    x = torch.zeros(1, 4, window, window, window)
    x[0, :, : shape[0], : shape[1], : shape[2]] = torch.from_numpy(np.asarray(case.image, np.float32))
    with torch.no_grad():
        q = torch.sigmoid(model(x)[0, 4:7, : shape[0], : shape[1], : shape[2]]).numpy()
    et, wt, tc = q > 0.5
    classes = np.zeros(shape, np.uint8)
    classes[wt], classes[tc], classes[et] = 2, 1, 3
    want = np.zeros(case.meta.source_shape, np.uint8)
    want[tuple(slice(a, b) for a, b in case.meta.bbox)] = classes_to_brats(classes)
    assert np.array_equal(got, want)
    assert not np.array_equal(got, by_class)  # the class head and the region heads are different predictions


def test_region_prediction_is_an_inference_option_only() -> None:
    # the option does not change which training a result belongs to
    a, b = InferenceConfig(), dataclasses.replace(InferenceConfig(), regions=True)
    assert a != b and not hasattr(TrainConfig(), "regions")


def test_one_definition_of_the_regions_and_one_dice() -> None:
    import numpy as np

    from bench.data.formats import BRATS2019, CLASS_REGIONS, classes_to_brats, region_masks
    from bench.engine.infer import region_dice
    from bench.evaluation.metrics import dice
    from tricks.multitask import REGION_ORDER, region_targets

    assert CLASS_REGIONS == {"ET": (3,), "TC": (1, 3), "WT": (1, 2, 3)}
    rng = np.random.default_rng(0)
    pred, gt = rng.integers(0, 4, (6, 7, 5)), rng.integers(0, 4, (6, 7, 5))
    # the engine's validation Dice is the evaluation's Dice on the BraTS label maps
    p_masks, g_masks = region_masks(classes_to_brats(pred), BRATS2019), region_masks(classes_to_brats(gt), BRATS2019)
    assert region_dice(pred, gt) == {r: dice(p_masks[r], g_masks[r]) for r in ("ET", "TC", "WT")}
    # the multitask trick's training targets are the same regions
    maps = region_targets(torch.from_numpy(gt)[None])[0].numpy().astype(bool)
    for i, r in enumerate(REGION_ORDER):
        assert (maps[i] == g_masks[r]).all()


def test_region_decoding_lives_in_the_trick_and_the_engine_imports_no_trick() -> None:
    import re

    from bench.engine.heads import get_head
    from tricks.multitask import RegionHead

    assert isinstance(get_head("regions"), RegionHead)  # registered by importing tricks.multitask
    with pytest.raises(SpecError, match="output head 'nope' is not registered"):
        get_head("nope")
    engine = Path(__file__).resolve().parents[1] / "bench" / "engine"
    for f in (engine / "infer.py", engine / "heads.py"):
        assert not re.search(r"^\s*(from|import) tricks", f.read_text(), re.M), f"{f.name} imports a trick"
