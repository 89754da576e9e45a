"""How workers are started: one launcher per file (``local``: processes on this machine; ``slurm``: a Slurm job
array). :func:`get_launcher` maps the name given to ``bench run --launcher`` to its class."""

from __future__ import annotations

from bench.runner.launchers._base import LAUNCHERS, LaunchContext, Launcher, get_launcher

__all__ = ["LAUNCHERS", "LaunchContext", "Launcher", "get_launcher"]
