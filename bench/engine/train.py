"""The training loop: one training of one fold, resumable exactly.

:func:`run_training` is what the baseline procedure runs; a procedure trick (``semi_supervised``) calls it
several times with its own ``out_dir``, ``pools`` (labelled + alpha-weighted pseudo-labelled cases) and
``recipe``. Each call resumes from ``out_dir/last.pt`` when present, or returns at once when
``out_dir/final.pt`` exists.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.engine.checkpoint import (
    FINAL_CHECKPOINT,
    LAST_CHECKPOINT,
    check_arch,
    load_checkpoint,
    save_checkpoint,
)
from bench.engine.config import ENGINE_VERSION, InferenceConfig
from bench.engine.infer import autocast, predict_probabilities, region_dice, resolve_device
from bench.engine.loader import BatchSource, CasePool, make_loader
from bench.engine.model import build_model
from bench.engine.sampling import as_patch3
from bench.engine.step import StepState, TrainContext, TrainingStopped, TrainResult
from bench.errors import CheckpointError, SpecError, TrainingDiverged

__all__ = ["run_training", "validate", "default_pools"]


def default_pools(ctx: TrainContext) -> list[CasePool]:
    """The fold's training cases, weight 1."""
    ds = ctx.dataset
    return [CasePool(ds, tuple(ds.train_ids(ctx.train_cfg.fold)))]


@torch.no_grad()
def validate(model: torch.nn.Module, dataset: Any, case_ids: Sequence[str], window: int, device: torch.device,
             amp: bool) -> dict[str, float]:
    """Mean Dice per region over ``case_ids`` on the working grid, with full sliding-window inference
    (non-overlapping tiles)."""
    was_training = model.training
    model.eval()
    cfg = InferenceConfig(window=window, overlap=0.0, window_batch=2, amp=amp)
    scores: dict[str, list[float]] = {"ET": [], "TC": [], "WT": []}
    for cid in case_ids:
        case = dataset.load(cid)
        if case.label is None:
            continue
        probs = predict_probabilities([model], case.image, window, cfg, device)
        pred = probs.argmax(0).cpu().numpy()
        for r, v in region_dice(pred, np.asarray(case.label)).items():
            scores[r].append(v)
    model.train(was_training)
    return {r: float(np.mean(v)) if v else float("nan") for r, v in scores.items()}


def _stack_items(ctx: TrainContext) -> list[Any]:
    return [[n, p] for n, p in ctx.stack.items()] if ctx.stack is not None else []


def run_training(ctx: TrainContext, *, pools: Sequence[CasePool] | None = None,
                 val_ids: Sequence[str] | None = None) -> TrainResult:
    """Train ``ctx.recipe`` on ``pools`` (default: the fold's training cases) into ``ctx.out_dir``."""
    cfg, recipe = ctx.train_cfg, ctx.recipe
    out = Path(ctx.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    final_path, last_path = out / FINAL_CHECKPOINT, out / LAST_CHECKPOINT
    arch = recipe.arch(ctx.model_cfg)

    if ctx.resume and final_path.exists():
        ck = load_checkpoint(final_path)
        check_arch(final_path, ck["arch"], arch)
        return TrainResult(final_path, list(ck["curve"]), float(ck["seconds"]), int(ck["iteration"]))

    device = resolve_device(cfg.device)
    threads_before = torch.get_num_threads()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed patch shapes (a few with random_patch_size): autotune once
    if device.type == "cpu":
        # auto: every core this process may use. The loader processes only crop memory-mapped arrays and are
        # mostly idle (measured on 2 cores: 0.31 s a step with 2 threads against 0.52 s with 1). Independent of
        # num_workers so that results do not change with the number of loader processes (the thread count
        # changes float reduction order).
        threads = cfg.threads if cfg.threads > 0 else _usable_cores()
        torch.set_num_threads(threads)
        from bench.engine.cpu import tune_allocator

        tune_allocator()  # before the loader forks its workers; they inherit it
    try:
        return _train_loop(ctx, pools, val_ids, device, final_path, last_path, arch)
    finally:
        torch.set_num_threads(threads_before)


def _compiled(model: torch.nn.Module) -> Any:
    from torch import _dynamo

    # A runner worker trains many cells in one process: graphs of earlier models would count against the
    # recompile limit (after which dynamo silently runs eager) and push it to slow dynamic-shape graphs.
    # Every training therefore compiles afresh (about a minute on an H100 for the paper's model).
    _dynamo.reset()
    # random_patch_size trains at up to six shapes: one static graph each
    _dynamo.config.cache_size_limit = max(_dynamo.config.cache_size_limit, 16)
    return torch.compile(model, dynamic=False)


def _run_forward(forward: Any, x: torch.Tensor, compiled: bool, first: bool) -> Any:
    """The model's forward; the first compiled call turns a compiler failure into a clear error."""
    if not (compiled and first):
        return forward(x)
    try:
        return forward(x)
    except Exception as exc:
        if type(exc).__module__.startswith("torch._dynamo") or type(exc).__module__.startswith("torch._inductor"):
            raise SpecError(f"train.compile: torch.compile failed on this machine ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''}); set train.compile = false in the "
                            "spec or pass --no-compile") from exc
        raise


def _train_loop(ctx: TrainContext, pools: Sequence[CasePool] | None, val_ids: Sequence[str] | None,
                device: torch.device, final_path: Path, last_path: Path, arch: dict[str, Any]) -> TrainResult:
    cfg, recipe = ctx.train_cfg, ctx.recipe
    out = Path(ctx.out_dir)
    use_amp = bool(cfg.amp and device.type == "cuda")

    torch.manual_seed(cfg.seed)
    model = build_model(ctx.model_cfg, recipe.block, recipe.head, recipe.block_options,
                        recipe.extra_outputs).to(device)
    if device.type == "cuda":
        channels_last = bool(cfg.channels_last)
    else:
        from bench.engine.cpu import channels_last_on_cpu

        channels_last = channels_last_on_cpu(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                          weight_decay=cfg.weight_decay)
    hooks = list(recipe.hooks)
    # The compiled module shares its parameters with ``model``; checkpoints and validation use ``model``
    # itself, so state-dict keys and inference do not depend on this setting.
    forward = _compiled(model) if cfg.compile else model

    start, curve, seconds = 0, [], 0.0
    loss_sum, loss_n = 0.0, 0
    if ctx.resume and last_path.exists():
        ck = load_checkpoint(last_path)
        check_arch(last_path, ck["arch"], arch)
        stored_cfg = ck.get("train_cfg", {})
        for key in ("iterations", "epoch_length", "seed", "fold"):
            if stored_cfg.get(key) != getattr(cfg, key):
                raise CheckpointError(f"checkpoint {last_path} belongs to another training "
                                      f"({key}: checkpoint {stored_cfg.get(key)!r}, asked {getattr(cfg, key)!r})")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        torch.set_rng_state(ck["rng_torch"])
        for h in hooks:
            if h.name in ck.get("hooks", {}):
                h.load_state_dict(ck["hooks"][h.name])
        start, curve, seconds = int(ck["iteration"]), list(ck["curve"]), float(ck["seconds"])
        loss_sum, loss_n = float(ck.get("loss_sum", 0.0)), int(ck.get("loss_n", 0))

    def payload(iteration: int, finished: bool) -> dict[str, Any]:
        return {
            "engine_version": ENGINE_VERSION, "arch": arch, "train_cfg": dataclasses.asdict(cfg),
            "tricks": _stack_items(ctx), "model": model.state_dict(), "optimizer": opt.state_dict(),
            "iteration": iteration, "epoch": iteration // cfg.epoch_length, "rng_torch": torch.get_rng_state(),
            "hooks": {h.name: h.state_dict() for h in hooks}, "curve": curve, "seconds": seconds,
            "finished": finished, "loss_sum": loss_sum, "loss_n": loss_n,
            # what prediction must give the model again (bench.engine.checkpoint.check_preprocessing)
            "preprocessing": getattr(ctx.dataset, "preprocessing", None),
        }

    for h in hooks:
        h.before_train(ctx)
    total = cfg.iterations
    if val_ids is None:
        val_ids = list(ctx.dataset.val_ids(cfg.fold)) if cfg.val_every > 0 else []
    if cfg.val_cases > 0:
        val_ids = list(val_ids)[: cfg.val_cases]
    source = BatchSource(list(pools) if pools is not None else default_pools(ctx), recipe.patch_plan,
                         recipe.sampler, recipe.augment, cfg.seed, total)
    batches = make_loader(source, start, num_workers=cfg.num_workers, prefetch=cfg.prefetch,
                          pin_memory=device.type == "cuda")
    last_finite: float | None = curve[-1]["loss"] if curve else None
    model.train()
    t0 = time.perf_counter()
    try:
        for it in range(start, total):
            batch = next(batches)
            factor = recipe.schedule(it, total, cfg.epoch_length)
            lr = cfg.lr * factor
            for g in opt.param_groups:
                g["lr"] = lr
            x = batch["image"].to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last_3d)
            y = batch["label"].to(device, non_blocking=True)
            w = batch["weight"].to(device, non_blocking=True)
            state = StepState(iteration=it, total=total, epoch=it // cfg.epoch_length,
                              epoch_length=cfg.epoch_length, lr=lr, patch=tuple(x.shape[2:]),  # type: ignore[arg-type]
                              batch=int(x.shape[0]), voxel_weighting=recipe.voxel_weighting, sample_weight=w)
            for h in hooks:
                h.before_step(state)
            with autocast(device, use_amp):
                logits = _run_forward(forward, x, cfg.compile, it == start)
            per_sample = recipe.loss(logits, y, state)
            loss = (per_sample * w).mean()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise TrainingDiverged(it, last_finite)
            last_finite = value
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            state.loss = value
            loss_sum += value
            loss_n += 1
            for h in hooks:
                h.after_step(state)
            done = it + 1
            info: dict[str, Any] = {"iteration": done, "total": total, "loss": value, "lr": lr,
                                    "epoch": done / cfg.epoch_length}
            epoch_end = done % cfg.epoch_length == 0 or done == total
            if epoch_end:
                epoch = -(-done // cfg.epoch_length)
                for h in hooks:
                    h.after_epoch(state)
                point: dict[str, Any] = {"iteration": done, "epoch": epoch, "loss": loss_sum / max(1, loss_n),
                                         "lr": lr}
                loss_sum, loss_n = 0.0, 0
                if val_ids and cfg.val_every > 0 and (epoch % cfg.val_every == 0 or done == total):
                    dice = validate(model, ctx.dataset, val_ids, as_patch3(cfg.patch)[0], device, use_amp)
                    point.update({f"val_dice_{r}": v for r, v in dice.items()})
                    info["val"] = dice
                seconds += time.perf_counter() - t0
                t0 = time.perf_counter()
                point["seconds"] = seconds
                curve.append(point)
                if done < total and cfg.checkpoint_every > 0 and epoch % cfg.checkpoint_every == 0:
                    save_checkpoint(last_path, payload(done, False))
            if ctx.progress is not None:
                ctx.progress(info)
            if ctx.stop is not None and ctx.stop.is_set() and done < total:
                seconds += time.perf_counter() - t0
                t0 = time.perf_counter()
                save_checkpoint(last_path, payload(done, False))
                raise TrainingStopped(done, last_path)
    finally:
        close = getattr(batches, "_shutdown_workers", None)
        if close is not None:
            close()
    seconds += time.perf_counter() - t0
    for h in hooks:
        h.after_train(ctx)
    save_checkpoint(final_path, payload(total, True))
    last_path.unlink(missing_ok=True)
    _write_curve(out / "curve.json", curve)
    return TrainResult(final_path, curve, seconds, total)


def _write_curve(path: Path, curve: list[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(curve, indent=1))
    os.replace(tmp, path)


def _usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
