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


def _log_lines(drive) -> list[str]:
    log = io.StringIO()  # not a terminal
    drive(log)
    text = log.getvalue()
    assert "\r" not in text
    return text.splitlines()


def test_explicit_refreshes_and_postfixes_keep_the_log_interval() -> None:
    """What `bench train` does at every iteration: set n, set the postfix, refresh. 1000 of them in well under
    LOG_INTERVAL write the first line and the closing one, not one line per iteration."""

    def train(log):
        bar = progress_bar(total=1000, desc="train", unit="it", file=log)
        for i in range(1000):
            bar.n = i + 1
            bar.set_postfix({"loss": f"{1 / (i + 1):.4f}"}, refresh=False)
            bar.set_postfix({"loss": f"{1 / (i + 1):.4f}"})  # refresh=True, tqdm's default
            bar.refresh()
        bar.close()

    lines = _log_lines(train)
    assert 1 <= len(lines) <= 3, lines
    assert "1000/1000" in lines[-1] and "loss=0.0010" in lines[-1]


def test_a_log_bar_writes_again_after_the_interval(monkeypatch) -> None:
    def train(log):
        bar = progress_bar(total=100, desc="t", file=log, mininterval=0.05)
        for i in range(100):
            bar.n = i + 1
            bar.refresh()
            if i in (30, 60):
                import time

                time.sleep(0.06)
        bar.close()

    lines = _log_lines(train)
    assert 3 <= len(lines) <= 6, lines  # the first line, one after each pause, the closing one


def test_an_iterable_bar_in_a_log_keeps_the_interval() -> None:
    """What `bench predict`, data preparation and evaluation do: a bar over an iterable."""

    def predict(log):
        for _ in progress_bar(iterable=range(1000), total=1000, desc="predict", unit="case", file=log):
            pass

    lines = _log_lines(predict)
    assert 1 <= len(lines) <= 3 and "1000/1000" in lines[-1], lines
