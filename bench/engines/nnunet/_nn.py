"""nnunetv2 at arm's length: the one-line install message, nnU-Net's folders set per workspace, its console
output kept in a log file."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from bench.errors import BenchError

__all__ = ["INSTALL", "require", "version", "folders", "environment", "quiet"]

INSTALL = ('the nnunet engine needs nnunetv2, which is not installed: pip install -e ".[nnunet]" '
           "(in a CPU venv add the torchvision that matches the installed torch, e.g. torchvision==0.28.0 for "
           "torch 2.13.0, so pip keeps the CPU build)")

_VARS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")


def require() -> None:
    """Raise a BenchError saying how to install nnunetv2 when it cannot be imported."""
    try:
        import nnunetv2  # noqa: F401
    except ImportError:
        raise BenchError(INSTALL) from None


def version() -> str:
    from importlib import metadata

    require()
    return metadata.version("nnunetv2")


@contextlib.contextmanager
def folders(raw: Path | None = None, preprocessed: Path | None = None,
            results: Path | None = None) -> Iterator[None]:
    """nnU-Net's three folders for the duration of the block (nnunetv2 2.8 reads them from the environment
    when it uses them; processes it spawns inherit them). The previous values are restored after."""
    old = {k: os.environ.get(k) for k in _VARS}
    try:
        for k, v in zip(_VARS, (raw, preprocessed, results)):
            if v is not None:
                os.environ[k] = str(v)
            else:
                os.environ.pop(k, None)
        yield
    finally:
        _restore(old)


def _restore(old: dict[str, str | None]) -> None:
    """Put environment variables back as they were (None: unset)."""
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Environment variables nnU-Net reads (``nnUNet_n_proc_DA``) for the block; torch's CPU thread count is
    restored after it too (nnU-Net's planner sets it to ``nnUNet_n_proc_DA``)."""
    import torch

    old = {k: os.environ.get(k) for k in values}
    threads = torch.get_num_threads()
    try:
        os.environ.update(values)
        yield
    finally:
        _restore(old)
        torch.set_num_threads(threads)


@contextlib.contextmanager
def quiet(log_file: Path) -> Iterator[None]:
    """nnU-Net's prints go to ``log_file`` (appended), not to bench's console."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "a") as fh, contextlib.redirect_stdout(fh):
        try:
            yield
        finally:
            fh.flush()
            sys.stdout.flush()
