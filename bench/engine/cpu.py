"""Process settings that make CPU training and prediction run at the machine's speed.

The glibc allocator. A CPU training step allocates and frees activations of tens of MB (64^3 voxels x 16
channels x batch 2 in float32 is 33 MB). glibc serves requests above its mmap threshold (dynamic, at most
32 MB) with a fresh ``mmap`` and returns them with ``munmap``, and trims freed memory at the top of the heap
back to the kernel: every step then page-faults the same memory in again, and a fifth of the process's CPU
time goes to the kernel. :func:`tune_allocator` keeps that memory in the process: no mmap for large blocks
(``mallopt(M_MMAP_MAX, 0)``; ``mallopt(M_MMAP_THRESHOLD)`` refuses values above 32 MB on 64-bit glibc, which
is below the tensors that matter) and no trimming below 2 GB of free heap top (``M_TRIM_THRESHOLD``). The
process keeps its peak heap instead of returning it between steps.

Called by the training loop and the predictor when they run on the CPU (never for CUDA), before the data
loader forks its workers, which inherit the setting. ``BENCH_MALLOC_TUNING=0`` in the environment turns it off.
Nothing happens on a C library other than glibc.

The memory layout. oneDNN's 3D convolutions (forward and backward) run faster on channels-last tensors
(NDHWC, ``torch.channels_last_3d``) than on NCDHW: a step of the former brats-cpu model (depth 4, width 16,
dense blocks + self-ensemble, batch norm, 64^3 x batch 2) took 2.20 s against 2.95 s on 2 cores, and a plain
depth-3 batch-norm U-Net 1.11 s against 1.50 s (BENCHMARKS.md). Batch norm keeps that layout; instance norm
and group norm on the CPU do not (instance norm hands back NCDHW, group norm's channels-last kernel is three
times slower than its NCDHW one), and with them the layout gains nothing (instance norm: 1.58 s against
1.60 s), so :func:`channels_last_on_cpu` chooses it only for models without them.
``BENCH_CPU_CHANNELS_LAST=0`` turns it off. CUDA keeps its own setting (``train.channels_last``).
"""

from __future__ import annotations

import ctypes
import os
import platform
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["tune_allocator", "allocator_tuned", "OFF_SWITCH", "channels_last_on_cpu", "LAYOUT_SWITCH"]

OFF_SWITCH = "BENCH_MALLOC_TUNING"
LAYOUT_SWITCH = "BENCH_CPU_CHANNELS_LAST"
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: 2 GB of free heap top before anything is given back

_state: dict[str, bool] = {"tuned": False}


def _off(name: str) -> bool:
    return os.environ.get(name, "1").strip().lower() in ("0", "off", "false", "no")


def channels_last_on_cpu(model: torch.nn.Module) -> bool:
    """Whether ``model`` runs faster in ``channels_last_3d`` on the CPU (see the module docstring): it has 3D
    convolutions and no instance or group normalisation, and ``BENCH_CPU_CHANNELS_LAST`` is not 0."""
    import torch.nn as nn

    if _off(LAYOUT_SWITCH):
        return False
    mods = list(model.modules())
    if not any(isinstance(m, nn.Conv3d) for m in mods):
        return False
    return not any(isinstance(m, (nn.InstanceNorm3d, nn.GroupNorm)) for m in mods)


def allocator_tuned() -> bool:
    """Whether :func:`tune_allocator` changed this process's allocator."""
    return _state["tuned"]


def tune_allocator() -> bool:
    """Keep large freed blocks in the process (see the module docstring). Returns True when the allocator
    was changed (now or by an earlier call), False when turned off or not on glibc. Safe to call repeatedly."""
    if _state["tuned"]:
        return True
    if _off(OFF_SWITCH):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    _state["tuned"] = ok
    return ok
