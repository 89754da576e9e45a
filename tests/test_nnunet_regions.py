"""Region pseudo-Dice of a label-trained nnU-Net's validation (bench/engines/nnunet/regions.py)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from bench.engines.nnunet.regions import REGION_LOG, RegionCounts, log_regions, logged_regions  # noqa: E402


class _Net(torch.nn.Module):
    """Returns the logits it is given, as a deep-supervision list (full resolution first)."""

    def forward(self, x):
        return [x, x[:, :, ::2]]


def _onehot_logits(labels: np.ndarray) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.as_tensor(labels), 4).movedim(-1, 1).float()


def _dice(p: np.ndarray, t: np.ndarray) -> float:
    return 2 * (p & t).sum() / (p.sum() + t.sum())


def test_region_counts_are_the_dice_of_the_unions_over_all_batches():
    rng = np.random.default_rng(0)
    trainer = SimpleNamespace(network=_Net(), label_manager=SimpleNamespace(has_regions=False))
    preds = [rng.integers(0, 4, (2, 6, 5, 4)) for _ in range(3)]
    targets = [rng.integers(0, 4, (2, 6, 5, 4)) for _ in range(3)]
    with RegionCounts(trainer) as rc:
        for p, t in zip(preds, targets):
            trainer.network(_onehot_logits(p))  # what validation_step does with the batch's data
            rc.add({"target": [torch.as_tensor(t[:, None]).float(), None]})
    assert not trainer.network._forward_hooks  # the hook is gone after the validation steps
    p, t = np.concatenate(preds), np.concatenate(targets)
    expected = [_dice(np.isin(p, ids), np.isin(t, ids)) for ids in ((1, 2, 3), (2, 3), (3,))]
    np.testing.assert_allclose(rc.dice(), expected)
    # one class is not a region: WT differs from the Dice of any single class
    assert all(abs(expected[0] - _dice(p == k, t == k)) > 1e-3 for k in (1, 2, 3))


def test_region_form_and_foreign_outputs_are_not_counted():
    regions = SimpleNamespace(network=_Net(), label_manager=SimpleNamespace(has_regions=True))
    with RegionCounts(regions) as rc:
        regions.network(torch.zeros(1, 4, 2, 2, 2))
        rc.add({"target": torch.zeros(1, 1, 2, 2, 2)})
    assert rc.dice() is None and not regions.network._forward_hooks
    five = SimpleNamespace(network=_Net(), label_manager=SimpleNamespace(has_regions=False))
    with RegionCounts(five) as rc:
        five.network(torch.zeros(1, 5, 2, 2, 2))  # not background plus three classes
        rc.add({"target": torch.zeros(1, 1, 2, 2, 2)})
    assert rc.dice() is None


@pytest.mark.parametrize("meta", [True, False], ids=["MetaLogger", "plain logger"])
def test_logged_regions_survive_a_checkpoint_written_before_they_existed(meta: bool):
    local = SimpleNamespace(my_fantastic_logging={"train_losses": [0.5, 0.4, 0.3]})

    def log(key, value, epoch):  # nnU-Net's rule: one entry per epoch, appended in order
        assert len(local.my_fantastic_logging[key]) == epoch
        local.my_fantastic_logging[key].append(value)

    local.log = log
    # nnunetv2 2.8.1: the trainer's logger is a MetaLogger around a local logger that holds the lists
    logger = SimpleNamespace(local_logger=local, log=log) if meta else local
    trainer = SimpleNamespace(logger=logger)
    log_regions(trainer, 2, [0.8, 0.6, 0.4])  # resumed at epoch 2 from an older checkpoint
    assert len(local.my_fantastic_logging[REGION_LOG]) == 3
    assert logged_regions(trainer, 0) == {} and logged_regions(trainer, 5) == {}
    assert logged_regions(trainer, 2) == {"WT": 0.8, "TC": 0.6, "ET": 0.4}
    log_regions(trainer, 3, [0.9, math.nan, 0.5])
    assert logged_regions(trainer, 3) == {"WT": 0.9, "ET": 0.5}  # no voxel of TC anywhere: unknown, left out
