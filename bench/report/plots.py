"""Figures of the report (matplotlib, Agg backend), each written as PNG and PDF.

- ``dice_boxplot``: per-region box plots of the per-case Dice of every configuration;
- ``main_effects``: main effect of every trick with its bootstrap interval (full factorial designs);
- ``learning_curves``: training loss and validation Dice per epoch, averaged over each configuration's cells;
- ``plot_learning_curve``: one cell's curves (the PNG the MLflow mirror attaches to the cell's run).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bench.report.tables import METRICS, REGIONS, Analysis, metric_name
from bench.report.text import write_bytes_atomic

__all__ = ["make_plots", "dice_boxplot", "main_effects", "learning_curves", "plot_learning_curve"]


def _save(fig, out_dir: Path, stem: str) -> list[Path]:
    paths = []
    for ext, kw in (("png", {"dpi": 110}), ("pdf", {})):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, **kw)
        paths.append(write_bytes_atomic(out_dir / f"{stem}.{ext}", buf.getvalue()))
    return paths


def _figure(w: float, h: float, ncols: int = 1, nrows: int = 1, **kw):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h))
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def _boxes(ax, x: np.ndarray) -> None:
    """Horizontal Tukey box plots of the rows of ``x`` (NaN skipped), drawn with a few collections so a
    64-configuration figure costs milliseconds instead of the seconds ``Axes.boxplot`` needs."""
    from matplotlib.collections import LineCollection, PolyCollection

    n = x.shape[0]
    y = np.arange(1, n + 1, dtype=float)
    ok = ~np.isnan(x).all(axis=1)
    x, y = x[ok], y[ok]
    q1, med, q3 = np.nanpercentile(x, [25, 50, 75], axis=1)
    iqr = q3 - q1
    lo_lim, hi_lim = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    inside = (x >= lo_lim[:, None]) & (x <= hi_lim[:, None])
    wlo = np.nanmin(np.where(inside, x, np.inf), axis=1)
    whi = np.nanmax(np.where(inside, x, -np.inf), axis=1)
    h = 0.3
    boxes = [[(a, b - h), (c, b - h), (c, b + h), (a, b + h)] for a, c, b in zip(q1, q3, y)]
    ax.add_collection(PolyCollection(boxes, facecolors="#c6dbef", edgecolors="#08519c", linewidths=0.8))
    segs = [[(a, b), (c, b)] for a, c, b in zip(wlo, q1, y)] + [[(a, b), (c, b)] for a, c, b in zip(q3, whi, y)]
    segs += [[(a, b - h / 2), (a, b + h / 2)] for a, b in zip(np.r_[wlo, whi], np.r_[y, y])]
    ax.add_collection(LineCollection(segs, colors="#08519c", linewidths=0.8))
    ax.add_collection(LineCollection([[(m, b - h), (m, b + h)] for m, b in zip(med, y)], colors="#e6550d", linewidths=1.5))
    ax.scatter(np.nanmean(x, axis=1), y, marker="D", s=10, c="black", zorder=3)
    out = ~inside & ~np.isnan(x)
    rows, cols = np.nonzero(out)
    ax.scatter(x[rows, cols], y[rows], marker="o", s=8, facecolors="none", edgecolors="0.4", linewidths=0.6)
    ax.set_ylim(n + 0.7, 0.3)


def dice_boxplot(a: Analysis, out_dir: Path) -> list[Path]:
    rows = [i for i in range(len(a.labels)) if a.has_data(i)]
    n = len(rows)
    height = max(2.8, 0.2 * n + 1.3)
    fig, axes = _figure(12, height, ncols=3)
    left = min(0.35, 0.02 + 0.0075 * max(len(a.labels[i]) for i in rows))
    fig.subplots_adjust(left=left, right=0.98, bottom=0.6 / height, top=1 - 0.75 / height, wspace=0.06)
    for k, (ax, region) in enumerate(zip(axes[0], REGIONS)):
        _boxes(ax, a.case_values[("dice", region)][rows])
        ax.set_title(f"Dice {region}")
        ax.set_xlim(-0.02, 1.02)
        ax.grid(axis="x", alpha=0.3)
        if k:
            ax.set_yticks([])
    axes[0][0].set_yticks(range(1, n + 1), [a.labels[i] for i in rows], fontsize=8 if n <= 20 else 6)
    fig.suptitle(f"{a.experiment}: per-case Dice (mean over replicates; box = quartiles, orange = median, "
                 "diamond = mean, whiskers 1.5 IQR)")
    return _save(fig, out_dir, "dice_boxplot")


def main_effects(a: Analysis, out_dir: Path) -> list[Path]:
    if a.effects is None or a.effects.empty:
        return []
    eff = a.effects[a.effects["kind"] == "main"]
    names = list(dict.fromkeys(eff["effect"]))
    height = max(3.5, 0.5 * len(names) + 2.0)
    fig, axes = _figure(12, height, ncols=3, nrows=2)
    left = min(0.3, 0.03 + 0.009 * max(len(n) for n in names))
    fig.subplots_adjust(left=left, right=0.98, bottom=0.45 / height, top=1 - 0.8 / height, wspace=0.08,
                        hspace=0.75)
    y = np.arange(len(names))
    for k, m in enumerate(METRICS):
        ax = axes[k // 3][k % 3]
        sub = eff[eff["metric"] == metric_name(m)].set_index("effect").loc[names]
        est = sub["estimate"].to_numpy()
        err = np.vstack([est - sub["ci_lo"].to_numpy(), sub["ci_hi"].to_numpy() - est])
        good = est > 0 if m[0] == "dice" else est < 0
        ax.errorbar(est, y, xerr=np.abs(err), fmt="none", ecolor="0.4", capsize=3)
        ax.scatter(est, y, c=np.where(good, "tab:green", "tab:red"), zorder=3)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_title(f"{metric_name(m)}{' (mm)' if m[0] == 'hd95' else ''}")
        ax.grid(axis="x", alpha=0.3)
        ax.set_ylim(len(names) - 0.5, -0.5)
        if k % 3:
            ax.set_yticks([])
        else:
            ax.set_yticks(y, names)
    fig.suptitle(f"{a.experiment}: main effect of each trick (on minus off), {100 * a.level:g}% interval")
    return _save(fig, out_dir, "main_effects")


def validation_regions(curves: pd.DataFrame) -> list[str]:
    """The regions whose validation Dice every validation point of ``curves`` recorded (columns
    ``val_dice_et/wt/tc``), in REGIONS order. Both engines record all three; a curve that recorded fewer (nnU-Net
    trainings stored before bench counted WT and TC have ET alone) is shown with what it has instead of an
    empty panel."""
    cols = {r: f"val_dice_{r.lower()}" for r in REGIONS if f"val_dice_{r.lower()}" in curves}
    points = curves[list(cols.values())].notna().any(axis=1) if cols else None
    if points is None or not points.any():
        return []
    return [r for r, col in cols.items() if bool(curves.loc[points, col].notna().all())]


def learning_curves(a: Analysis, curves: pd.DataFrame, out_dir: Path) -> list[Path]:
    if curves is None or curves.empty:
        return []
    c = curves.copy()
    regions = validation_regions(c)
    if regions:
        c["val_dice"] = c[[f"val_dice_{r.lower()}" for r in regions]].astype(float).mean(axis=1, skipna=False)
    show_legend = len(a.labels) <= 12
    fig, axes = _figure(12, 4.2, ncols=2)
    ax_loss, ax_val = axes[0]
    cmap = __import__("matplotlib").colormaps["viridis" if len(a.labels) > 10 else "tab10"]
    order = {lab: i for i, lab in enumerate(a.labels)}
    cols = ["train_loss"] + (["val_dice"] if "val_dice" in c else [])
    means = c.groupby(["label", "epoch"], sort=True)[cols].mean()
    for label in sorted(means.index.get_level_values(0).unique(), key=lambda lab: order.get(str(lab), 1 << 30)):
        g = means.loc[label]
        k = order.get(str(label), 0)
        color = cmap(k / max(len(a.labels) - 1, 1)) if len(a.labels) > 10 else cmap(k % 10)
        loss = g["train_loss"].dropna()
        if not loss.empty:
            ax_loss.plot(loss.index, loss.to_numpy(), color=color, lw=1.2, label=str(label))
        if "val_dice" in g:
            val = g["val_dice"].dropna()
            if not val.empty:
                ax_val.plot(val.index, val.to_numpy(), color=color, lw=1.2, marker="o", ms=2, label=str(label))
    ax_loss.set(title="training loss (mean over cells)", xlabel="epoch", ylabel="loss")
    shown = regions if regions else list(REGIONS)
    ax_val.set(title=f"validation Dice, {'mean of ' if len(shown) > 1 else ''}{'/'.join(shown)} (mean over cells)",
               xlabel="epoch", ylabel="Dice")
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_loss, ax_val):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if not ax.lines:
            ax.text(0.5, 0.5, "no points recorded", ha="center", va="center", transform=ax.transAxes, color="0.4")
    if show_legend:
        (ax_val if ax_val.lines else ax_loss).legend(fontsize=7, loc="best")
    fig.suptitle(f"{a.experiment}: learning curves")
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.13, top=0.84, wspace=0.18)
    return _save(fig, out_dir, "learning_curves")


def plot_learning_curve(series: Mapping[str, tuple[Sequence[int], Sequence[float]]], out: Path, *,
                        step_name: str = "iteration", title: str = "") -> Path:
    """One cell's curves into a PNG: ``series`` maps a metric (``train_loss``, ``val_dice_et``...) to its
    (steps, values); losses on the left, validation metrics on the right."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax_loss, ax_dice = fig.subplots(1, 2)
    for key in sorted(series):
        xs, ys = series[key]
        if key.startswith("train_loss") or key.endswith("loss"):
            ax_loss.plot(xs, ys, label=key)
        elif key.startswith("val_"):
            ax_dice.plot(xs, ys, marker="o", markersize=3, label=key[4:])
    ax_loss.set(title="training loss", xlabel=step_name)
    ax_dice.set(title="validation", xlabel=step_name, ylim=(0, 1))
    for ax in (ax_loss, ax_dice):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    # Fixed margins: tight_layout would draw the figure twice (0.4 s instead of 0.25 s of CPU per cell).
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.14, top=0.84, wspace=0.2)
    fig.savefig(out)
    return out


CAPTIONS = {
    "dice_boxplot": "Per-case Dice by configuration and region (each case averaged over its replicates).",
    "main_effects": "Main effect of each trick (mean with it on minus off) with the effects table's intervals "
                    "(test cases + runs when several runs per configuration, test cases only otherwise).",
    "learning_curves": "Training loss and validation Dice per epoch, averaged over the cells of each configuration.",
}


def make_plots(a: Analysis, curves: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Write every figure that applies to this experiment; returns the PNG and PDF paths."""
    out_dir = Path(out_dir)
    paths = dice_boxplot(a, out_dir)
    paths += main_effects(a, out_dir)
    paths += learning_curves(a, curves, out_dir)
    return paths
