"""Checkpoints: atomic writes, ``weights_only=True`` loads, architecture checks.

A checkpoint is a dict of tensors and primitive containers only (so ``torch.load(weights_only=True)`` reads it):
``format``, ``engine_version``, ``arch`` (model config, block, block options, head), ``train_cfg``, ``tricks``,
``model`` (state dict), ``optimizer``, ``iteration``, ``epoch``, ``rng_torch``, ``hooks`` ({name: state}),
``curve``, ``seconds``, ``finished``, plus the running epoch-loss sums, and ``preprocessing``: the record of
the data it was trained on (working spacing, normalisation, crop rule, version; None in checkpoints saved before
bench recorded it), which prediction repeats (:func:`model_preprocessing`, :func:`check_preprocessing`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from bench.errors import CheckpointError

__all__ = ["save_checkpoint", "load_checkpoint", "check_arch", "FORMAT", "model_preprocessing",
           "check_preprocessing", "FINAL_CHECKPOINT", "LAST_CHECKPOINT"]

FORMAT = "bench-checkpoint-1"
#: a finished training's checkpoint, and the one a stopped or killed training resumes from
FINAL_CHECKPOINT = "final.pt"
LAST_CHECKPOINT = "last.pt"


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
    # nnU-Net names its checkpoints checkpoint_{final,latest,best}.pth and stores "network_weights"
    nnunet = " (an nnU-Net checkpoint: predict it with --engine nnunet)" if path.name.startswith("checkpoint_") \
        and path.suffix == ".pth" else ""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickle with non-allowed globals, ...
        first = (str(exc).strip().splitlines() or [""])[0]
        raise CheckpointError(f"checkpoint {path}: cannot be read ({type(exc).__name__}: {first}){nnunet}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        if isinstance(data, dict) and "network_weights" in data:
            nnunet = " (an nnU-Net checkpoint: predict it with --engine nnunet)"
        raise CheckpointError(f"checkpoint {path}: not a bench checkpoint (format {FORMAT} expected){nnunet}")
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


def model_preprocessing(checkpoints: Sequence[tuple[Path | str, dict[str, Any]]]) -> dict[str, Any] | None:
    """The preprocessing record shared by ``checkpoints`` (``(path, loaded checkpoint)`` pairs), or None when
    none of them records one (saved by an older bench). CheckpointError when fused models disagree, or when
    some record it and others do not."""
    from bench.data.preprocess import describe_preprocessing, preprocessing_differences

    records = [(Path(p), ck.get("preprocessing")) for p, ck in checkpoints]
    known = [(p, r) for p, r in records if r is not None]
    if not known:
        return None
    if len(known) < len(records):
        p = next(p for p, r in records if r is None)
        raise CheckpointError(f"checkpoint {p} records no preprocessing while {known[0][0]} does; fused models "
                              "must be trained on the same preprocessing (retrain the older one)")
    first_path, first = known[0]
    for p, r in known[1:]:
        if preprocessing_differences(first, r):
            raise CheckpointError(f"checkpoints {first_path} ({describe_preprocessing(first)}) and {p} "
                                  f"({describe_preprocessing(r)}) were trained on differently prepared data; "
                                  "fused models must share the preprocessing")
    return dict(first)


def check_preprocessing(record: dict[str, Any] | None, dataset: Any, where: str) -> None:
    """DataError when ``dataset`` was prepared otherwise than the model's ``record`` says (no check when the
    record is None). ``where`` names the data in the message (an option or a folder)."""
    from bench.data.preprocess import describe_preprocessing, preprocessing_differences
    from bench.errors import DataError

    have = getattr(dataset, "preprocessing", None)
    if record is None or have is None:
        return
    if preprocessing_differences(record, have):
        raise DataError(f"{where}: prepared on the {describe_preprocessing(have)}, but the model was trained on "
                        f"the {describe_preprocessing(record)}; give the raw dataset folder (it is prepared the "
                        "model's way) or a cache prepared like the model's")
