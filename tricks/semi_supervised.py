"""Semi-supervised learning: multi-view teacher-student pseudo-labelling (paper 2.1).

The paper trains several students under different views (data subsets and transformations T_v), averages
them into a teacher, pseudo-labels an unlabeled set (the 750 MSD Task01 cases) and retrains on labeled +
alpha * pseudo-labeled data until the result is stable. Here, for the fold of the cell:

- **round 0**: ``views`` students are trained (each one is an ordinary engine training, resumable by itself):
  student v sees the training cases through T_v (view 0: identity; the others permute and flip the spatial
  axes, :data:`MAX_VIEWS` at most) and, for v > 0, a random ``subset`` fraction of the labeled training cases;
- the **teacher** is the average of the students' probabilities, each student's prediction taken on T_v(x) and
  mapped back by T_v^-1 (sliding windows of the training patch, overlap 0.5, Gaussian weights); its argmax is the pseudo-label of every unlabeled case, stored as
  ``<out>/round<r>/pseudo/<case>.npy`` (class indices on the working grid) with ``manifest.json`` naming the
  round and the students that made them;
- **round r >= 1**: the students are trained again on the labeled cases (weight 1) + the pseudo-labeled cases
  of round r - 1 (weight ``alpha`` in the loss: the engine multiplies each sample's loss by its pool's weight);
- it stops after ``rounds`` such rounds, or earlier when the validation Dice (mean of ET, TC, WT of student 0 on
  the fold's validation cases) changes by less than ``eps`` from one round to the next.

The cell's model is student 0 (identity view, all labeled cases) of the last round, copied to
``<out>/final.pt``. Progress is recorded in ``<out>/semi_supervised.json`` (atomic writes): an interrupted run
called again skips finished students and pseudo-label sets and resumes the unfinished student from its last
checkpoint.

Unlabeled source (``unlabeled`` parameter): ``"dataset"`` (default) takes the prepared dataset's
``unlabeled_ids`` (the unlabeled cases a synthetic dataset was made with, ``bench data synth --unlabeled N``);
otherwise it is the path of an MSD-layout folder (``imagesTs/``) which is prepared like the dataset. Without
one, the trick is refused with a TrickError naming ``semi_supervised.unlabeled``.

Defaults where the paper gives no number: ``views = 3``, ``subset = 0.8``, ``alpha = 0.5``, ``rounds = 2``,
``eps = 0.005``. Cost: ``views * (rounds + 1)`` trainings of the cell's budget each, plus the teacher's
inference on every unlabeled case per round.

Replaces the ``procedure`` slot.

No nnU-Net form: the procedure trains several students per round on views and pseudo-labels of unlabeled
cases; nnU-Net's trainer trains one model on one labelled dataset, so it would be a procedure around several
nnU-Net trainings and predictions, not a trainer part.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.engine.recipe import Recipe, SingleTraining, TrainContext, TrainResult
from bench.errors import TrickError
from tricks._base import Trick
from tricks._registry import register

__all__ = [
    "View",
    "MAX_VIEWS",
    "default_views",
    "view_subset",
    "converged",
    "ViewAugment",
    "SemiSupervisedProcedure",
    "SemiSupervised",
    "STATE_FILE",
]

STATE_FILE = "semi_supervised.json"
# --- views: the transformations T_v -------------------------------------------------------------------------

# (axis permutation of (x, y, z), flipped axes after the permutation); view 0 is the identity.
_VIEW_TABLE: tuple[tuple[tuple[int, int, int], tuple[int, ...]], ...] = (
    ((0, 1, 2), ()),
    ((1, 0, 2), (1,)),
    ((0, 2, 1), (2,)),
    ((2, 1, 0), (0, 2)),
    ((1, 2, 0), (0,)),
    ((2, 0, 1), (1, 2)),
)
MAX_VIEWS = len(_VIEW_TABLE)


@dataclass(frozen=True)
class View:
    """A transformation T_v of the three spatial axes: permute them, then flip some of them.

    Works on arrays and tensors whose last three axes are spatial (any leading channel axes).
    """

    perm: tuple[int, int, int] = (0, 1, 2)
    flips: tuple[int, ...] = ()

    @property
    def is_identity(self) -> bool:
        return self.perm == (0, 1, 2) and not self.flips

    def _axes(self, ndim: int) -> tuple[list[int], list[int]]:
        lead = ndim - 3
        return list(range(lead)) + [lead + p for p in self.perm], [lead + f for f in self.flips]

    def apply(self, x: Any) -> Any:
        """T_v(x)."""
        order, flips = self._axes(x.ndim)
        if isinstance(x, torch.Tensor):
            t = x.permute(order)
            return t.flip(flips) if flips else t
        a = np.transpose(x, order)
        return np.flip(a, tuple(flips)) if flips else a

    def invert(self, y: Any) -> Any:
        """T_v^{-1}(y): ``invert(apply(x)) == x``."""
        order, flips = self._axes(y.ndim)
        inverse = list(np.argsort(order))
        if isinstance(y, torch.Tensor):
            t = y.flip(flips) if flips else y
            return t.permute(inverse)
        a = np.flip(y, tuple(flips)) if flips else y
        return np.transpose(a, inverse)


def default_views(n: int) -> list[View]:
    """The first ``n`` views of a fixed table (view 0 is the identity)."""
    if not 1 <= n <= MAX_VIEWS:
        raise ValueError(f"views={n} must be in 1..{MAX_VIEWS}")
    return [View(perm, flips) for perm, flips in _VIEW_TABLE[:n]]


def view_subset(ids: Sequence[str], view: int, fraction: float, seed: int) -> list[str]:
    """The labeled cases student ``view`` trains on: all of them for view 0, else a random ``fraction``
    (at least one case), fixed by (seed, view)."""
    ids = list(ids)
    if view == 0 or fraction >= 1.0 or len(ids) <= 1:
        return ids
    k = max(1, round(fraction * len(ids)))
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x5E31, view])
    keep = sorted(rng.choice(len(ids), size=k, replace=False).tolist())
    return [ids[i] for i in keep]


def converged(previous: float | None, current: float, eps: float) -> bool:
    """True when the validation Dice changed by less than ``eps`` since the previous round."""
    return previous is not None and abs(current - previous) < eps


@dataclass(frozen=True)
class ViewAugment:
    """``augment`` filler of a student: the base augmentation, then T_v on image and label."""

    base: Any
    view: View

    def __call__(
        self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        image, label = self.base(image, label, rng)
        return (np.ascontiguousarray(self.view.apply(image)), np.ascontiguousarray(self.view.apply(label)))


# --- the procedure --------------------------------------------------------------------------------------------


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1)
    os.replace(tmp, path)


def _save_npy(path: Path, array: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".npy", dir=path.parent)
    with os.fdopen(fd, "wb") as fh:
        np.save(fh, array)
    os.replace(tmp, path)


def _unlabeled_source(ctx: TrainContext, unlabeled: str) -> tuple[Any, list[str]]:
    """(dataset holding the unlabeled cases, their ids); TrickError when there are none."""
    if unlabeled == "dataset":
        ids = list(getattr(ctx.dataset, "unlabeled_ids", []) or [])
        if not ids:
            raise TrickError(
                "semi_supervised.unlabeled: the dataset has no unlabeled cases; give semi_supervised.unlabeled = "
                "the path of an MSD-layout folder (imagesTs/), or make the synthetic data with unlabeled cases "
                "(bench data synth --unlabeled N)"
            )
        return ctx.dataset, ids
    folder = Path(unlabeled).expanduser()
    if not folder.is_dir():
        raise TrickError(
            f"semi_supervised.unlabeled: {unlabeled!r} is not a folder; accepted 'dataset' or the "
            "path of an MSD-layout folder with imagesTs/"
        )
    from bench.data.prepare import prepare

    params = dict(getattr(ctx.dataset, "params", {}) or {})  # same preprocessing as the labeled dataset
    root = getattr(ctx.dataset, "root", None)
    uds = prepare(
        folder,
        Path(root).parent if root is not None else None,
        spacing=params.get("spacing"),
        normalization=params.get("normalization", "minmax"),
        progress=False,
    )
    ids = list(uds.unlabeled_ids) or [c for c in uds.case_ids if uds.load(c).label is None]
    if not ids:
        raise TrickError(f"semi_supervised.unlabeled: no unlabeled cases found in {folder}")
    return uds, ids


@dataclass(frozen=True)
class SemiSupervisedProcedure:
    """``procedure`` filler running the rounds described in the module docstring."""

    unlabeled: str = "dataset"
    views: int = 3
    subset: float = 0.8
    alpha: float = 0.5
    rounds: int = 2
    eps: float = 0.005

    # -- pieces, public for tests -------------------------------------------------------------------------
    def student_dir(self, out: Path, rnd: int, view: int) -> Path:
        return out / f"round{rnd}" / f"student{view}"

    def pseudo_dir(self, out: Path, rnd: int) -> Path:
        return out / f"round{rnd}" / "pseudo"

    def student_context(self, ctx: TrainContext, rnd: int, view_index: int) -> TrainContext:
        view = default_views(self.views)[view_index]
        recipe = ctx.recipe.replace(procedure=SingleTraining())
        if not view.is_identity:
            recipe = recipe.replace(augment=ViewAugment(ctx.recipe.augment, view))
        cfg = dataclasses.replace(ctx.train_cfg, seed=ctx.train_cfg.seed + 1009 * view_index + 100_003 * rnd)
        progress = ctx.progress
        if progress is not None:
            outer = progress

            def progress(info: dict[str, Any]) -> None:
                outer({**info, "round": rnd, "student": view_index})

        return dataclasses.replace(
            ctx,
            out_dir=self.student_dir(Path(ctx.out_dir), rnd, view_index),
            train_cfg=cfg,
            recipe=recipe,
            progress=progress,
        )

    def pools(
        self, ctx: TrainContext, rnd: int, view_index: int, udataset: Any, uids: Sequence[str]
    ) -> list[Any]:
        from bench.engine.loader import CasePool

        ds, fold = ctx.dataset, ctx.train_cfg.fold
        labeled = view_subset(ds.train_ids(fold), view_index, self.subset, ctx.train_cfg.seed + fold)
        pools = [CasePool(ds, tuple(labeled), 1.0)]
        if rnd > 0:
            pools.append(
                CasePool(
                    udataset, tuple(uids), float(self.alpha), str(self.pseudo_dir(Path(ctx.out_dir), rnd - 1))
                )
            )
        return pools

    def teacher_probabilities(
        self, models: Sequence[torch.nn.Module], image: np.ndarray, window: int, device: torch.device
    ) -> torch.Tensor:
        """Average over students of T_v^-1(student_v(T_v(image))) (class probabilities, working grid)."""
        from bench.engine.config import InferenceConfig
        from bench.engine.infer import predict_probabilities

        cfg = InferenceConfig(window=window, overlap=0.5, weights="gaussian", amp=device.type == "cuda")
        views = default_views(self.views)
        total: torch.Tensor | None = None
        for model, view in zip(models, views):
            x = np.ascontiguousarray(view.apply(np.asarray(image, dtype=np.float32)))
            p = view.invert(predict_probabilities([model], x, window, cfg, device))
            total = p if total is None else total + p
        assert total is not None
        return total / len(models)

    # -- the rounds -----------------------------------------------------------------------------------------
    def __call__(self, ctx: TrainContext) -> TrainResult:
        from bench.engine.api import FINAL_CHECKPOINT
        from bench.engine.checkpoint import load_checkpoint
        from bench.engine.infer import load_models
        from bench.engine.train import run_training, validate

        out = Path(ctx.out_dir)
        state_path = out / STATE_FILE
        final = out / FINAL_CHECKPOINT
        udataset, uids = _unlabeled_source(ctx, self.unlabeled)
        state: dict[str, Any] = {"rounds": [], "done": False}
        if ctx.resume and state_path.exists():
            state = json.loads(state_path.read_text())
        if ctx.resume and state.get("done") and final.exists():
            ck = load_checkpoint(final)
            return TrainResult(
                final, list(ck["curve"]), float(state.get("seconds", ck["seconds"])), int(ck["iteration"])
            )
        if not ctx.resume:
            state = {"rounds": [], "done": False}
        seconds = 0.0
        curve: list[dict[str, Any]] = []
        previous: float | None = None
        last: TrainResult | None = None
        window = int(ctx.train_cfg.patch)
        for rnd in range(self.rounds + 1):
            results = []
            for v in range(self.views):
                sctx = self.student_context(ctx, rnd, v)
                results.append(run_training(sctx, pools=self.pools(ctx, rnd, v, udataset, uids)))
            seconds += sum(r.seconds for r in results)
            last = results[0]
            curve.extend({**p, "round": rnd} for p in results[0].curve)
            record = next((r for r in state["rounds"] if r["round"] == rnd), None)
            if record is None:
                models, _, device = load_models([r.checkpoint for r in results], _icfg(ctx))
                val_ids = list(ctx.dataset.val_ids(ctx.train_cfg.fold))
                if ctx.train_cfg.val_cases > 0:
                    val_ids = val_ids[: ctx.train_cfg.val_cases]
                dice = validate(models[0], ctx.dataset, val_ids, window, device, False) if val_ids else {}
                score = float(np.mean(list(dice.values()))) if dice else float("nan")
                record = {
                    "round": rnd,
                    "val_dice": score,
                    "students": [str(r.checkpoint) for r in results],
                    "pseudo": None,
                }
                state["rounds"].append(record)
                _write_json(state_path, state)
            score = float(record["val_dice"])
            stop = rnd == self.rounds or converged(previous, score, self.eps)
            previous = score if np.isfinite(score) else previous
            if stop:
                break
            if record.get("pseudo") is None:
                models, _, device = load_models([r.checkpoint for r in results], _icfg(ctx))
                pdir = self.pseudo_dir(out, rnd)
                pdir.mkdir(parents=True, exist_ok=True)
                for cid in uids:
                    probs = self.teacher_probabilities(models, udataset.load(cid).image, window, device)
                    _save_npy(pdir / f"{cid}.npy", probs.argmax(0).to(torch.uint8).cpu().numpy())
                _write_json(
                    pdir / "manifest.json",
                    {
                        "round": rnd,
                        "cases": list(uids),
                        "students": [str(r.checkpoint) for r in results],
                        "alpha_next_round": self.alpha,
                    },
                )
                record["pseudo"] = str(pdir)
                _write_json(state_path, state)
        assert last is not None
        shutil.copyfile(last.checkpoint, out / f".{FINAL_CHECKPOINT}.tmp")
        os.replace(out / f".{FINAL_CHECKPOINT}.tmp", final)
        state["done"], state["seconds"] = True, seconds
        _write_json(out / "curve.json", curve)
        _write_json(state_path, state)
        return TrainResult(final, curve, seconds, last.iterations)


def _icfg(ctx: TrainContext) -> Any:
    from bench.engine.config import InferenceConfig

    return InferenceConfig(device=ctx.train_cfg.device)


@register
class SemiSupervised(Trick):
    name = "semi_supervised"
    summary = "multi-view teacher-student: students per view -> averaged teacher -> pseudo-labels -> retrain"
    section = "2.1 (semi-supervised learning)"
    phase = "training"
    replaces = ("procedure",)
    smoke_params = {"views": 2, "rounds": 1}

    @dataclass(frozen=True)
    class Params:
        unlabeled: str = field(
            default="dataset",
            metadata={
                "help": "unlabeled source: 'dataset' (its unlabeled cases) or an MSD-layout folder (imagesTs/)"
            },
        )
        views: int = field(
            default=3,
            metadata={
                "optuna": ("int", 2, 4),
                "range": (1, MAX_VIEWS),
                "help": "number of students / views T_v",
            },
        )
        subset: float = field(
            default=0.8,
            metadata={
                "optuna": ("float", 0.5, 1.0),
                "range": (0.05, 1.0),
                "help": "fraction of labeled cases each student v>0 sees",
            },
        )
        alpha: float = field(
            default=0.5,
            metadata={
                "optuna": ("float", 0.1, 1.0),
                "range": (0.0, None),
                "help": "loss weight of pseudo-labeled cases",
            },
        )
        rounds: int = field(
            default=2,
            metadata={
                "optuna": ("int", 1, 3),
                "range": (1, 20),
                "help": "retraining rounds on pseudo-labels (R)",
            },
        )
        eps: float = field(
            default=0.005, metadata={"range": (0.0, None), "help": "stop early when val Dice changes by less"}
        )

    def check(self, params: Any) -> None:
        if params.unlabeled != "dataset" and not Path(params.unlabeled).expanduser().is_dir():
            raise ValueError(
                f"unlabeled={params.unlabeled!r} is not a folder; accepted 'dataset' (the dataset's "
                "unlabeled cases) or the path of an MSD-layout folder with imagesTs/"
            )

    def apply(self, recipe: Recipe, params: Any) -> None:
        recipe.procedure = SemiSupervisedProcedure(
            params.unlabeled, params.views, params.subset, params.alpha, params.rounds, params.eps
        )
