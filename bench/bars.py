"""Progress bars that suit where they are written.

On a terminal a tqdm bar redraws in place. In a log file (a Slurm job's output, CI, ``nohup``) redrawing in
place leaves a carriage-return frame per refresh; there the bar writes a plain line at most every 30 s (and
its last state when it closes), so a day-long training leaves a readable log of a few hundred lines.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

__all__ = ["progress_bar", "LOG_INTERVAL"]

#: seconds between two lines of a bar written to a stream that is not a terminal
LOG_INTERVAL = 30.0


class _Lines:
    """A text stream that turns tqdm's carriage-return frames into whole lines."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.encoding = getattr(stream, "encoding", "utf-8")

    def write(self, text: str) -> int:
        for part in text.split("\r"):
            part = part.rstrip()
            if part:
                self._stream.write(part + "\n")
        return len(text)

    def flush(self) -> None:
        self._stream.flush()


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def progress_bar(*, file: TextIO | None = None, **kwargs: Any) -> Any:
    """A ``tqdm`` bar on ``file`` (stderr by default): live on a terminal, one line per ``LOG_INTERVAL``
    seconds elsewhere. Takes tqdm's keyword arguments (``total``, ``desc``, ``unit``, ``disable``...)."""
    from tqdm import tqdm

    stream = file if file is not None else sys.stderr
    if _is_terminal(stream):
        kwargs.setdefault("dynamic_ncols", True)
        return tqdm(file=stream, **kwargs)
    kwargs.pop("dynamic_ncols", None)
    kwargs.setdefault("mininterval", LOG_INTERVAL)
    kwargs.setdefault("ncols", 100)
    return _log_bar_class(tqdm)(file=_Lines(stream), **kwargs)


def _log_bar_class(tqdm: Any) -> Any:
    class LogBar(tqdm):  # type: ignore[misc, valid-type]
        """A tqdm bar whose explicit refreshes (``refresh()``, ``set_postfix()``, setting ``n`` and refreshing)
        also wait ``mininterval`` since the last line: plain tqdm redraws on every such call, which in a log
        file is a line per training iteration. ``close()`` still writes the last state."""

        def refresh(self, nolock: bool = False, lock_args: Any = None) -> None:
            now = self._time()
            last = getattr(self, "last_print_t", None)  # unset while tqdm's __init__ draws the first line
            if self.disable or (last is not None and now - last < self.mininterval):
                return
            super().refresh(nolock=nolock, lock_args=lock_args)
            self.last_print_t = now
            self.last_print_n = self.n

    return LogBar
