"""Shared wording and number formatting for every output format (LaTeX, Markdown, HTML, CSV).

The sentences are written once here with a small :class:`Markup` describing how a format spells the plus-minus
sign, the test marks and escaping, so the captions say the same thing everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.atomic import atomic_write_bytes
from bench.design import traits
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
    "effect_cell",
    "wilcoxon_note",
    "design_lines",
    "CASES_ONLY_TAG",
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
    if not a.runs_measured:
        text = (
            f"No row is marked: with one run (fold x seed) per configuration the run-to-run variance is not "
            f"measured, and the paired tests over {a.min_cases} test cases cover case sampling only."
        )
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
    lvl = f"{100 * a.level:g}%"
    if kind == "main":
        what = "Main effect of each trick: mean with the trick on minus mean with it off"
    else:
        what = (
            "Two-way interactions: mean where both tricks are on or both off minus mean where exactly one is on, "
            "halved: (y(on,on) - y(off,on) - y(on,off) + y(off,off)) / 2"
        )
    design = traits(a.design).two_level or "factorial"
    eff = a.effects
    measured = eff is not None and bool(eff["run_measured"].all())
    if measured:
        cover = (
            f"in brackets the {lvl} interval covering test-case sampling and run-to-run variance (seed/fold): "
            f"SE^2 = s_d^2/C + s_run,A^2/S_A + s_run,B^2/S_B with Satterthwaite degrees of freedom; "
            f"* marks an effect whose Holm-adjusted p (within each column) is below {a.alpha:g}"
        )
    else:
        cover = (
            f"in brackets the {lvl} interval of test-case sampling only (s_d^2/C): with one run per "
            f"configuration the run-to-run variance is not measured, each such interval is tagged "
            f"'{CASES_ONLY_TAG}', and no effect is marked significant"
        )
    alias = ""
    if eff is not None and bool(eff["aliased"].any()):
        alias = ("; a row named 'a + b x c' is an alias sum: the design cannot tell its terms apart, it estimates "
                 "their sum")
    return (
        f"{what}, over all configurations of the {design} design of {m.esc(a.experiment)}; {m.esc(cover)}{m.esc(alias)}. "
        f"Two-way bootstrap over runs and cases in the CSV ({a.n_boot} resamples). "
        f"Positive is better for Dice, negative is better for HD95 (mm)."
    )


CASES_ONLY_TAG = "cases only"


def effect_cell(row: Any) -> str:
    """``+0.123 [+0.050, +0.200]`` plus ``*`` when significant, or the case-only tag next to the interval."""
    out = f"{fmt_signed(row['estimate'])} [{fmt_signed(row['ci_lo'])}, {fmt_signed(row['ci_hi'])}]"
    if not bool(row["run_measured"]):
        return out + f" ({CASES_ONLY_TAG})"
    return out + ("*" if bool(row["significant"]) else "")


def wilcoxon_note(a: Analysis) -> str | None:
    """With fewer than about 6 cases the signed-rank test cannot reach alpha: the sentence that replaces the
    p-value tables (None when the test can reach it)."""
    if a.wilcoxon_reachable or a.min_cases == 0:
        return None
    from bench.analysis.tests import wilcoxon_min_p

    n = a.min_cases
    return (
        f"Paired tests are not shown: with {n} test case{'s' if n != 1 else ''} the smallest two-sided p-value a "
        f"Wilcoxon signed-rank test can reach is 2/2^{n} = {wilcoxon_min_p(n):.3g}, so it cannot reach "
        f"p < {a.alpha:g} whatever the data (at least 6 cases are needed)"
    )


def design_lines(a: Analysis) -> list[str]:
    """A fractional design's description: design, generators, defining relation and alias chains."""
    info = a.design_info
    if not info:
        return []
    letters = ", ".join(f"{k} = {v}" for k, v in info["factors"].items())
    out = [f"{info['design']} ({letters})."]
    if info["generators"]:
        out.append(f"Generators: {', '.join(info['generators'])}; defining relation {info['defining_relation']}.")
    if info.get("foldover"):
        out.append(f"With its foldover: {info['combined_runs']} runs, resolution {info['combined_resolution']}.")
    chains = [c for c in info["alias_chains"] if "=" in c]
    if chains:
        out.append("Alias chains (up to three-factor terms): " + "; ".join(chains) + ".")
    return out


write_bytes_atomic = atomic_write_bytes  # the report layer's name for it


def write_text_atomic(path: Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))
