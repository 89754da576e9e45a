"""The challenge-style ranking of ``bench report --rank``, rendered: Markdown, HTML, LaTeX, CSV and the rank
stability plot (a blob plot: how often each configuration got each rank over the bootstrap resamples).

The numbers come from :mod:`bench.analysis.ranking`; this module only formats them.
"""

from __future__ import annotations

import html as html_mod
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from bench.analysis.ranking import Ranking
from bench.report.text import fmt_p, write_bytes_atomic, write_text_atomic

__all__ = ["PLOT_STEM", "PLOT_CAPTION", "method_text", "stability_sentence", "markdown", "html", "latex",
           "plot", "write_files"]

PLOT_STEM = "rank_stability"


def _criteria_text(r: Ranking) -> str:
    metrics = list(dict.fromkeys(m for m, _ in r.criteria))
    regions = list(dict.fromkeys(reg for _, reg in r.criteria))
    dirs = ", ".join(f"{m.title} {'higher' if m.higher_is_better else 'lower'} is better" for m in metrics)
    return f"{len(r.criteria)} criteria ({' and '.join(m.title for m in metrics)} of {', '.join(regions)}; {dirs})"


def method_text(r: Ranking) -> str:
    """What was ranked and how, in one paragraph (the caption of the ranking table)."""
    runs = sorted(set(r.n_runs))
    runs_txt = (f"each configuration's value for a case is the mean over its {runs[0]} runs (fold x seed)"
                if len(runs) == 1 and runs[0] > 1 else
                "one run per configuration" if runs == [1] else
                f"each configuration's value for a case is the mean over its runs ({min(runs)} to {max(runs)})")
    dropped = (f" {r.dropped_cases} test case(s) not evaluated by every run of every configuration are left out."
               if r.dropped_cases else "")
    perm = (f"exact: all {2 ** r.n_cases} swaps of the {r.n_cases} cases enumerated" if r.exact
            else f"{r.n_permutations} random swaps, seed {r.seed}")
    return (
        f"Challenge-style ranking (BraTS rank-then-aggregate): on each of the {r.n_cases} test cases and each of "
        f"the {_criteria_text(r)}, the configurations are ranked (1 = best; ties share the smallest rank; a missing "
        f"value ranks last); {runs_txt}. Score = mean over cases of the mean rank over criteria (lower is "
        f"better); Rank orders the scores.{dropped} p vs next: PermRanker's one-sided permutation test that the "
        f"row ranks better than the next row (the two configurations' per-case scores swapped within cases: the "
        f"test cases are its unit, on run-averaged values; {perm}; not corrected for multiplicity). Bootstrap "
        f"rank: median and 95% interval of the rank over {r.n_boot} resamples (seed {r.seed}) of {r.covers}; "
        f"P(1st): share of resamples ranking it first."
    )


def stability_sentence(r: Ranking) -> str:
    """Whether the winner is stable: how often the first configuration stays first, and Kendall's tau."""
    order = r.order()
    first = [r.labels[i] for i in order if r.rank[i] == 1]
    freq = r.frequencies()[:, 0]
    tau = r.kendall_tau()
    winners = ", ".join(f"{lab} is first in {100 * freq[r.labels.index(lab)]:.1f}%" for lab in first)
    challenger = max((i for i in order if r.rank[i] != 1), key=lambda i: freq[i], default=None)
    ch = (f"; the most frequent other winner is {r.labels[challenger]} ({100 * freq[challenger]:.1f}%)"
          if challenger is not None and freq[challenger] > 0 else "")
    return (
        f"Stability: {winners} of the {r.n_boot} resamples of {r.covers}{ch}. Median Kendall's tau between the "
        f"ranking and the resampled rankings: {np.nanmedian(tau):.3f} (1 = the order never changes)."
    )


def _run_keys(r: Ranking) -> list[str]:
    return [f"f{f}/s{s}" for f, s in r.run_ranks]


def _rows(r: Ranking, esc: Callable[[str], str], pct: str = "%") -> tuple[list[str], list[list[str]]]:
    head = ["Rank", "Configuration", "Score", "Runs", "Bootstrap rank [95%]", "P(1st)", "p vs next"]
    if r.run_ranks:
        head.append("Rank per run (" + ", ".join(_run_keys(r)) + ")")
    rows = []
    for row in cast(Any, r.frame().itertuples(index=False)):
        cells = [str(row.rank), esc(row.label), f"{row.score:.3f}", str(row.runs),
                 f"{row.boot_median_rank:g} [{row.boot_rank_lo}, {row.boot_rank_hi}]", f"{100 * row.p_rank1:.1f}{pct}",
                 esc(fmt_p(row.p_vs_next)) if row.next else "-"]
        if r.run_ranks:
            i = r.labels.index(row.label)
            cells.append(", ".join(str(int(v[i])) for v in r.run_ranks.values()))
        rows.append(cells)
    return head, rows


def _criterion_rows(r: Ranking, esc: Callable[[str], str]) -> tuple[list[str], list[list[str]]]:
    head = ["Configuration"] + [f"{m.title} {reg}" for m, reg in r.criteria]
    rows = [[esc(r.labels[i])] + [f"{v:.2f}" for v in r.criterion_rank[i]] for i in r.order()]
    return head, rows


def _notes(r: Ranking) -> list[str]:
    out = []
    if r.no_data:
        out.append(f"Not ranked (no finished run): {', '.join(r.no_data)}.")
    if r.run_ranks:
        out.append("Rank per run: the same ranking computed on each run (fold/seed) that every configuration has, "
                   "so run-to-run changes of the order are visible next to the averaged ranking.")
    return out


def _md_esc(s: str) -> str:
    return str(s).replace("|", r"\|").replace("*", r"\*").replace("_", r"\_")


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    align = "|".join("---" if h == "Configuration" else "---:" for h in head)
    lines = ["| " + " | ".join(head) + " |", f"|{align}|"]
    return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in rows])


def markdown(r: Ranking, figure: str | None = None) -> str:
    """The ranking section of report.md (and ranking.md)."""
    head, rows = _rows(r, _md_esc)
    chead, crows = _criterion_rows(r, _md_esc)
    parts = [f"## Ranking ({r.metric})", "", f"**Ranking.** {_md_esc(method_text(r))}", "", _md_table(head, rows), "",
             _md_esc(stability_sentence(r)), ""]
    parts += [_md_esc(n) + "\n" for n in _notes(r)]
    parts += ["**Mean rank per criterion** (over test cases).", "", _md_table(chead, crows), ""]
    if figure:
        parts += [f"![{PLOT_CAPTION}]({figure})", "", f"*{_md_esc(plot_caption(r))}*", ""]
    return "\n".join(parts)


def _html_table(caption: str, head: list[str], rows: list[list[str]]) -> str:
    h = "".join(f"<th>{c}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><caption>{caption}</caption><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def html(r: Ranking, figure: str | None = None) -> str:
    """The ranking section of report.html."""
    esc = html_mod.escape
    head, rows = _rows(r, esc)
    chead, crows = _criterion_rows(r, esc)
    parts = [f"<h2>Ranking ({esc(r.metric)})</h2>",
             _html_table("<b>Ranking.</b> " + esc(method_text(r)), [esc(h) for h in head], rows),
             f"<p>{esc(stability_sentence(r))}</p>"]
    parts += [f"<p><small>{esc(n)}</small></p>" for n in _notes(r)]
    parts.append(_html_table("Mean rank per criterion (over test cases)", [esc(h) for h in chead], crows))
    if figure:
        parts.append(f"<figure><img src='{esc(figure)}' alt='{esc(PLOT_CAPTION)}'>"
                     f"<figcaption>{esc(plot_caption(r))}</figcaption></figure>")
    return "\n".join(parts) + "\n"


def latex(r: Ranking, figure: str | None = None) -> str:
    """The ranking section of report.tex (a table, the stability sentence and the plot when given)."""
    from bench.report.latex import escape

    head, rows = _rows(r, escape, pct=r"\%")
    head = [escape(h) for h in head]
    first = r"l" if max(len(lab) for lab in r.labels) <= 28 else r">{\raggedright\arraybackslash}p{4.2cm}"
    cols = "r" + first + "r" * 5 + (r">{\raggedright\arraybackslash}p{3.4cm}" if r.run_ranks else "")
    out = [r"\section*{Ranking (" + escape(r.metric) + ")}",
           r"\begin{table}[htbp]\centering\footnotesize",
           r"\caption{" + escape(method_text(r)) + "}",
           r"\begin{tabular}{" + cols + "}", r"\toprule", " & ".join(head) + r" \\", r"\midrule"]
    out += [" & ".join(row) + r" \\" for row in rows]
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}", escape(stability_sentence(r)), ""]
    out += [escape(n) + "\n" for n in _notes(r)]
    if figure:
        out.append("\\begin{figure}[htbp]\n\\centering\n"
                   f"\\includegraphics[width=\\linewidth,height=0.6\\textheight,keepaspectratio]{{{figure}}}\n"
                   f"\\caption{{{escape(plot_caption(r))}}}\n\\end{{figure}}")
    return "\n".join(out) + "\n"


PLOT_CAPTION = "Rank stability: how often each configuration got each rank over the bootstrap resamples"


def plot_caption(r: Ranking) -> str:
    return (f"{PLOT_CAPTION} ({r.n_boot} resamples of {r.covers}). Disc area: share of resamples with that rank; "
            "x: the rank of the full data; bar: 95% interval of the resampled ranks. Configurations in rank order.")


def plot(r: Ranking, out_dir: Path) -> list[Path]:
    """The blob plot (challengeR's stability plot) as ``rank_stability.png`` and ``.pdf``."""
    from matplotlib.figure import Figure

    order = r.order()
    n = len(order)
    freq = r.frequencies()
    lo, hi = r.rank_interval()
    fig = Figure(figsize=(max(4.5, 0.55 * n + 2.0), max(3.2, 0.35 * n + 1.8)))
    ax = fig.subplots()
    xs, ys, sizes = [], [], []
    for x, i in enumerate(order):
        for rk in range(n):
            if freq[i, rk] > 0:
                xs.append(x)
                ys.append(rk + 1)
                sizes.append(freq[i, rk])
    ax.scatter(xs, ys, s=np.asarray(sizes) * 600.0, color="tab:blue", alpha=0.55, linewidths=0)
    ax.vlines(range(n), lo[order], hi[order], color="k", linewidth=1.0)
    ax.scatter(range(n), r.rank[order], marker="x", color="k", s=40, zorder=3)
    for share in (0.1, 0.5, 1.0):  # disc sizes of the legend
        ax.scatter([], [], s=share * 600.0, color="tab:blue", alpha=0.55, linewidths=0, label=f"{100 * share:g}%")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, labelspacing=1.6, borderpad=1.0,
              frameon=False, title="resamples", title_fontsize=7)
    ax.set_xticks(range(n))
    ax.set_xticklabels([r.labels[i] for i in order], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(1, n + 1))
    ax.set_ylim(n + 0.7, 0.3)
    ax.set_ylabel("rank (1 = best)")
    ax.set_title(f"Rank over {r.n_boot} resamples of {r.covers.split(';')[0]}", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    paths = []
    for ext, kw in (("png", {"dpi": 110}), ("pdf", {})):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, **cast(dict[str, Any], kw))
        paths.append(write_bytes_atomic(out_dir / f"{PLOT_STEM}.{ext}", buf.getvalue()))
    return paths


def _csv(df: pd.DataFrame, index: bool = False) -> str:
    return df.to_csv(index=index, float_format="%.6g")


def write_files(r: Ranking, out_dir: Path, formats: Sequence[str] = ("markdown", "csv"), *, plots: bool = True
                ) -> list[Path]:
    """The plot, ranking.md (markdown), and ranking.csv, ranking_pvalues.csv, rank_frequencies.csv (csv)."""
    files = plot(r, out_dir) if plots else []
    if "csv" in formats:
        files.append(write_text_atomic(out_dir / "ranking.csv", _csv(r.frame())))
        files.append(write_text_atomic(out_dir / "ranking_pvalues.csv", _csv(r.pvalue_frame(), index=True)))
        freq = pd.DataFrame(r.frequencies(), columns=[f"rank{k + 1}" for k in range(len(r.labels))])
        freq.insert(0, "label", r.labels)
        files.append(write_text_atomic(out_dir / "rank_frequencies.csv", _csv(freq.iloc[r.order()])))
    if "markdown" in formats:
        files.append(write_text_atomic(out_dir / "ranking.md", markdown(r, f"{PLOT_STEM}.png" if plots else None)))
    return files
