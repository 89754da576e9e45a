"""Shared wording and number formatting for every output format (LaTeX, Markdown, HTML, CSV).

The sentences are written once here with a small :class:`Markup` describing how a format spells the plus-minus
sign, the test marks and escaping, so the captions say the same thing everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.atomic import atomic_write_bytes
from bench.report.tables import HD95_PENALTY, REGIONS, Analysis

__all__ = [
    "Markup",
    "fmt",
    "fmt_p",
    "fmt_signed",
    "table1_caption",
    "table1_footnote",
    "table2_caption",
    "effects_caption",
    "write_text_atomic",
    "write_bytes_atomic",
    "DECIMALS",
]

DECIMALS = 3  # the paper prints three decimals for Dice and HD95


@dataclass(frozen=True)
class Markup:
    esc: Callable[[str], str]
    pm: str
    dagger: str
    ddagger: str
    bold: Callable[[str], str]
    mm: str = "mm"


def fmt(x: float, decimals: int = DECIMALS) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{decimals}f}"


def fmt_signed(x: float, decimals: int = DECIMALS) -> str:
    if x is None or math.isnan(x):
        return "n/a"
    return f"{x:+.{decimals}f}"


def fmt_p(p: float) -> str:
    if p is None or math.isnan(p):
        return "-"
    if p < 0.001:
        return "<0.001"
    return f"{p:.3f}"


def _penalty_sentence(a: Analysis) -> str:
    by_region = ", ".join(f"{r} {a.penalties[r]}" for r in REGIONS)
    return (
        f"{a.penalty_total} of {a.n_evaluations} case evaluations (cases x regions x replicates over all "
        f"configurations) took the {HD95_PENALTY:.2f} mm penalty ({by_region})."
    )


def table1_caption(a: Analysis, m: Markup) -> str:
    reps = sorted({int(n) for n in a.n_replicates if n > 0})
    rep_text = "/".join(str(r) for r in reps) if reps else "0"
    cases = sorted({int(n) for n in a.n_cases if n > 0})
    case_text = "/".join(str(c) for c in cases) if cases else "0"
    if max(reps, default=0) <= 1:
        how = "(one fold/seed replicate per configuration, so no standard deviation). "
    else:
        how = (
            f"(mean of each fold/seed replicate, then the mean of those {rep_text} replicate means; "
            f"{m.pm} is the standard deviation over replicates, shown when there are several). "
        )
    head = (
        f"Results of experiment {m.esc(a.experiment)}: mean over the {case_text} test cases " + how +
        "Best value of each column in bold (highest Dice, lowest HD95). "
    )
    if a.metric_note:
        return head + m.esc(a.metric_note)
    return head + (
        f"HD95 (mm) is the 95th percentile of the pooled surface distances in both directions "
        f"(medpy's definition) with the BraTS 2017-2022 empty-mask rules: both masks empty gives 0, "
        f"exactly one empty gives {HD95_PENALTY:.2f} mm. " + _penalty_sentence(a)
    )


def table1_footnote(a: Analysis, m: Markup) -> str:
    base = m.esc(a.labels[a.baseline_index])
    text = (
        f"{m.dagger} different from the baseline {base} (two-sided paired Wilcoxon signed-rank test per case, "
        f"Holm-corrected within each column, {m.esc(f'p < {a.alpha:g}')})."
    )
    if a.is_ladder:
        text += f" {m.ddagger} different from the previous row (same test and correction)."
    missing = [m.esc(a.labels[i]) for i in range(len(a.labels)) if not a.has_data(i)]
    if missing:
        text += f" n/a: no finished cell yet ({', '.join(missing)})."
    if a.refused:
        text += f" Not run, refused by the trick registry: {m.esc('; '.join(a.refused))}."
    return text


def table2_caption(a: Analysis, m: Markup) -> str:
    i = a.table2_index
    why = " (the best by mean Dice over ET, WT and TC)" if i == a.best_index else ""
    return (
        f"Per-case statistics of {m.esc(a.labels[i])}{why} in experiment {m.esc(a.experiment)} over "
        f"{int(a.n_cases[i])} test cases (each case averaged over its {int(a.n_replicates[i])} replicate(s)); "
        f"StdDev is the sample standard deviation, quantiles interpolate linearly. HD95 in mm."
        + (f" {m.esc(a.metric_note)}" if a.metric_note else "")
    )


def effects_caption(a: Analysis, m: Markup, kind: str) -> str:
    lvl = m.esc(f"{100 * a.level:g}%")
    if kind == "main":
        what = "Main effect of each trick: mean with the trick on minus mean with it off"
    else:
        what = (
            "Two-way interactions: mean where both tricks are on or both off minus mean where exactly one is on, "
            "halved: (y(on,on) - y(off,on) - y(on,off) + y(off,off)) / 2"
        )
    return (
        f"{what}, over all configurations of the full factorial design of {m.esc(a.experiment)}; in brackets the "
        f"{lvl} case-bootstrap interval ({a.n_boot} resamples, seed {a.seed}). "
        f"Positive is better for Dice, negative is better for HD95 (mm)."
    )


write_bytes_atomic = atomic_write_bytes  # the report layer's name for it


def write_text_atomic(path: Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))
