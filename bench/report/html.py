"""A single self-describing ``report.html`` (tables, figures, appendix); no JavaScript, no external assets."""

from __future__ import annotations

import html
from typing import Any, cast

import numpy as np

from bench.report import text
from bench.report.appendix import Appendix
from bench.report.tables import METRICS, REGIONS, TABLE2_STATS, Analysis, metric_name

__all__ = ["document"]

MARKUP = text.Markup(
    esc=lambda s: html.escape(str(s)), pm="&plusmn;", dagger="&dagger;", ddagger="&Dagger;",
    bold=lambda s: f"<b>{s}</b>",
)
_CSS = """body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:90%}th,td{padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}thead{border-top:2px solid #000;border-bottom:1px solid #000}
tbody{border-bottom:2px solid #000}caption{caption-side:top;text-align:left;max-width:1100px;padding:4px 0}
img{max-width:100%}pre{background:#f4f4f4;padding:1em;overflow:auto}"""


def _table(caption: str, head: list[str], rows: list[list[str]], foot: str = "") -> str:
    h = "".join(f"<th>{c}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    foot_html = f"<p><small>{foot}</small></p>" if foot else ""
    return f"<table><caption>{caption}</caption><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>{foot_html}"


_METRIC_HEAD = [f"Dice {r}" for r in REGIONS] + [f"HD95 {r}" for r in REGIONS]


def document(a: Analysis, ap: Appendix, figures: list[tuple[str, str]]) -> str:
    esc = MARKUP.esc
    best = a.best_mask(text.DECIMALS)
    sig_b, sig_p = a.significant("baseline"), a.significant("previous")
    rows = []
    for i, label in enumerate(a.labels):
        r = [esc(label)]
        for j in range(len(METRICS)):
            v = text.fmt(a.mean[i, j])
            v = f"<b>{v}</b>" if best[i, j] else v
            if not np.isnan(a.sd[i, j]):
                v += f" &plusmn; {text.fmt(a.sd[i, j])}"
            v += ("&dagger;" if sig_b[i, j] else "") + ("&Dagger;" if sig_p[i, j] else "")
            r.append(v)
        rows.append(r)
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>Report {esc(a.experiment)}</title>"
        f"<style>{_CSS}</style></head><body><h1>Report: {esc(a.experiment)}</h1>",
        _table("<b>Table 1.</b> " + text.table1_caption(a, MARKUP), ["Method"] + _METRIC_HEAD, rows,
               text.table1_footnote(a, MARKUP)),
        _table(
            "<b>Table 2.</b> " + text.table2_caption(a, MARKUP),
            [""] + _METRIC_HEAD,
            [[s] + [text.fmt(float(cast(float, a.table2.loc[s, metric_name(m)]))) for m in METRICS]
             for s in TABLE2_STATS],
        ),
        "<h2>Statistics</h2>",
        f"<p><b>Confidence intervals.</b> {esc(why)}.</p>" if (why := text.interval_note(a)) is not None else _table(
            f"{100 * a.level:g}% case-bootstrap intervals ({a.n_boot} resamples, seed {a.seed}; test-case sampling "
            "only, run-to-run variance not included)",
            ["Method"] + _METRIC_HEAD,
            [
                [esc(label)] + [f"[{text.fmt(a.ci_lo[i, j])}, {text.fmt(a.ci_hi[i, j])}]" for j in range(6)]
                for i, label in enumerate(a.labels)
            ],
        ),
    ]
    families = [("the baseline " + esc(a.labels[a.baseline_index]), a.p_baseline)]
    if a.is_ladder:
        families.append(("the previous row", a.p_previous))
    note = text.wilcoxon_note(a)
    if note:
        parts.append(f"<p><b>Paired tests.</b> {esc(note)}.</p>")
        families = []
    for against, p in families:
        parts.append(
            _table(
                f"Holm-adjusted p-values, paired Wilcoxon signed-rank per case against {against}",
                ["Method"] + _METRIC_HEAD,
                [[esc(label)] + [esc(text.fmt_p(p[i, j])) for j in range(6)] for i, label in enumerate(a.labels)],
            )
        )
    lines = text.design_lines(a)
    if lines:
        parts.append(f"<p><b>Design.</b> {esc(' '.join(lines))}</p>")
    if a.effects is not None and not a.effects.empty:
        for kind in ("main", "interaction"):
            sub = a.effects[a.effects["kind"] == kind]
            if sub.empty:
                continue
            erows = []
            for name in dict.fromkeys(sub["effect"]):
                r = sub[sub["effect"] == name].set_index("metric")
                erows.append([esc(name)] + [esc(text.effect_cell(r.loc[metric_name(m)])) if metric_name(m) in r.index
                                            else "n/a" for m in METRICS])
            parts.append(_table(text.effects_caption(a, MARKUP, kind), ["Trick"] + _METRIC_HEAD, erows))
    elif a.effects_note:
        parts.append(f"<p><b>Factorial effects.</b> {esc(a.effects_note)}.</p>")
    if a.importances is not None and not a.importances.empty:
        parts.append(
            _table(
                f"Parameter importances ({esc(a.importances_note or '')})",
                ["Parameter", "Importance"],
                [[esc(r.parameter), f"{r.importance:.3f}"] for r in cast(Any, a.importances.itertuples())],
            )
        )
    elif a.importances_note:
        parts.append(f"<p><b>Parameter importances.</b> {esc(a.importances_note)}</p>")
    if figures:
        parts.append("<h2>Figures</h2>")
        parts += [f"<figure><img src='{esc(n)}' alt='{esc(c)}'><figcaption>{esc(c)}</figcaption></figure>" for n, c in figures]
    parts.append(f"<h2>Reproducibility</h2><p>{esc(ap.summary_sentence())}</p>")
    if ap.packages:
        parts.append(_table("Package versions", ["Package", "Version"], [[esc(k), esc(v)] for k, v in ap.packages.items()]))
    if not ap.trick_cost.empty:
        parts.append(
            _table(
                esc(ap.trick_cost_caption),
                ["Trick", "Cells on", "CPU h", "GPU h", "s/cell on", "s/cell off", "extra s/cell"],
                [
                    [esc(r.trick), str(r.cells), f"{r.cpu_hours:.3f}", f"{r.gpu_hours:.3f}", text.fmt(r.mean_seconds_on, 1),
                     text.fmt(r.mean_seconds_off, 1), text.fmt_signed(r.extra_seconds, 1)]
                    for r in cast(Any, ap.trick_cost.itertuples())
                ],
            )
        )
    if not ap.timings.empty:
        parts.append(
            _table(
                "Cells",
                ["Configuration", "Fold", "Seed", "State", "Device", "Train s", "Eval s"],
                [
                    [esc(r.label), str(r.fold), str(r.seed), esc(r.state), esc(r.device), text.fmt(r.train_seconds, 1),
                     text.fmt(r.eval_seconds, 1)]
                    for r in cast(Any, ap.timings.itertuples())
                ],
            )
        )
    if ap.spec:
        parts.append(f"<h3>Experiment spec</h3><pre>{esc(ap.spec)}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
