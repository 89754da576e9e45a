"""Progress of ``bench run`` on stderr: a tqdm bar on a terminal; in a log file (a Slurm output file, CI,
nohup) one plain line per finished cell and a progress line at most every ``interval`` seconds, never the
carriage-return frames of a bar."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

from sqlalchemy import select

from bench.runner.workspace import Workspace
from bench.store.models import Cell, Configuration

__all__ = ["Progress", "read_status"]

FINISHED = ("done", "failed", "pruned")


def _cells(store: Any, ids: list[int]) -> dict[int, tuple[str, str, int, int]]:
    """``{cell_id: (state, label, fold, seed)}``."""
    with store.session() as s:
        rows = s.execute(select(Cell.id, Cell.state, Configuration.label, Cell.fold, Cell.seed)
                         .join(Configuration, Cell.configuration_id == Configuration.id)
                         .where(Cell.id.in_(ids))).all()
    return {cid: (st, label, fold, seed) for cid, st, label, fold, seed in rows}


class Progress:
    """Cells finished out of those to run, the running cells, failures and notes (worker restarts)."""

    def __init__(self, enabled: bool, store: Any, ids: list[int], ws: Workspace, *, stream: TextIO | None = None,
                 interval: float = 30.0, tty: bool | None = None):
        self.store, self.ids, self.ws = store, list(ids), ws
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval = interval
        self.bar: Any = None
        self.notes: list[str] = []
        cells = _cells(store, self.ids) if enabled else {}
        self.seen = {cid: c[0] for cid, c in cells.items()}
        self.finished0 = sum(1 for st in self.seen.values() if st in FINISHED)
        self.todo = sum(1 for st in self.seen.values() if st in ("queued", "running"))
        self._last_line = time.time()
        if enabled and self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=self.todo, desc="cells", unit="cell", file=self.stream, dynamic_ncols=True)

    def set_ids(self, ids: list[int]) -> None:
        """Follow another set of cells (a search adds cells trial by trial)."""
        self.ids = list(ids)

    def note(self, text: str) -> None:
        """A message that must not be lost (a worker restarted): its own line, and kept on the bar."""
        self.notes.append(text)
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(f"bench: {text}", file=self.stream)
        else:
            print(f"bench: {text}", file=self.stream, flush=True)

    def update(self, live: dict[str, Any] | None = None, extra: str = "") -> None:
        if not self.enabled:
            return
        cells = _cells(self.store, self.ids)
        counts: dict[str, int] = {}
        for st, *_ in cells.values():
            counts[st] = counts.get(st, 0) + 1
        finished = sum(n for st, n in counts.items() if st in FINISHED) - self.finished0
        infos = [live] if live else read_status(self.ws)
        parts = []
        for info in infos:
            if info.get("state") == "training" and info.get("iteration") is not None:
                parts.append(f"{info.get('cell')} it {info['iteration']}/{info.get('total')}")
            elif info.get("state") in ("evaluating", "waiting for training"):
                parts.append(f"{info.get('cell')} {info['state']}")
        fails = counts.get("failed", 0)
        running = "; ".join(parts[:3]) + (f"; {fails} failed" if fails else "")
        if extra:
            running = f"{extra}; {running}" if running else extra
        if self.bar is not None:
            self.bar.n = max(0, min(finished, self.bar.total))
            self.bar.set_postfix_str(running[:100], refresh=False)
            self.bar.refresh()
            self.seen = {cid: c[0] for cid, c in cells.items()}
            return
        for cid, (st, label, fold, seed) in sorted(cells.items()):
            if st in FINISHED and self.seen.get(cid) != st:
                done = sum(1 for c in cells.values() if c[0] in FINISHED) - self.finished0
                print(f"bench: cell {label} fold {fold} seed {seed}: {st} ({max(done, 0)}/{self.todo})",
                      file=self.stream, flush=True)
        self.seen = {cid: c[0] for cid, c in cells.items()}
        now = time.time()
        if now - self._last_line >= self.interval:
            self._last_line = now
            print(f"bench: {max(finished, 0)}/{self.todo} cells finished" + (f"; {running}" if running else ""),
                  file=self.stream, flush=True)

    def close(self) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.update()
            self.bar.close()
        else:
            self._last_line = 0.0
            self.update()


def read_status(ws: Workspace) -> list[dict[str, Any]]:
    """The status files of the workers that spoke in the last two minutes and have not stopped."""
    out = []
    for f in sorted(ws.status_dir.glob("*.json")) if ws.status_dir.exists() else []:
        try:
            info = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if time.time() - float(info.get("time", 0)) < 120 and info.get("state") != "stopped":
            out.append(info)
    return out
