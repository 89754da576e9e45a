"""Multitask learning: 4-class loss plus a binary cross-entropy on the regrouped region maps (paper 2.3).

Besides the 4-class cross-entropy (and soft Dice) on {BG, NCR/NET, ED, ET}, the network is trained on the
three regrouped binary maps ET, WT, TC (the paper's "{BG, ET, WT, TC}" task): the region maps overlap, so
they are three independent binary tasks, each with a binary cross-entropy.

loss = base loss (CE + soft Dice, through the recipe) + w * mean over ET, WT, TC and voxels of BCE;
the paper gives no w: default ``weight = 1.0`` (searched over [0.1, 2], log scale).

How the region probabilities are formed (``regions`` parameter, not searched):

- ``"sigmoid"`` (default, paper-faithful): the model gets three extra output channels (the recipe's
  ``model.extra_outputs`` slot: ``apply`` adds 3 to ``recipe.extra_outputs``), one sigmoid logit per region
  in ``REGION_ORDER`` (ET, WT, TC). With no other trick adding outputs the logits are ``(B, 7, ...)``:
  channels 0-3 are the classes, 4-6 the regions. The wrapped loss (CE + soft Dice) sees the logits without
  the 3 region channels (i.e. the 4 class channels), the region channels get BCE-with-logits against the
  ET/WT/TC targets. Inference drops the extra channels (softmax over the 4 classes only), so the region
  heads shape the shared features during training but never the prediction. Checkpoints record
  ``extra_outputs = 3`` in their architecture.
- ``"grouped"``: no extra outputs; the region probabilities are sums of the class probabilities,
  q_ET = p_ET, q_WT = p_NCR + p_ED + p_ET, q_TC = p_NCR + p_ET, computed in log space
  (log q = logsumexp of the member logits - logsumexp of all logits), so the extra task shapes the same
  softmax the prediction comes from; the model and inference are those of the baseline.

``region_dice = true`` (off by default: the paper's region loss is BCE alone) adds 1 - soft Dice of the region
probabilities to the BCE, as nnU-Net trains its region heads. With BCE alone, averaged over every voxel, the
heads of the small regions (ET, TC: a few percent of a patch) can stay negative everywhere: on the demo
phantoms at 400 iterations the sigmoid heads predicted no ET and no TC voxel, and predicted both with the
soft Dice added (BENCHMARKS.md, "Real folders and CPU speed").

Wraps the ``loss`` slot, and (sigmoid mode) the ``model.extra_outputs`` slot: its 3 channels come after any
that tricks applied before it added, so it composes with other extra-output tricks.

nnU-Net form: region-based training, as nnU-Net trains BraTS: the trainer's dataset.json gets the regions
whole tumour, tumour core and enhancing tumour (``regions_class_order`` 1, 2, 3), the network has one sigmoid
output per region, the loss is soft Dice + ``weight`` x BCE on the regions, and prediction decodes the regions
into labels. On nnU-Net the region task replaces the 4-class task instead of adding to it (nnU-Net's network
has one output head), and its region loss always holds the soft Dice (``region_dice`` has no further effect);
only ``regions = "sigmoid"`` has a form. Bench's nnU-Net baseline trains the four classes with softmax.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from bench.engine.losses import LossFn
from bench.engine.recipe import Recipe
from tricks._base import Trick
from tricks._registry import register

if TYPE_CHECKING:
    from bench.engine.recipe import StepState

__all__ = [
    "REGION_ORDER",
    "N_CLASSES",
    "region_targets",
    "region_bce",
    "grouped_region_bce",
    "region_soft_dice",
    "REGION_MODES",
    "MultitaskLoss",
    "Multitask",
]

REGION_ORDER: tuple[str, ...] = ("ET", "WT", "TC")
N_CLASSES = 4  # engine class indices: 0 BG, 1 NCR/NET, 2 ED, 3 ET
# class index -> membership of each region, in REGION_ORDER
_MEMBERSHIP = torch.tensor(
    [
        [0.0, 0.0, 0.0],  # background
        [0.0, 1.0, 1.0],  # NCR/NET: WT, TC
        [0.0, 1.0, 0.0],  # ED: WT
        [1.0, 1.0, 1.0],  # ET: ET, WT, TC
    ]
)


def region_targets(target: torch.Tensor) -> torch.Tensor:
    """Class-index map (B, *spatial) -> float region maps (B, 3, *spatial) in ``REGION_ORDER``."""
    table = _MEMBERSHIP.to(target.device)
    maps = table[target.long()]  # (B, *spatial, 3)
    return maps.movedim(-1, 1).contiguous()


def region_bce(region_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample (B,) mean binary cross-entropy of (B, 3, *spatial) sigmoid region logits."""
    bce = F.binary_cross_entropy_with_logits(region_logits.float(), region_targets(target), reduction="none")
    return bce.flatten(1).mean(1)


def _grouped_log_probs(class_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log q and log (1 - q) of the grouped region probabilities (B, 3, *spatial), q_r = sum of the class
    probabilities of region r's members, in log space (logsumexp of the member logits minus that of all)."""
    z = class_logits.float()
    lse = torch.logsumexp(z, 1)
    log_q, log_not_q = [], []
    for r in range(len(REGION_ORDER)):
        member = _MEMBERSHIP[:, r].bool()
        log_q.append(torch.logsumexp(z[:, member], 1) - lse)
        log_not_q.append(torch.logsumexp(z[:, ~member], 1) - lse)
    return torch.stack(log_q, 1), torch.stack(log_not_q, 1)


def grouped_region_bce(class_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample (B,) mean BCE of region probabilities formed as sums of the class probabilities."""
    log_q, log_not_q = _grouped_log_probs(class_logits)
    y = region_targets(target)
    return (-(y * log_q + (1 - y) * log_not_q)).flatten(1).mean(1)


def region_soft_dice(probs: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Per-sample (B,) mean over ET, WT, TC of 1 - soft Dice between region probabilities (B, 3, *spatial)
    and the region maps of ``target``. A region absent from a patch and predicted absent costs about 0."""
    y = region_targets(target).flatten(2)
    p = probs.float().flatten(2)
    inter = (p * y).sum(2)
    dice = (2 * inter + smooth) / (p.sum(2) + y.sum(2) + smooth)
    return (1 - dice).mean(1)


def _grouped_probs(class_logits: torch.Tensor) -> torch.Tensor:
    """The grouped region probabilities q (B, 3, *spatial)."""
    return torch.exp(_grouped_log_probs(class_logits)[0])


REGION_MODES: tuple[str, ...] = ("sigmoid", "grouped")


@dataclass(frozen=True)
class MultitaskLoss:
    """``loss`` wrapper: ``base(class logits) + weight * region BCE`` per sample.

    ``regions="sigmoid"``: the region logits are the 3 channels starting at ``n_classes + offset`` (``offset``
    = extra outputs added by tricks applied before this one); they are removed before ``base`` is called.
    ``regions="grouped"``: the region probabilities are sums of the softmax over the first ``n_classes``
    channels, and ``base`` sees the logits unchanged.
    """

    base: LossFn
    weight: float = 1.0
    regions: str = "sigmoid"
    n_classes: int = N_CLASSES
    offset: int = 0
    region_dice: bool = False  # add 1 - soft Dice of the region probabilities to the region term

    def __post_init__(self) -> None:
        if self.regions not in REGION_MODES:
            raise ValueError(f"multitask regions={self.regions!r}: accepted {', '.join(REGION_MODES)}")

    def __call__(self, logits: torch.Tensor, target: torch.Tensor, state: StepState) -> torch.Tensor:
        if self.regions == "sigmoid":
            lo = self.n_classes + self.offset
            hi = lo + len(REGION_ORDER)
            if logits.shape[1] < hi:
                raise ValueError(
                    f"multitask regions='sigmoid' needs region logits in channels {lo}..{hi - 1}, but the model "
                    f"gives {logits.shape[1]} channels (was it built with the recipe's extra_outputs?)"
                )
            bce = region_bce(logits[:, lo:hi], target)
            if self.region_dice:
                bce = bce + region_soft_dice(torch.sigmoid(logits[:, lo:hi].float()), target)
            rest = logits[:, :lo] if hi == logits.shape[1] else torch.cat([logits[:, :lo], logits[:, hi:]], 1)
        else:
            bce = grouped_region_bce(logits[:, : self.n_classes], target)
            if self.region_dice:
                bce = bce + region_soft_dice(_grouped_probs(logits[:, : self.n_classes]), target)
            rest = logits
        state.extras["multitask_bce"] = float(bce.detach().mean())
        return self.base(rest, target, state) + self.weight * bce


@register
class Multitask(Trick):
    name = "multitask"
    summary = "adds w * binary CE on the regrouped ET/WT/TC region maps to the 4-class loss"
    section = "2.3 (multi-task learning)"
    phase = "training"
    wraps = ("loss", "model.extra_outputs")
    order = 60  # outer: adds its term to whatever loss is below

    @dataclass(frozen=True)
    class Params:
        weight: float = field(
            default=1.0,
            metadata={
                "optuna": ("float", 0.1, 2.0, {"log": True}),
                "range": (0.0, None),
                "help": "weight w of the region BCE",
            },
        )
        regions: str = field(
            default="sigmoid",
            metadata={
                "choices": REGION_MODES,
                "help": "region maps: 3 extra sigmoid output channels (paper), or grouped sums of class probabilities",
            },
        )
        region_dice: bool = field(
            default=False,
            metadata={
                "help": "add a soft Dice of the region probabilities to their BCE (nnU-Net's region loss; the "
                        "paper's is BCE alone, whose small-region heads can stay negative everywhere)",
            },
        )

    nnunet_form = ("nnU-Net's region-based training: sigmoid WT/TC/ET outputs, soft Dice + weight x BCE on the "
                   "regions (baseline: 4 softmax classes)")

    def nnunet_check(self, params: Any) -> None:
        if params.regions != "sigmoid":
            raise ValueError(f"regions={params.regions!r} has no nnU-Net form (nnU-Net's region training is "
                             "sigmoid heads); accepted 'sigmoid'")

    def nnunet_part(self, params: Any) -> type:
        return _nnunet_part(float(params.weight))

    def apply(self, recipe: Recipe, params: Any) -> None:
        if params.regions == "sigmoid":
            offset = int(recipe.extra_outputs)
            recipe.extra_outputs = offset + len(REGION_ORDER)
            recipe.loss = MultitaskLoss(recipe.loss, params.weight, "sigmoid", offset=offset,
                                        region_dice=bool(params.region_dice))
        else:
            recipe.loss = MultitaskLoss(recipe.loss, params.weight, "grouped", region_dice=bool(params.region_dice))


@functools.cache
def _nnunet_part(weight: float) -> type:
    from bench.engines.nnunet.parts import compound_loss, nnunet_trainer_base, region_form

    class MultitaskPart(nnunet_trainer_base()):  # type: ignore[misc]
        """Region-based training: BraTS regions in the trainer's dataset.json, the BCE term weighted."""

        def _bench_dataset_json(self, dataset_json: dict) -> dict:
            return region_form(super()._bench_dataset_json(dataset_json))

        def _build_loss(self) -> Any:
            loss = super()._build_loss()
            compound_loss(loss).weight_ce = weight
            return loss

    return MultitaskPart
