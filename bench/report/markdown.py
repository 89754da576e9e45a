"""Markdown output (GitHub pipe tables): table1.md, table2.md, effects.md and a whole report.md."""

from __future__ import annotations

from typing import Any, cast

import numpy as np

from bench.report import text
from bench.report.appendix import Appendix
from bench.report.tables import METRICS, REGIONS, TABLE2_STATS, Analysis, metric_name

__all__ = ["table1", "table2", "stats_tables", "effects", "appendix", "document"]


def _esc(s: str) -> str:
    return str(s).replace("|", r"\|").replace("*", r"\*").replace("_", r"\_")


MARKUP = text.Markup(esc=_esc, pm="±", dagger="†", ddagger="‡", bold=lambda s: f"**{s}**")
_HEAD = "| {first} | " + " | ".join(f"Dice {r}" for r in REGIONS) + " | " + " | ".join(f"HD95 {r}" for r in REGIONS) + " |"


def _table(first: str, rows: list[list[str]], align: str = "---:") -> str:
    lines = [_HEAD.format(first=first), "|---|" + "|".join([align] * 6) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def table1(a: Analysis) -> str:
    best = a.best_mask(text.DECIMALS)
    sig_b, sig_p = a.significant("baseline"), a.significant("previous")
    rows = []
    for i, label in enumerate(a.labels):
        cells = [_esc(label)]
        for j in range(len(METRICS)):
            v = text.fmt(a.mean[i, j])
            if best[i, j]:
                v = f"**{v}**"
            if not np.isnan(a.sd[i, j]):
                v += f" ± {text.fmt(a.sd[i, j])}"
            v += ("†" if sig_b[i, j] else "") + ("‡" if sig_p[i, j] else "")
            cells.append(v)
        rows.append(cells)
    return (
        f"**Table 1.** {text.table1_caption(a, MARKUP)}\n\n{_table('Method', rows)}\n\n"
        f"{text.table1_footnote(a, MARKUP)}\n"
    )


def table2(a: Analysis) -> str:
    rows = [[s] + [text.fmt(float(cast(float, a.table2.loc[s, metric_name(m)]))) for m in METRICS]
            for s in TABLE2_STATS]
    return f"**Table 2.** {text.table2_caption(a, MARKUP)}\n\n{_table('', rows)}\n"


def stats_tables(a: Analysis) -> str:
    lvl = f"{100 * a.level:g}%"
    rows = [
        [_esc(label)]
        + [
            f"[{text.fmt(a.ci_lo[i, j])}, {text.fmt(a.ci_hi[i, j])}]" if a.has_data(i) else "n/a"
            for j in range(len(METRICS))
        ]
        for i, label in enumerate(a.labels)
    ]
    out = (
        f"**Confidence intervals.** {lvl} case-bootstrap intervals of the Table 1 means ({a.n_boot} resamples, "
        f"seed {a.seed}; test-case sampling only, run-to-run variance not included).\n\n{_table('Method', rows)}\n\n"
    )
    if (why := text.interval_note(a)) is not None:
        out = f"**Confidence intervals.** {why}.\n\n"
    families = [("the baseline " + _esc(a.labels[a.baseline_index]), a.p_baseline)]
    if a.is_ladder:
        families.append(("the previous row", a.p_previous))
    note = text.wilcoxon_note(a)
    if note:
        return out + f"**Paired tests.** {note}.\n\n"
    for against, p in families:
        rows = [[_esc(label)] + [text.fmt_p(p[i, j]) for j in range(6)] for i, label in enumerate(a.labels)]
        out += (
            f"**p-values against {against}** (two-sided paired Wilcoxon signed-rank per case, Holm-adjusted "
            f"within each column).\n\n{_table('Method', rows)}\n\n"
        )
    return out


def effects(a: Analysis) -> str:
    out = []
    lines = text.design_lines(a)
    if lines:
        out.append("**Design.** " + _esc(" ".join(lines)) + "\n")
    if a.effects is not None and not a.effects.empty:
        for kind, title in (("main", "Main effects"), ("interaction", "Two-way interactions")):
            sub = a.effects[a.effects["kind"] == kind]
            if sub.empty:
                continue
            rows = []
            for name in dict.fromkeys(sub["effect"]):
                r = sub[sub["effect"] == name].set_index("metric")
                rows.append([_esc(name)] + [text.effect_cell(r.loc[metric_name(m)]) if metric_name(m) in r.index
                                            else "n/a" for m in METRICS])
            out.append(f"**{title}.** {text.effects_caption(a, MARKUP, kind)}\n\n{_table('Trick', rows)}\n")
    elif a.effects_note:
        out.append(f"**Factorial effects.** {a.effects_note}.\n")
    if a.importances is not None and not a.importances.empty:
        lines = ["| Parameter | Importance |", "|---|---:|"]
        lines += [f"| {_esc(r.parameter)} | {r.importance:.3f} |" for r in cast(Any, a.importances.itertuples())]
        out.append(f"**Parameter importances** ({a.importances_note}).\n\n" + "\n".join(lines) + "\n")
    elif a.importances_note:
        out.append(f"**Parameter importances.** {a.importances_note}\n")
    return "\n".join(out)


def appendix(ap: Appendix) -> str:
    out = ["## Reproducibility", "", ap.summary_sentence(), ""]
    if ap.packages:
        out += ["| Package | Version |", "|---|---|"] + [f"| {k} | {v} |" for k, v in ap.packages.items()] + [""]
    if not ap.trick_cost.empty:
        out += [ap.trick_cost_caption, "", "| Trick | Cells on | CPU h | GPU h | s/cell on | s/cell off | extra s/cell |",
                "|---|---:|---:|---:|---:|---:|---:|"]
        out += [
            f"| {_esc(r.trick)} | {r.cells} | {r.cpu_hours:.3f} | {r.gpu_hours:.3f} | {text.fmt(r.mean_seconds_on, 1)} | "
            f"{text.fmt(r.mean_seconds_off, 1)} | {text.fmt_signed(r.extra_seconds, 1)} |"
            for r in cast(Any, ap.trick_cost.itertuples())
        ] + [""]
    if not ap.timings.empty:
        out += ["| Configuration | Fold | Seed | State | Device | Train s | Eval s |", "|---|---:|---:|---|---|---:|---:|"]
        out += [
            f"| {_esc(r.label)} | {r.fold} | {r.seed} | {r.state} | {r.device} | {text.fmt(r.train_seconds, 1)} | "
            f"{text.fmt(r.eval_seconds, 1)} |"
            for r in cast(Any, ap.timings.itertuples())
        ] + [""]
    if ap.spec:
        out += ["Experiment spec:", "", "```toml", ap.spec.rstrip(), "```", ""]
    return "\n".join(out)


def document(a: Analysis, ap: Appendix, figures: list[tuple[str, str]]) -> str:
    parts = [f"# Report: {a.experiment}", "", table1(a), table2(a), "## Statistics", "", stats_tables(a), effects(a)]
    if figures:
        parts += ["## Figures", ""] + [f"![{cap}]({name})\n\n*{cap}*\n" for name, cap in figures]
    parts.append(appendix(ap))
    return "\n".join(parts)
