"""Sliding-window inference, model fusion, and the way back to the source grid.

Small pure helpers first (:func:`window_starts`, :func:`window_weights`, :func:`sliding_window`), then the
case-level functions the API uses. Windows run only over the prepared volume (the brain's bounding box on the
working grid); everything outside it is background.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bench.data.formats import CLASS_REGIONS, REGIONS, classes_to_brats
from bench.engine.config import InferenceConfig, ModelConfig, from_dict
from bench.engine.heads import OutputHead, get_head, head_for
from bench.engine.model import build_model
from bench.errors import CheckpointError

__all__ = [
    "window_starts", "window_weights", "sliding_window", "predict_probabilities", "load_models", "predict_case",
    "resolve_device", "autocast", "region_dice", "to_source_grid",
]


def resolve_device(name: str | None) -> torch.device:
    """``auto`` -> cuda if available else cpu; an explicit cuda device that is missing is a clear error."""
    from bench.errors import SpecError

    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SpecError(f"device {name!r} was asked for but no CUDA GPU is available "
                            "(torch.cuda.is_available() is False); use --device cpu")
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise SpecError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) present")
        return dev
    if name == "cpu":
        return torch.device("cpu")
    raise SpecError(f"device {name!r}; accepted auto, cpu, cuda, cuda:N")


def autocast(device: torch.device, enabled: bool) -> Any:
    """bf16 autocast on CUDA when enabled; a no-op context elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def window_starts(size: int, window: int, overlap: float, placement: str = "even") -> list[int]:
    """Start offsets of windows along one axis of length ``size`` (``size >= window``).

    ``placement="even"`` (the default, nnU-Net's rule): the step is ``window * (1 - overlap)`` (at least 1) and
    the windows are spread evenly from 0 to ``size - window``, so the last one ends at the border. With overlap
    0 the windows are tiles that only overlap where ``size`` is not a multiple of ``window``.
    ``placement="stride"`` (MONAI's ``sliding_window_inference`` rule): starts at multiples of
    ``int(window * (1 - overlap))``, the last one moved back to end at the border.
    """
    if placement not in ("even", "stride"):
        raise ValueError(f"window placement {placement!r}; accepted even, stride")
    if size <= window:
        return [0]
    if placement == "stride":
        interval = max(1, int(window * (1.0 - overlap)))
        n = math.ceil((size - window) / interval) + 1
        return [min(i * interval, size - window) for i in range(n)]
    step = max(1.0, window * (1.0 - overlap))
    n = math.ceil((size - window) / step) + 1
    if n == 1:
        return [0]
    return [int(round(i * (size - window) / (n - 1))) for i in range(n)]


def window_weights(window: Sequence[int], mode: str = "constant", sigma: float = 0.125) -> torch.Tensor:
    """Importance weights of one window, float32 ``window``-shaped; Gaussian with sigma = ``sigma * edge``
    centred on the window, normalised to max 1 and floored at a small positive value."""
    if mode == "constant":
        return torch.ones(tuple(window), dtype=torch.float32)
    if mode != "gaussian":
        raise ValueError(f"window weights {mode!r}; accepted constant, gaussian")
    axes = []
    for w in window:
        x = torch.arange(w, dtype=torch.float64) - (w - 1) / 2
        axes.append(torch.exp(-0.5 * (x / (sigma * w)) ** 2))
    g = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    g = g / g.max()
    return g.clamp_min(1e-3).to(torch.float32)


def sliding_window(predict_fn: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor,
                   window: int | Sequence[int], n_out: int, *, overlap: float = 0.0, weights: str = "constant",
                   sigma: float = 0.125, window_batch: int = 2, placement: str = "even") -> torch.Tensor:
    """Weighted average of ``predict_fn`` over windows covering ``image`` ``(C, X, Y, Z)``.

    ``predict_fn(batch (B, C, wx, wy, wz)) -> (B, n_out, wx, wy, wz)`` (probabilities). Volumes smaller than the
    window are zero-padded. ``placement``: see :func:`window_starts`. Returns float32 ``(n_out, X, Y, Z)`` on
    the image's device.
    """
    win = [int(window)] * 3 if isinstance(window, (int, np.integer)) else [int(w) for w in window]
    size = list(image.shape[1:])
    pads = [max(0, w - s) for w, s in zip(win, size)]
    if any(pads):
        image = F.pad(image, [p for d in reversed(pads) for p in (0, d)])
    full = list(image.shape[1:])
    dev = image.device
    out = torch.zeros((n_out, *full), dtype=torch.float32, device=dev)
    norm = torch.zeros(full, dtype=torch.float32, device=dev)
    wmap = window_weights(win, weights, sigma).to(dev)
    starts = [window_starts(s, w, overlap, placement) for s, w in zip(full, win)]
    corners = [(a, b, c) for a in starts[0] for b in starts[1] for c in starts[2]]
    for i in range(0, len(corners), max(1, window_batch)):
        chunk = corners[i:i + window_batch]
        batch = torch.stack([image[:, a:a + win[0], b:b + win[1], c:c + win[2]] for a, b, c in chunk])
        pred = predict_fn(batch).float()
        for (a, b, c), p in zip(chunk, pred):
            out[:, a:a + win[0], b:b + win[1], c:c + win[2]].addcmul_(p, wmap)
            norm[a:a + win[0], b:b + win[1], c:c + win[2]] += wmap
    out /= norm
    if any(pads):
        out = out[:, :size[0], :size[1], :size[2]]
    return out


def _channels_last(model: torch.nn.Module, device: torch.device) -> bool:
    """Channels-last 3D at inference: always on CUDA; on the CPU where it is faster (bench.engine.cpu)."""
    if device.type == "cuda":
        return True
    from bench.engine.cpu import channels_last_on_cpu

    return channels_last_on_cpu(model)


def _model_fn(model: torch.nn.Module, device: torch.device, amp: bool, channels_last: bool, n_classes: int,
              head: OutputHead) -> Callable[[torch.Tensor], torch.Tensor]:
    def fn(x: torch.Tensor) -> torch.Tensor:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        with autocast(device, amp):
            logits = model(x)
        return head.probabilities(logits, n_classes)

    return fn


@torch.no_grad()
def predict_probabilities(models: Sequence[torch.nn.Module], image: np.ndarray | torch.Tensor, window: int,
                          cfg: InferenceConfig, device: torch.device) -> torch.Tensor:
    """Average class probabilities ``(n_classes, X, Y, Z)`` of ``models`` (with optional left-right mirror
    averaging) over the prepared volume ``image (C, X, Y, Z)``; on ``device``. With ``cfg.regions``: the
    probabilities of the region head that the multitask trick registers (bench.engine.heads) instead."""
    x = torch.from_numpy(np.array(image, dtype=np.float32)) if isinstance(image, np.ndarray) else image
    x = x.to(device, torch.float32)
    total: torch.Tensor | None = None
    n = 0
    head = head_for(cfg)
    for model in models:
        n_classes = int(getattr(getattr(model, "cfg", None), "n_classes", 4))
        head.check(model)
        n_out = head.channels(n_classes)
        fn = _model_fn(model, device, cfg.amp, _channels_last(model, device), n_classes, head)
        views = [False, True] if cfg.mirror else [False]
        for flip in views:
            xi = torch.flip(x, dims=(1,)) if flip else x
            p = sliding_window(fn, xi, window, n_out, overlap=cfg.overlap, weights=cfg.weights, sigma=cfg.sigma,
                               window_batch=cfg.window_batch)
            if flip:
                p = torch.flip(p, dims=(1,))
            total = p if total is None else total.add_(p)
            n += 1
    assert total is not None
    return total / n


def load_models(paths: Sequence[Path], cfg: InferenceConfig) -> tuple[list[torch.nn.Module], int, torch.device]:
    """Rebuild and load every checkpoint (eval mode, on the configured device). Returns the models, the
    window (``cfg.window`` or the first checkpoint's training patch) and the device."""
    from bench.engine.checkpoint import load_checkpoint

    if not paths:
        raise CheckpointError("no checkpoint given")
    device = resolve_device(cfg.device)
    if device.type == "cpu":
        from bench.engine.cpu import tune_allocator

        tune_allocator()
    models: list[torch.nn.Module] = []
    window = int(cfg.window)
    for path in paths:
        ck = load_checkpoint(path)
        model = model_from_checkpoint(path, ck)
        model.to(device)
        if _channels_last(model, device):
            model.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
        model.eval()
        models.append(model)
        if window <= 0:
            window = int(ck.get("train_cfg", {}).get("patch", 64))
    return models, window, device


def model_from_checkpoint(path: Path | str, ck: dict[str, Any]) -> torch.nn.Module:
    arch = ck.get("arch") or {}
    try:
        mcfg = from_dict(ModelConfig, arch["model_cfg"])
        model = build_model(mcfg, arch["block"], arch["head"], arch.get("block_options"),
                            int(arch.get("extra_outputs", 0)))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path}: unusable architecture record ({exc})") from None
    try:
        model.load_state_dict(ck["model"])
    except (KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint {path}: weights do not fit its model shape ({first})") from None
    return model


def to_source_grid(probs: torch.Tensor, meta: Any, *, regions: bool = False) -> np.ndarray:
    """Class probabilities on the working grid -> uint8 BraTS labels on the source grid: resample to the bounding
    box's size (trilinear), argmax (``regions``: the labels of the region head, bench.engine.heads), place
    into a background volume of ``meta.source_shape``."""
    bbox = [tuple(int(v) for v in b) for b in meta.bbox]
    box_size = tuple(b - a for a, b in bbox)
    if tuple(probs.shape[1:]) != box_size:
        probs = F.interpolate(probs[None], size=box_size, mode="trilinear", align_corners=False)[0]
    classes = get_head("regions" if regions else "classes").labels(probs).cpu().numpy()
    out = np.zeros(tuple(int(s) for s in meta.source_shape), dtype=np.uint8)
    out[tuple(slice(a, b) for a, b in bbox)] = classes_to_brats(classes)
    return out


def predict_case(models: Sequence[torch.nn.Module], dataset: Any, case_id: str, cfg: InferenceConfig, *,
                 window: int, device: torch.device) -> np.ndarray:
    """BraTS labels of one prepared case on its source grid (after ``cfg.postprocess``)."""
    case = dataset.load(case_id)
    probs = predict_probabilities(models, case.image, window, cfg, device)
    labels = to_source_grid(probs, case.meta, regions=cfg.regions)
    if cfg.postprocess:
        from bench.engine.postprocess import apply_postprocess

        labels = apply_postprocess(labels, cfg.postprocess, case.meta.spacing)
    return labels


def region_dice(pred_classes: np.ndarray, gt_classes: np.ndarray) -> dict[str, float]:
    """Dice of ET / TC / WT between two class-index maps, with the evaluation's Dice
    (:func:`bench.evaluation.metrics.dice`: both empty -> 1, one empty -> 0) on the regions of
    :data:`bench.data.formats.CLASS_REGIONS`."""
    from bench.evaluation.metrics import dice

    return {r: dice(np.isin(pred_classes, CLASS_REGIONS[r]), np.isin(gt_classes, CLASS_REGIONS[r]))
            for r in REGIONS}
