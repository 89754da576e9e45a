"""Training locks in the results database: one ``trainings`` row per training key, held with a heartbeat like a
cell lease (:mod:`bench.runner.state`), so two workers never train one key at once and a dead holder's training
is taken over and resumed from its checkpoint.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError

from bench.runner.state import is_stale
from bench.store.models import CurvePoint, Training, utcnow
from bench.store.session import ResultsStore

__all__ = ["claim_training", "heartbeat_training", "finish_training", "fail_training", "release_training",
           "curve_rows"]


def claim_training(store: ResultsStore, key: str, fold: int, seed: int, worker: str, timeout: float,
                   items: dict[str, Any] | None = None, out_dir: str | None = None,
                   device: str | None = None) -> tuple[str, Training | None]:
    """Lock a training key. Returns ``("done", row)`` when it finished before, ``("claimed", row)`` when this
    worker now holds it (new, failed before, or its holder died), ``("busy", row)`` when a live worker trains it."""
    now = utcnow()
    try:
        with store.session() as s:
            s.add(Training(key=key, fold=fold, seed=seed, state="running", holder=worker, heartbeat_at=now,
                           items=items or {}, out_dir=out_dir, device=device))
        return "claimed", None
    except IntegrityError:
        pass
    with store.session() as s:
        t = s.get(Training, key)
        assert t is not None
        if t.state == "done":
            return "done", t
        if t.holder == worker and t.state == "running":
            return "claimed", t
        if t.state == "running" and not is_stale(t.holder, t.heartbeat_at, timeout):
            return "busy", t
        hb_cond = (Training.heartbeat_at.is_(None) if t.heartbeat_at is None
                   else Training.heartbeat_at == t.heartbeat_at)
        holder_cond = Training.holder.is_(None) if t.holder is None else Training.holder == t.holder
        res = s.execute(
            update(Training).where(Training.key == key, Training.state == t.state, hb_cond, holder_cond)
            .values(state="running", holder=worker, heartbeat_at=now, error=None, device=device)
            .execution_options(synchronize_session=False)
        )
        return ("claimed" if res.rowcount == 1 else "busy"), t  # type: ignore[attr-defined]


def heartbeat_training(store: ResultsStore, key: str, worker: str) -> bool:
    with store.session() as s:
        res = s.execute(update(Training).where(Training.key == key, Training.holder == worker,
                                               Training.state == "running")
                        .values(heartbeat_at=utcnow()).execution_options(synchronize_session=False))
        return bool(res.rowcount == 1)  # type: ignore[attr-defined]


_CURVE_MAP = {"loss": "train_loss", "train_loss": "train_loss", "lr": "lr", "val_dice_ET": "val_dice_et",
              "val_dice_TC": "val_dice_tc", "val_dice_WT": "val_dice_wt", "val_dice_et": "val_dice_et",
              "val_dice_tc": "val_dice_tc", "val_dice_wt": "val_dice_wt"}


def curve_rows(curve: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The engine's learning-curve dicts as ``curve_points`` rows (one per iteration, last one wins)."""
    rows: dict[int, dict[str, Any]] = {}
    for p in curve:
        if "iteration" not in p:
            continue
        it = int(p["iteration"])
        row = rows.setdefault(it, {"iteration": it, "epoch": int(p.get("epoch", 0))})
        for k, col in _CURVE_MAP.items():
            if k in p and p[k] is not None:
                row[col] = float(p[k])
    return [rows[k] for k in sorted(rows)]


def finish_training(store: ResultsStore, key: str, worker: str, checkpoint: str, seconds: float, iterations: int,
                    curve: list[dict[str, Any]]) -> None:
    with store.session() as s:
        s.execute(update(Training).where(Training.key == key)
                  .values(state="done", checkpoint=checkpoint, seconds=seconds, iterations=iterations,
                          finished_at=utcnow(), heartbeat_at=utcnow(), holder=worker, error=None)
                  .execution_options(synchronize_session=False))
        s.execute(delete(CurvePoint).where(CurvePoint.training_key == key))
        s.add_all(CurvePoint(training_key=key, **r) for r in curve_rows(curve))


def fail_training(store: ResultsStore, key: str, worker: str, error: str) -> None:
    with store.session() as s:
        s.execute(update(Training).where(Training.key == key, Training.holder == worker)
                  .values(state="failed", error=error[:4000], finished_at=utcnow())
                  .execution_options(synchronize_session=False))


def release_training(store: ResultsStore, key: str, worker: str) -> None:
    with store.session() as s:
        s.execute(update(Training).where(Training.key == key, Training.holder == worker,
                                         Training.state == "running")
                  .values(holder=None, heartbeat_at=None).execution_options(synchronize_session=False))
