"""Tricks as composable nnU-Net trainer parts (bench.engines.nnunet.compose) on a tiny planned dataset.

The dataset is planned and preprocessed once by nnU-Net's own API (4 cases of 32x32x24, one channel, BraTS
regions in dataset.json as bench's nnU-Net data writes them); the plan's network is narrowed to 4..32 features
so that trainers initialise and step in well under a second on the CPU.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
import pickle
import textwrap
from pathlib import Path

import numpy as np
import pytest

try:
    import nnunetv2  # noqa: F401
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("nnunetv2 is not installed (pip install -e '.[nnunet]'); CI installs it and runs these",
                allow_module_level=True)

import torch

import tricks
from bench.engines.nnunet import compose
from bench.engines.nnunet.parts import compound_loss
from bench.errors import SpecError, TrickError

DATASET = "Dataset001_Tiny"
SHAPE = (32, 32, 24)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def nnunet_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """nnU-Net raw/preprocessed folders of a tiny BraTS-labelled dataset, planned and preprocessed."""
    import nibabel as nib

    root = tmp_path_factory.mktemp("nnunet")
    dirs = {k: root / k for k in ("nnUNet_raw", "nnUNet_preprocessed")}
    raw = dirs["nnUNet_raw"] / DATASET
    (raw / "imagesTr").mkdir(parents=True)
    (raw / "labelsTr").mkdir()
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in SHAPE], indexing="ij"))
    for i in range(4):
        centre = np.array(SHAPE)[:, None, None, None] / 2 + rng.integers(-3, 4, (3, 1, 1, 1))
        r = np.sqrt(((grid - centre) ** 2).sum(0))
        label = np.zeros(SHAPE, np.uint8)
        label[r < 8], label[r < 5], label[r < 3] = 1, 2, 3  # nnU-Net's BraTS numbering: edema, core, enhancing
        image = (label * 0.5 + rng.normal(0, 0.3, SHAPE)).astype(np.float32)
        nib.save(nib.Nifti1Image(image, np.eye(4)), raw / "imagesTr" / f"case{i}_0000.nii.gz")
        nib.save(nib.Nifti1Image(label, np.eye(4)), raw / "labelsTr" / f"case{i}.nii.gz")
    (raw / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "T1"}, "file_ending": ".nii.gz", "numTraining": 4,
        "labels": {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]},
        "regions_class_order": [1, 2, 3]}))
    dirs["nnUNet_preprocessed"].mkdir()
    mp = pytest.MonkeyPatch()
    for key, path in dirs.items():
        mp.setenv(key, str(path))
    try:
        from nnunetv2.experiment_planning.plan_and_preprocess_api import (
            extract_fingerprints,
            plan_experiments,
            preprocess,
        )

        extract_fingerprints([1], num_processes=1, verbose=False, show_progress_bar=False)
        plan_experiments([1])
        preprocess([1], configurations=("3d_fullres",), num_processes=[1], verbose=False, show_progress_bar=False)
    finally:
        mp.undo()
    (dirs["nnUNet_preprocessed"] / DATASET / "splits_final.json").write_text(json.dumps(
        [{"train": ["case0", "case1", "case2"], "val": ["case3"]}]))
    return dirs


@pytest.fixture()
def make_trainer(nnunet_dirs, tmp_path, monkeypatch):
    """``make_trainer(cls) -> trainer`` on the tiny plan (narrow network), fold 0, CPU, results in tmp_path."""
    monkeypatch.setenv("nnUNet_preprocessed", str(nnunet_dirs["nnUNet_preprocessed"]))
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    pre = nnunet_dirs["nnUNet_preprocessed"] / DATASET
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["features_per_stage"] = [4, 8, 16, 32]
    dataset_json = json.loads((pre / "dataset.json").read_text())

    def make(cls: type):
        return cls(dict(copy.deepcopy(plans), continue_training=False), "3d_fullres", 0,
                   copy.deepcopy(dataset_json), CPU)

    return make


_counter = itertools.count()


@pytest.fixture()
def user_module(tmp_path, monkeypatch):
    """A user package on sys.path with trainer classes; returns the dotted module name."""
    pkg = f"mytrainers{next(_counter)}"
    (tmp_path / pkg).mkdir()
    (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / pkg / "trainers.py").write_text(textwrap.dedent("""
        from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

        from bench.engines.nnunet.parts import compound_loss


        class HalfDice(nnUNetTrainer):
            def _build_loss(self):
                loss = super()._build_loss()
                compound_loss(loss).weight_dice = 0.5
                return loss


        class PlainLoss(nnUNetTrainer):
            def _build_loss(self):
                return DC_and_CE_loss({}, {})


        class OtherPlainLoss(nnUNetTrainer):
            def _build_loss(self):
                return DC_and_CE_loss({}, {}, weight_ce=2)


        class StarArgs(nnUNetTrainer):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.initial_lr = 0.02


        class NotATrainer:
            pass
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    return f"{pkg}.trainers"


def _names(cls: type) -> list[str]:
    return [k.__name__ for k in cls.__mro__]


# ------------------------------------------------------------------------------------------------ composition


def test_two_parts_compose_and_both_act(make_trainer):
    stack = tricks.resolve(["warmup", "focal_loss"], {"warmup": {"epochs": 2, "k": 4}, "focal_loss": {"gamma": 2}})
    cls = compose.trainer_class(stack, budget={"epochs": 4, "iterations_per_epoch": 2, "val_iterations": 1})
    mro = _names(cls)
    assert mro.index("FocalLossPart") < mro.index("BenchBaseline") and "WarmupPart" in mro
    assert mro[-2:] == ["nnUNetTrainer", "object"]
    trainer = make_trainer(cls)
    assert (trainer.num_epochs, trainer.num_iterations_per_epoch, trainer.num_val_iterations_per_epoch) == (4, 2, 1)
    assert set(trainer.my_init_kwargs) == {"plans", "configuration", "fold", "dataset_json", "device"}
    assert compose.signature_ok(cls)
    trainer.initialize()
    # warm-up: lr/k, then linear to lr over W = 2 epochs, then nnU-Net's poly over the 2 remaining epochs
    lrs = []
    for epoch in range(4):
        trainer.lr_scheduler.step(epoch)
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
    assert lrs == pytest.approx([0.01 / 4, 0.01 * (0.25 + 0.75 / 2), 0.01, 0.01 * 0.5 ** 0.9])
    # focal loss: the CE term of Dice + CE, equal to a hand computation on two voxels
    term = compound_loss(trainer.loss).ce
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]]).reshape(1, 4, 1, 1, 2)
    target = torch.tensor([0.0, 3.0]).reshape(1, 1, 1, 1, 2)
    p = np.array([math.exp(2) / (math.exp(2) + 3), 1 / (math.e + 3)])
    assert float(term(logits, target[:, 0])) == pytest.approx(float(np.mean(-(1 - p) ** 2 * np.log(p))), rel=1e-5)
    assert float(term(logits, target)) == pytest.approx(float(np.mean(-(1 - p) ** 2 * np.log(p))), rel=1e-5)


def _raw_dataset_json(dirs: dict[str, Path]) -> dict:
    return json.loads((dirs["nnUNet_raw"] / DATASET / "dataset.json").read_text())


def test_baseline_is_every_trick_off(make_trainer, nnunet_dirs):
    trainer = make_trainer(compose.trainer_class(tricks.resolve([])))
    assert trainer.enable_deep_supervision is False
    assert trainer.oversample_foreground_percent == 0.0
    assert not trainer.label_manager.has_regions  # four softmax classes from the region dataset.json
    assert trainer.label_manager.all_labels == [0, 1, 2, 3]
    assert compose.dataset_json_for(type(trainer), _raw_dataset_json(nnunet_dirs)) == trainer.dataset_json
    assert (trainer.num_epochs, trainer.num_iterations_per_epoch) == (1000, 250)  # no budget: nnU-Net's own
    trainer.initialize()
    assert type(trainer.loss).__name__ == "DC_and_CE_loss"


def test_sampling_deep_supervision_and_regions(make_trainer, nnunet_dirs):
    stack = tricks.resolve(["heuristic_sampling", "self_ensemble", "multitask", "focal_loss"],
                           {"heuristic_sampling": {"k": 4}, "multitask": {"weight": 0.5}})
    trainer = make_trainer(compose.trainer_class(stack))
    assert trainer.oversample_foreground_percent == pytest.approx(0.75)
    assert trainer.enable_deep_supervision is True
    assert trainer.label_manager.has_regions and trainer.dataset_json["regions_class_order"] == [1, 2, 3]
    assert compose.dataset_json_for(type(trainer), _raw_dataset_json(nnunet_dirs)) == trainer.dataset_json
    trainer.initialize()
    assert type(trainer.loss).__name__ == "DeepSupervisionWrapper"
    inner = compound_loss(trainer.loss)
    assert type(inner).__name__ == "DC_and_BCE_loss" and inner.weight_ce == 0.5
    # binary focal loss on the regions: -(1 - p_t)^2 log p_t with p_t the sigmoid probability of the truth
    logits = torch.tensor([1.0, -1.0, 0.0]).reshape(1, 3, 1, 1, 1)
    target = torch.tensor([1.0, 1.0, 0.0]).reshape(1, 3, 1, 1, 1)
    s = 1 / (1 + np.exp(-np.array([1.0, -1.0, 0.0])))
    pt = np.array([s[0], s[1], 1 - s[2]])
    assert float(inner.ce(logits, target)) == pytest.approx(float(np.mean(-(1 - pt) ** 2 * np.log(pt))), rel=1e-5)
    with pytest.raises(SpecError, match="regions='grouped' has no nnU-Net form"):
        compose.check_stack(tricks.resolve(["multitask"], {"multitask": {"regions": "grouped"}}))


def test_hard_mining_keeps_the_hardest_fraction_on_its_schedule(make_trainer):
    stack = tricks.resolve(["hard_mining"], {"hard_mining": {"p_start": 1.0, "p_end": 0.25}})
    trainer = make_trainer(compose.trainer_class(stack, budget={"epochs": 2, "iterations_per_epoch": 2}))
    trainer.initialize()
    term = compound_loss(trainer.loss).ce
    # 8 voxels per sample, fraction 0.25: the mean CE of each sample's 2 hardest voxels
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 2, 2, 2, generator=g)
    target = torch.randint(0, 4, (2, 2, 2, 2), generator=g).float()
    ce = -torch.log_softmax(logits, 1).gather(1, target.long()[:, None])[:, 0].reshape(2, -1).numpy()
    term.fraction = 0.25
    expected = np.mean([np.sort(row)[-2:].mean() for row in ce])
    assert float(term(logits, target)) == pytest.approx(expected, rel=1e-5)
    # the kept fraction follows the schedule over nnU-Net's iterations (epoch * iterations + step of 4 in all)
    batch = {"data": torch.randn(2, 1, 8, 8, 8), "target": torch.randint(0, 4, (2, 1, 8, 8, 8)).float()}  # pooling divides 8
    seen = []
    for epoch in range(2):
        trainer.current_epoch = epoch
        trainer.on_train_epoch_start()
        for _ in range(2):
            trainer.train_step(batch)
            seen.append(term.fraction)
    assert seen == pytest.approx([1.0, 0.75, 0.5, 0.25])


def test_budget_and_class_identity():
    stack = tricks.resolve(["warmup"])
    a = compose.trainer_class(stack, budget={"epochs": 2, "iterations_per_epoch": 2, "val_iterations": 1})
    assert compose.trainer_class(tricks.resolve(["warmup"]),
                                 budget={"epochs": 2, "iterations_per_epoch": 2, "val_iterations": 1}) is a
    assert compose.trainer_class(stack, budget={"epochs": 3}) is not a
    assert a.bench_budget == {"num_epochs": 2, "num_iterations_per_epoch": 2, "num_val_iterations_per_epoch": 1}
    assert getattr(compose, a.__name__) is a and pickle.loads(pickle.dumps(a)) is a
    with pytest.raises(SpecError, match="train.epochs=0 must be an integer >= 1"):
        compose.trainer_class(stack, budget={"epochs": 0})
    with pytest.raises(SpecError, match="train.lr is not a budget key"):
        compose.trainer_class(stack, budget={"lr": 0.1})


def test_tricks_without_a_form_are_refused_in_one_line():
    with pytest.raises(SpecError) as exc:
        compose.check_stack(tricks.resolve(["warmup", "random_patch_size", "dense_blocks"]))
    msg = str(exc.value)
    assert "no form of dense_blocks, random_patch_size" in msg and "\n" not in msg and "warmup" in msg


def test_inference_settings():
    assert compose.inference_settings(tricks.resolve([])) == {
        "tile_step_size": 1.0, "use_gaussian": False, "use_mirroring": False, "fold_ensemble": False}
    s = compose.inference_settings(tricks.resolve(["patch_fusion", "model_fusion"],
                                                  {"patch_fusion": {"overlap": 0.75, "weights": "gaussian"}}),
                                   {"mirror": True})
    assert s == {"tile_step_size": 0.25, "use_gaussian": True, "use_mirroring": True, "fold_ensemble": True}


# ------------------------------------------------------------------------------------------------ user trainers


def test_user_trainer_composes_after_bench_parts(make_trainer, user_module):
    name = f"trainer:{user_module}.HalfDice"
    cls = compose.trainer_class(tricks.resolve([name, "focal_loss", "warmup"]))
    mro = _names(cls)
    assert mro.index("HalfDice") < mro.index("WarmupPart") < mro.index("FocalLossPart") < mro.index("BenchBaseline")
    assert cls.bench_parts == ("focal_loss", "warmup", name)
    trainer = make_trainer(cls)
    trainer.initialize()
    inner = compound_loss(trainer.loss)
    assert inner.weight_dice == 0.5 and type(inner.ce).__name__ == "FocalTerm"
    assert type(trainer.lr_scheduler).__name__ == "WarmupLR"


def test_user_trainer_with_star_args_init_is_accepted(make_trainer, user_module):
    """nnU-Net records the init arguments by the names of ``type(self).__init__``; the composed class's own
    __init__ keeps them nnUNetTrainer's, whatever a part's __init__ looks like."""
    cls = compose.trainer_class(tricks.resolve([f"trainer:{user_module}.StarArgs", "warmup"],
                                               {"warmup": {"epochs": 2, "k": 4}}), budget={"epochs": 4})
    trainer = make_trainer(cls)
    assert set(trainer.my_init_kwargs) == {"plans", "configuration", "fold", "dataset_json", "device"}
    assert trainer.initial_lr == 0.02 and trainer.num_epochs == 4
    trainer.initialize()
    trainer.lr_scheduler.step(0)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.02 / 4)


def test_non_cooperating_overrides_are_refused_naming_both(user_module):
    plain = f"trainer:{user_module}.PlainLoss"
    with pytest.raises(TrickError) as exc:
        compose.check_stack(tricks.resolve(["focal_loss", plain]))
    assert str(exc.value) == (f"'focal_loss' and '{plain}' both override _build_loss() and '{plain}' does not call "
                              "super() there, so it would discard 'focal_loss'; they cannot be combined")
    other = f"trainer:{user_module}.OtherPlainLoss"
    with pytest.raises(TrickError, match=rf"'{plain}' and '{other}' both override _build_loss\(\)"):
        compose.check_stack(tricks.resolve([plain, other]))
    compose.check_stack(tricks.resolve([plain, "warmup"]))  # alone it replaces nnU-Net's loss: fine


def test_user_trainer_import_errors_are_one_line(user_module):
    with pytest.raises(TrickError, match=rf"'trainer:{user_module}.Missing': module '{user_module}' has no 'Missing'"):
        compose.check_stack(tricks.resolve([f"trainer:{user_module}.Missing"]))
    with pytest.raises(TrickError, match=r"NotATrainer is not a subclass of nnU-Net's nnUNetTrainer"):
        compose.trainer_class(tricks.resolve([f"trainer:{user_module}.NotATrainer"]))


# ------------------------------------------------------------------------------------------------ training


@pytest.mark.slow
def test_composed_trainer_trains_two_epochs_and_predicts(make_trainer, user_module, nnunet_dirs):
    stack = tricks.resolve(["warmup", "focal_loss", "self_ensemble", f"trainer:{user_module}.HalfDice"],
                           {"warmup": {"epochs": 1, "k": 4}})
    cls = compose.trainer_class(stack, budget={"epochs": 2, "iterations_per_epoch": 2, "val_iterations": 1})
    torch.manual_seed(0)
    trainer = make_trainer(cls)
    trainer.run_training()
    final = Path(trainer.output_folder) / "checkpoint_final.pth"
    assert final.is_file() and cls.__name__ in str(final)
    ckpt = torch.load(final, map_location="cpu", weights_only=False)
    assert ckpt["trainer_name"] == cls.__name__ and ckpt["current_epoch"] == 2
    assert not ckpt["init_args"]["dataset_json"].get("regions_class_order")  # trained on the four classes
    assert trainer.logger.get_value("lrs", None) == pytest.approx([0.01 / 4, 0.01])
    losses = trainer.logger.get_value("train_losses", None)
    assert len(losses) == 2 and all(np.isfinite(losses))
    # the predictor, initialised by hand (nnU-Net cannot find a composed class by name), predicts a case
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    raw = nnunet_dirs["nnUNet_raw"] / DATASET
    dataset_json = compose.dataset_json_for(cls, json.loads((raw / "dataset.json").read_text()))
    assert dataset_json == ckpt["init_args"]["dataset_json"]
    plans_manager = PlansManager(trainer.plans_manager.plans)
    config = plans_manager.get_configuration("3d_fullres")
    network = cls.build_network_architecture(
        plans_manager, config, determine_num_input_channels(plans_manager, config, dataset_json),
        plans_manager.get_label_manager(dataset_json).num_segmentation_heads, False)
    settings = compose.inference_settings(stack)
    predictor = nnUNetPredictor(tile_step_size=settings["tile_step_size"], use_gaussian=settings["use_gaussian"],
                                use_mirroring=settings["use_mirroring"], perform_everything_on_device=False,
                                device=CPU, verbose=False, allow_tqdm=False)
    predictor.manual_initialization(network, plans_manager, config, [ckpt["network_weights"]], dataset_json,
                                    cls.__name__, ckpt["inference_allowed_mirroring_axes"])
    image, props = SimpleITKIO().read_images([str(raw / "imagesTr" / "case3_0000.nii.gz")])
    seg = np.asarray(predictor.predict_single_npy_array(image, props))
    assert seg.shape == SHAPE[::-1] and set(np.unique(seg).tolist()) <= {0, 1, 2, 3}


def test_every_trick_with_a_form_composes_alone_and_in_pairs(make_trainer):
    """Parametrised over the registry: every trick with an nnU-Net form, and every pair the registry accepts,
    composes without a conflict and initialises on the tiny plan (network, optimiser, loss)."""
    names = [t.name for t in tricks.list_tricks() if t.nnunet_form is not None]
    stacks = [[n] for n in names] + [list(p) for p in itertools.combinations(names, 2)]
    built = 0
    for combo in stacks:
        try:
            stack = tricks.resolve(combo)
        except TrickError:
            continue  # a pair the registry refuses (focal_loss + hard_mining)
        cls = compose.trainer_class(stack, budget={"epochs": 2, "iterations_per_epoch": 1})
        trainer = make_trainer(cls)
        trainer.initialize()
        assert trainer.loss is not None and trainer.num_epochs == 2, combo
        built += 1
    assert built == len(names) + len(names) * (len(names) - 1) // 2 - 1
