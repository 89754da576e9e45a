"""One nnU-Net training of a cell: the composed trainer on bench's split, epoch by epoch, resumable.

The loop is nnU-Net's own ``run_training`` (the same hooks in the same order) with three additions: the stop
event is checked every iteration, ``progress`` gets every iteration and every epoch, and a checkpoint is
written after every epoch (nnU-Net's ``save_every = 1``), so a killed or preempted cell loses at most the
epoch it was in. nnU-Net resumes at epoch granularity: a stop mid-epoch keeps the last epoch's checkpoint.

Files under the training's folder: ``nnUNet_results/Dataset001_BraTS/<trainer>__<plans>__<configuration>/
fold_<f>/`` (nnU-Net's own layout: checkpoint_latest.pth, checkpoint_final.pth, training logs, progress.png),
``curve.json`` (bench's learning curve), ``seed.json`` and ``nnunet.log`` (nnU-Net's console output).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from pathlib import Path
from typing import Any

from bench.engines._base import ProgressFn, TrainJob
from bench.engines.nnunet import _nn
from bench.engines.nnunet.regions import RegionCounts, log_regions, logged_regions

__all__ = ["train", "resume_point", "trainer_folder", "FINAL", "LATEST", "REGION_NAMES"]

log = logging.getLogger(__name__)

FINAL = "checkpoint_final.pth"
LATEST = "checkpoint_latest.pth"
#: the order of nnU-Net's regions in the region form of dataset.json (whole tumour, tumour core, enhancing)
REGION_NAMES = ("WT", "TC", "ET")
#: the label form's classes (oedema, necrosis/non-enhancing core, enhancing): only class 3 is a BraTS region
CLASS_NAMES = ("ED", "NCR", "ET")


def trainer_folder(out_dir: Path) -> Path | None:
    """The fold folder nnU-Net wrote under ``out_dir`` (None before the first training)."""
    found = sorted(Path(out_dir).glob("nnUNet_results/*/*/fold_*"))
    return found[0] if found else None


def resume_point(out_dir: Path) -> Path | None:
    folder = trainer_folder(out_dir)
    if folder is None:
        return None
    p = folder / LATEST
    return p if p.exists() else None


def _device(machine: dict[str, Any]) -> Any:
    import torch

    from bench.errors import SpecError

    dev = str(machine.get("device") or "auto")
    if dev == "auto":
        dev = "cuda" if torch.cuda.is_available() else "cpu"
    if dev.startswith("cuda") and not torch.cuda.is_available():
        raise SpecError(f"device {dev!r}: CUDA is not available on this machine (use --device cpu)")
    return torch.device(dev)


def train(data: Any, out_dir: Path, job: TrainJob, trainer_cls: type, *, resume: bool = True,
          progress: ProgressFn | None = None, stop: threading.Event | None = None) -> Any:
    """Train (or resume, or return the finished) nnU-Net training of ``job`` into ``out_dir``."""
    import numpy as np
    import torch

    from bench.engine.api import TrainingStopped
    from bench.engine.recipe import TrainResult

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    folder = trainer_folder(out_dir)
    if folder is not None and (folder / FINAL).exists():
        return _result(out_dir, folder / FINAL)
    if not resume and folder is not None:
        import shutil

        shutil.rmtree(out_dir / "nnUNet_results")
    machine = dict(job.machine)
    n_proc_da = str(int(machine.get("num_workers", 1) or 0))  # data-augmentation processes (0: in-process)
    if machine.get("threads"):
        torch.set_num_threads(int(machine["threads"]))
    # nnU-Net seeds nothing itself: seed what it draws from (network init, augmentation, patch sampling);
    # with data-augmentation workers (nnUNet_n_proc_DA > 0) the batches still differ from run to run
    random.seed(job.seed)
    np.random.seed(job.seed)
    torch.manual_seed(job.seed)
    (out_dir / "seed.json").write_text(json.dumps({"seed": job.seed, "fold": job.fold,
                                                   "seeded": ["random", "numpy", "torch"]}))
    plans = data.plans()
    latest = resume_point(out_dir) if resume else None
    plans["continue_training"] = latest is not None
    t0 = time.time()
    prior = _read_seconds(out_dir)
    with _nn.folders(data.raw, data.preprocessed, out_dir / "nnUNet_results"), _nn.quiet(out_dir / "nnunet.log"), \
            _nn.environment(nnUNet_n_proc_DA=n_proc_da):
        trainer = trainer_cls(plans=plans, configuration=data.configuration, fold=job.fold,
                              dataset_json=data.dataset_json(), device=_device(machine))
        trainer.save_every = 1
        if latest is not None:
            trainer.load_checkpoint(str(latest))
        folder = Path(trainer.output_folder)
        total = int(trainer.num_epochs) * int(trainer.num_iterations_per_epoch)
        trainer.on_train_start()
        try:
            for epoch in range(trainer.current_epoch, trainer.num_epochs):
                trainer.on_epoch_start()
                trainer.on_train_epoch_start()
                outputs = []
                for it in range(trainer.num_iterations_per_epoch):
                    if stop is not None and stop.is_set():
                        _write_curve(out_dir, trainer, prior + time.time() - t0)
                        raise TrainingStopped(epoch * trainer.num_iterations_per_epoch,
                                              resume_point(out_dir) or folder / LATEST)
                    outputs.append(trainer.train_step(next(trainer.dataloader_train)))
                    if progress is not None:
                        progress({"iteration": epoch * trainer.num_iterations_per_epoch + it + 1, "total": total,
                                  "loss": float(outputs[-1]["loss"]), "epoch": epoch})
                trainer.on_train_epoch_end(outputs)
                with torch.no_grad(), RegionCounts(trainer) as regions:
                    trainer.on_validation_epoch_start()
                    val = []
                    for _ in range(trainer.num_val_iterations_per_epoch):
                        batch = next(trainer.dataloader_val)
                        val.append(trainer.validation_step(batch))
                        regions.add(batch)
                    trainer.on_validation_epoch_end(val)
                if (dice := regions.dice()) is not None:
                    log_regions(trainer, epoch, dice)  # before on_epoch_end, which writes the checkpoint
                trainer.on_epoch_end()
                row = _curve_row(trainer, epoch)
                if epoch == trainer.num_epochs - 1:
                    trainer.on_train_end()  # checkpoint_final.pth (and latest removed)
                else:
                    _save_latest(trainer, folder)
                _write_curve(out_dir, trainer, prior + time.time() - t0)
                log.info("nnU-Net epoch %d/%d: train loss %.4f, val loss %.4f, pseudo-Dice WT %.3f TC %.3f ET %.3f",
                         epoch + 1, trainer.num_epochs, row["loss"], row.get("val_loss", float("nan")),
                         row.get("val_dice_WT", float("nan")), row.get("val_dice_TC", float("nan")),
                         row.get("val_dice_ET", float("nan")))
                if progress is not None:
                    progress({"iteration": row["iteration"], "total": total, "loss": row["loss"], "epoch": epoch,
                              "lr": row.get("lr"), "val": {r: row.get(f"val_dice_{r}") for r in REGION_NAMES}})
        finally:
            _shutdown(trainer)
    seconds = prior + time.time() - t0
    (out_dir / "seconds.json").write_text(json.dumps({"seconds": seconds}))
    result = _result(out_dir, folder / FINAL)
    return TrainResult(result.checkpoint, result.curve, seconds, result.iterations)


def _save_latest(trainer: Any, folder: Path) -> None:
    """nnU-Net's on_epoch_end already saved checkpoint_latest.pth (save_every = 1) with the epoch counted; an
    atomic replace guards against a kill during the write."""
    latest = folder / LATEST
    if not latest.exists():  # written by on_epoch_end unless nnU-Net changes its rule; write it the same way
        trainer.current_epoch -= 1
        trainer.save_checkpoint(str(latest))
        trainer.current_epoch += 1


def _curve_row(trainer: Any, epoch: int) -> dict[str, Any]:
    lg = trainer.logger
    row: dict[str, Any] = {"epoch": epoch + 1, "iteration": (epoch + 1) * int(trainer.num_iterations_per_epoch),
                           "loss": float(lg.get_value("train_losses", step=epoch)),
                           "val_loss": float(lg.get_value("val_losses", step=epoch)),
                           "lr": float(lg.get_value("lrs", step=epoch))}
    dice = lg.get_value("dice_per_class_or_region", step=epoch)
    regions = bool(getattr(trainer.label_manager, "has_regions", False))
    if len(dice) == 3:
        # nnU-Net's pseudo-Dice is per training output: regions (WT, TC, ET) in the region form; in the label
        # form per class, where only enhancing tumour is a BraTS region: WT and TC come from bench's own counts
        for name, d in zip(REGION_NAMES if regions else CLASS_NAMES, dice):
            row[f"val_dice_{name}" if regions or name == "ET" else f"val_dice_class_{name}"] = float(d)
    if not regions:
        for name, d in logged_regions(trainer, epoch).items():
            row.setdefault(f"val_dice_{name}", d)
    row["seconds"] = float(lg.get_value("epoch_end_timestamps", step=epoch)
                           - lg.get_value("epoch_start_timestamps", step=epoch))
    return row


def _write_curve(out_dir: Path, trainer: Any, seconds: float) -> None:
    from bench.atomic import atomic_write_text

    n = len(trainer.logger.get_value("epoch_end_timestamps", step=None))
    curve = [_curve_row(trainer, e) for e in range(n)]
    atomic_write_text(out_dir / "curve.json", json.dumps({"curve": curve, "seconds": seconds}))


def _read_seconds(out_dir: Path) -> float:
    try:
        return float(json.loads((out_dir / "curve.json").read_text()).get("seconds", 0.0))
    except (OSError, ValueError, AttributeError):
        return 0.0


def _result(out_dir: Path, checkpoint: Path) -> Any:
    from bench.engine.recipe import TrainResult

    try:
        data = json.loads((out_dir / "curve.json").read_text())
    except (OSError, ValueError):
        data = {}
    curve = list(data.get("curve", []))
    iterations = int(curve[-1]["iteration"]) if curve else 0
    return TrainResult(checkpoint, curve, float(data.get("seconds", 0.0)), iterations)


def _shutdown(trainer: Any) -> None:
    """Stop the data-augmentation workers (nnU-Net's on_train_end does it only for a finished training)."""
    for name in ("dataloader_train", "dataloader_val"):
        dl = getattr(trainer, name, None)
        finish = getattr(dl, "_finish", None)
        if callable(finish):
            try:
                finish()
            except Exception:  # noqa: BLE001 - best effort at shutdown
                log.debug("stopping nnU-Net's %s failed", name, exc_info=True)
