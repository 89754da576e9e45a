"""Checkpoints: atomic writes, ``weights_only=True`` loads, architecture checks.

A checkpoint is a dict of tensors and primitive containers only (so ``torch.load(weights_only=True)`` reads it):
``format``, ``engine_version``, ``arch`` (model config, block, block options, head), ``train_cfg``, ``tricks``,
``model`` (state dict), ``optimizer``, ``iteration``, ``epoch``, ``rng_torch``, ``hooks`` ({name: state}),
``curve``, ``seconds``, ``finished``, plus the running epoch-loss sums.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from bench.errors import CheckpointError

__all__ = ["save_checkpoint", "load_checkpoint", "check_arch", "FORMAT"]

FORMAT = "bench-checkpoint-1"


def save_checkpoint(path: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically (temporary file in the same folder, then ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save({"format": FORMAT, **payload}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` onto the CPU; CheckpointError names the file if it is
    missing, unreadable or not a bench checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickle with non-allowed globals, ...
        raise CheckpointError(f"checkpoint {path}: cannot be read ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: not a bench checkpoint (format {FORMAT} expected)")
    return data


def check_arch(path: Path | str, stored: dict[str, Any], expected: dict[str, Any]) -> None:
    """CheckpointError if the checkpoint's model architecture differs from the one asked for."""
    if stored != expected:
        diffs = []
        for key in sorted(set(stored) | set(expected)):
            a, b = stored.get(key), expected.get(key)
            if isinstance(a, dict) and isinstance(b, dict):
                for k in sorted(set(a) | set(b)):
                    if a.get(k) != b.get(k):
                        diffs.append(f"{key}.{k}: checkpoint {a.get(k)!r}, asked {b.get(k)!r}")
            elif a != b:
                diffs.append(f"{key}: checkpoint {a!r}, asked {b!r}")
        raise CheckpointError(f"checkpoint {path} is from another model shape ({'; '.join(diffs)})")
