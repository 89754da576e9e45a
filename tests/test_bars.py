"""Progress bars in a log file: plain lines at most every LOG_INTERVAL seconds, no carriage-return frames."""

from __future__ import annotations

import io

from bench.bars import progress_bar


def test_a_bar_in_a_log_writes_whole_lines_not_frames() -> None:
    log = io.StringIO()  # not a terminal
    bar = progress_bar(total=1000, desc="train", unit="it", file=log)
    for _ in range(1000):
        bar.update(1)
    bar.close()
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    # the first frame and the closing one: 1000 updates in well under 30 s write no frame in between
    assert 1 <= len(lines) <= 3, lines
    assert "1000/1000" in lines[-1] and lines[-1].startswith("train")


def test_a_bar_on_a_terminal_redraws_in_place() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    bar = progress_bar(total=3, desc="x", file=tty, mininterval=0)
    for _ in range(3):
        bar.update(1)
    bar.close()
    assert tty.getvalue().count("\r") >= 3
