"""The training loop: exact resume, repeatability, divergence, checkpoints, hooks, loader determinism, learning."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import tricks
from bench.engine import api
from bench.engine.checkpoint import load_checkpoint
from bench.engine.config import InferenceConfig, ModelConfig, TrainConfig
from bench.engine.loader import BatchSource, CasePool, make_loader
from bench.engine.recipe import Hook, StepState, TrainContext, baseline_recipe
from bench.engine.sampling import FixedPatchPlan, Mirror, UniformSampler
from bench.engine.train import run_training
from bench.errors import CheckpointError, SpecError, TrainingDiverged

TINY = ModelConfig(width=4, depth=2)
CFG = TrainConfig(iterations=6, epoch_length=2, patch=16, batch=2, num_workers=0, val_every=0)


def _weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(ckpt)["model"]


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_interrupted_and_resumed_run_ends_with_identical_weights(prepared, tmp_path: Path) -> None:
    stack = tricks.resolve(["warmup"], {"warmup": {"epochs": 1}})
    full = api.train(prepared, tmp_path / "full", TINY, CFG, stack)
    stop = threading.Event()

    def progress(info: dict) -> None:
        if info["iteration"] == 3:  # mid-epoch: the checkpoint is written because of the stop
            stop.set()

    with pytest.raises(api.TrainingStopped) as exc:
        api.train(prepared, tmp_path / "cut", TINY, CFG, stack, progress=progress, stop=stop)
    assert exc.value.iteration == 3 and (tmp_path / "cut" / api.LAST_CHECKPOINT).exists()
    assert load_checkpoint(exc.value.checkpoint)["iteration"] == 3
    # resume with a different number of loader workers: batches depend only on (seed, iteration)
    resumed = api.train(prepared, tmp_path / "cut", TINY, dataclasses.replace(CFG, num_workers=1), stack)
    assert resumed.iterations == full.iterations == 6
    assert _same(_weights(full.checkpoint), _weights(resumed.checkpoint))
    assert [p["loss"] for p in resumed.curve] == [p["loss"] for p in full.curve]
    assert not (tmp_path / "cut" / api.LAST_CHECKPOINT).exists()
    # a finished training is not repeated
    again = api.train(prepared, tmp_path / "cut", TINY, CFG, stack)
    assert again.checkpoint == resumed.checkpoint and again.curve == resumed.curve


@pytest.mark.slow
def test_same_seed_same_metrics_other_seed_differs(prepared, tmp_path: Path) -> None:
    cfg = dataclasses.replace(CFG, iterations=4, val_every=1, val_cases=1)
    a = api.train(prepared, tmp_path / "a", TINY, cfg)
    b = api.train(prepared, tmp_path / "b", TINY, cfg)
    c = api.train(prepared, tmp_path / "c", TINY, dataclasses.replace(cfg, seed=1))
    strip = [{k: v for k, v in p.items() if k != "seconds"} for p in a.curve]
    assert strip == [{k: v for k, v in p.items() if k != "seconds"} for p in b.curve]
    assert "val_dice_WT" in a.curve[-1]
    assert _same(_weights(a.checkpoint), _weights(b.checkpoint))
    assert not _same(_weights(a.checkpoint), _weights(c.checkpoint))


class _NanAfter:
    """A loss that becomes NaN from iteration ``n`` on."""

    def __init__(self, inner, n: int):
        self.inner, self.n = inner, n

    def __call__(self, logits, target, state: StepState):
        out = self.inner(logits, target, state)
        return out * float("nan") if state.iteration >= self.n else out


@pytest.mark.slow
def test_nan_loss_stops_with_iteration_and_last_finite_loss_keeping_the_checkpoint(prepared, tmp_path: Path) -> None:
    recipe = baseline_recipe(CFG)
    recipe.loss = _NanAfter(recipe.loss, 3)
    losses: list[float] = []
    ctx = TrainContext(prepared, tmp_path, TINY, CFG, recipe, progress=lambda i: losses.append(i["loss"]))
    with pytest.raises(TrainingDiverged) as exc:
        run_training(ctx)
    assert exc.value.iteration == 3
    assert exc.value.last_finite_loss == pytest.approx(losses[-1])
    assert "iteration 3" in str(exc.value) and f"{losses[-1]:.6g}" in str(exc.value)
    ck = load_checkpoint(tmp_path / api.LAST_CHECKPOINT)  # written at the end of epoch 1 (iteration 2)
    assert ck["iteration"] == 2 and not ck["finished"]
    assert all(torch.isfinite(t).all() for t in ck["model"].values() if t.is_floating_point())


@pytest.mark.slow
def test_checkpoint_contents_load_with_weights_only_and_hooks_resume(prepared, tmp_path: Path) -> None:
    class Counter(Hook):
        priority = 10

        def __init__(self) -> None:
            self.steps = 0
            self.seen: list[int] = []

        def after_step(self, state: StepState) -> None:
            self.steps += 1
            self.seen.append(state.iteration)

        def state_dict(self) -> dict:
            return {"steps": self.steps}

        def load_state_dict(self, state: dict) -> None:
            self.steps = int(state["steps"])

    def run(stop_at: int | None) -> Counter:
        recipe = baseline_recipe(CFG)
        hook = Counter()
        recipe.add_hook(hook)
        stop = threading.Event()

        def progress(info: dict) -> None:
            if stop_at is not None and info["iteration"] == stop_at:
                stop.set()

        ctx = TrainContext(prepared, tmp_path / "h", TINY, CFG, recipe, progress=progress, stop=stop)
        try:
            run_training(ctx)
        except api.TrainingStopped:
            pass
        return hook

    first = run(4)
    assert first.steps == 4
    ck = torch.load(tmp_path / "h" / api.LAST_CHECKPOINT, map_location="cpu", weights_only=True)
    for key in ("model", "optimizer", "rng_torch", "hooks", "iteration", "epoch", "arch", "train_cfg", "curve"):
        assert key in ck
    assert ck["hooks"] == {"Counter": {"steps": 4}} and ck["iteration"] == 4 and ck["epoch"] == 2
    second = run(None)
    assert second.steps == 6 and second.seen == [4, 5]


@pytest.mark.slow
def test_checkpoint_of_another_model_shape_is_refused(prepared, tmp_path: Path) -> None:
    cfg = dataclasses.replace(CFG, iterations=4)
    stop = threading.Event()
    stop.set()
    with pytest.raises(api.TrainingStopped):
        api.train(prepared, tmp_path, TINY, cfg, stop=stop)
    with pytest.raises(CheckpointError, match=r"another model shape \(model_cfg.width: checkpoint 4, asked 6"):
        api.train(prepared, tmp_path, dataclasses.replace(TINY, width=6), cfg)
    with pytest.raises(CheckpointError, match="another model shape"):
        api.train(prepared, tmp_path, TINY, cfg, tricks.resolve(["dense_blocks"]))
    with pytest.raises(CheckpointError, match="another training"):
        api.train(prepared, tmp_path, TINY, dataclasses.replace(cfg, seed=3))
    with pytest.raises(CheckpointError, match="no such file"):
        list(api.predict([tmp_path / "missing.pt"], prepared, prepared.test_ids()[:1], InferenceConfig()))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        list(api.predict([bad], prepared, prepared.test_ids()[:1], InferenceConfig()))
    nnunet = tmp_path / "checkpoint_final.pth"  # an nnU-Net checkpoint given to the native engine
    torch.save({"network_weights": {"w": torch.zeros(2)}, "trainer_name": "nnUNetTrainer"}, nnunet)
    with pytest.raises(CheckpointError, match=r"not a bench checkpoint .*predict it with --engine nnunet"):
        list(api.predict([nnunet], prepared, prepared.test_ids()[:1], InferenceConfig()))


def test_cuda_asked_without_a_gpu_is_a_clear_error(prepared, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(SpecError, match="no CUDA GPU is available"):
        api.train(prepared, tmp_path, TINY, dataclasses.replace(CFG, device="cuda"))


def test_batches_are_a_pure_function_of_seed_and_iteration(prepared) -> None:
    pools = [CasePool(prepared, tuple(prepared.train_ids(0)))]
    src = BatchSource(pools, FixedPatchPlan(16, 3), UniformSampler(), Mirror(), seed=5, total=6)
    in_process = [src[i] for i in range(2, 6)]
    workers = list(make_loader(BatchSource(pools, FixedPatchPlan(16, 3), UniformSampler(), Mirror(), 5, 6), 2,
                               num_workers=2, prefetch=2))
    assert len(workers) == 4
    for a, b in zip(in_process, workers):
        assert a["iteration"] == b["iteration"]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
        assert a["image"].shape == (3, 4, 16, 16, 16) and a["label"].dtype == torch.int64
    other_seed = BatchSource(pools, FixedPatchPlan(16, 3), UniformSampler(), Mirror(), seed=6, total=6)[2]
    assert not torch.equal(other_seed["image"], in_process[0]["image"])


def test_pseudo_labelled_pool_uses_its_labels_and_weight(prepared, tmp_path: Path) -> None:
    uid = prepared.unlabeled_ids[0]
    shape = prepared.load(uid).image.shape[1:]
    np.save(tmp_path / f"{uid}.npy", np.full(shape, 2, np.uint8))
    pools = [CasePool(prepared, tuple(prepared.train_ids(0))),
             CasePool(prepared, (uid,), weight=0.25, label_dir=str(tmp_path))]
    src = BatchSource(pools, FixedPatchPlan(8, 8), UniformSampler(), Mirror(), seed=0, total=20)
    seen = 0
    for i in range(20):
        b = src[i]
        for w, lab in zip(b["weight"].tolist(), b["label"]):
            if w == 0.25:
                seen += 1
                assert set(lab.unique().tolist()) <= {0, 2}
            else:
                assert w == 1.0
    assert seen > 0


@pytest.mark.slow
def test_baseline_learns_whole_tumour_within_about_a_minute(tmp_path: Path) -> None:
    """Regression guard: the CPU defaults reach WT Dice >= 0.6 on held-out synthetic cases quickly."""
    from bench.engine.synthetic import MemoryDataset
    from bench.evaluation.metrics import evaluate_case

    ds = MemoryDataset(cases=10, shape=(64, 64, 48), seed=3, folds=5)
    cfg = TrainConfig.cpu(iterations=150, epoch_length=50, num_workers=0)
    res = api.train(ds, tmp_path, ModelConfig.cpu(), cfg)
    wt = []
    for cid, labels in api.predict([res.checkpoint], ds, ds.test_ids() + ds.val_ids(0), InferenceConfig()):
        wt.append(evaluate_case(labels, ds.source_label(cid), (1.0, 1.0, 1.0))["WT"].dice)
    assert np.mean(wt) >= 0.6, wt


def test_compile_is_the_gpu_default_and_a_flag() -> None:
    assert TrainConfig.paper().compile and TrainConfig.for_device("cuda").compile
    assert not TrainConfig.cpu().compile and not TrainConfig.for_device("cpu").compile
    # a machine setting: it does not change which training a result belongs to
    assert api.training_key("f", TINY, CFG, None) == api.training_key("f", TINY, dataclasses.replace(CFG, compile=True),
                                                                       None)


@pytest.mark.slow
def test_compiled_training_matches_eager_and_stores_plain_weights(prepared, tmp_path: Path) -> None:
    from torch._dynamo.utils import counters

    cfg = dataclasses.replace(CFG, iterations=2, epoch_length=2)
    counters.clear()
    eager = api.train(prepared, tmp_path / "eager", TINY, cfg)
    assert counters["stats"]["unique_graphs"] == 0  # eager: nothing compiled
    comp = api.train(prepared, tmp_path / "comp", TINY, dataclasses.replace(cfg, compile=True))
    assert counters["stats"]["unique_graphs"] >= 1  # the training step really ran through torch.compile
    a, b = _weights(eager.checkpoint), _weights(comp.checkpoint)
    assert a.keys() == b.keys()  # no "_orig_mod." prefixes: compiled checkpoints load into a plain model
    assert all(torch.allclose(a[k].float(), b[k].float(), rtol=1e-3, atol=1e-4) for k in a)
    assert comp.curve[-1]["loss"] == pytest.approx(eager.curve[-1]["loss"], rel=1e-3)
