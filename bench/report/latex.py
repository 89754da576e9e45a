"""LaTeX output: fragments for ``\\input`` (table1.tex, table2.tex, stats.tex, effects.tex, appendix.tex) and
a standalone ``report.tex`` that compiles with pdflatex.

Only packages of a basic TeX installation are required (graphicx, longtable, array); booktabs and geometry
are used when installed and replaced by plain rules / default margins otherwise, so the document compiles
on a minimal TeX. Fragments need ``booktabs`` (and ``longtable`` for tables of more than 40 rows).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, cast

import numpy as np

from bench.report import text
from bench.report.appendix import Appendix
from bench.report.tables import METRICS, REGIONS, TABLE2_STATS, Analysis, metric_name

__all__ = ["FRAGMENT_HEADER", "VERBATIM_COLUMNS", "escape", "table1", "table2", "stats_tables", "effects", "appendix",
           "document", "compile_pdf", "wrap_code_line"]

FRAGMENT_HEADER = (
    "% bench report, experiment {experiment}: a fragment for \\input.\n"
    "% Needs \\usepackage{{booktabs,array}} (and longtable for tables of more than 40 rows).\n"
)
_LONG = 40  # rows above which tables become longtables (a float cannot break across pages)

_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
}
_ESC_RE = re.compile("|".join(re.escape(k) for k in _ESCAPES))


def escape(s: str) -> str:
    """Escape LaTeX special characters; non-ASCII characters are replaced so pdflatex never stops on them."""
    s = str(s).replace("±", "+/-").replace("×", "x").replace("–", "-").replace("—", "-")
    s = s.encode("ascii", "replace").decode("ascii")
    return _ESC_RE.sub(lambda m: _ESCAPES[m.group(0)], s)


MARKUP = text.Markup(
    esc=escape,
    pm=r"$\pm$",
    dagger=r"$^{\dagger}$",
    ddagger=r"$^{\ddagger}$",
    bold=lambda s: rf"\textbf{{{s}}}",
)


def _begin_table(n_rows: int, cols: str, caption: str, label: str, header: list[str]) -> tuple[list[str], str]:
    """Opening lines of a (long)table and its closing line."""
    head = "\n".join(header)
    if n_rows > _LONG:
        lines = [
            r"{\scriptsize\setlength{\tabcolsep}{3pt}",
            rf"\begin{{longtable}}{{{cols}}}",
            rf"\caption{{{caption}}}\label{{{label}}}\\",
            r"\toprule",
            head,
            r"\midrule",
            r"\endfirsthead",
            r"\toprule",
            head,
            r"\midrule",
            r"\endhead",
            r"\bottomrule",
            r"\endlastfoot",
        ]
        return lines, r"\end{longtable}}"
    lines = [
        r"\begin{table}[htbp]",
        r"\centering",
        rf"\caption{{{caption}}}\label{{{label}}}",
        r"\small" if n_rows <= 12 else r"\footnotesize",
        rf"\begin{{tabular}}{{{cols}}}",
        r"\toprule",
        head,
        r"\midrule",
    ]
    return lines, ""


def _end_table(n_rows: int, closing: str, footnote: str | None) -> list[str]:
    if n_rows > _LONG:
        lines = [closing]
        if footnote:
            lines.append(rf"\par{{\footnotesize {footnote}}}\par")
        return lines
    lines = [r"\bottomrule", r"\end{tabular}"]
    if footnote:
        lines.append(rf"\par\smallskip{{\footnotesize {footnote}}}")
    lines.append(r"\end{table}")
    return lines


def _first_col(labels: list[str], width: str = "3.9cm") -> str:
    """Column spec of the label column: wraps long labels (a 2^6 grid has 60-character labels)."""
    if max((len(x) for x in labels), default=0) > 28:
        return rf">{{\raggedright\arraybackslash}}p{{{width}}}"
    return "l"


def _label(s: str) -> str:
    """A row label; a long one may wrap after each '+' (it sits in a p{} column, see _first_col)."""
    # 24, not 28: a 25-28 character label overflows the p{3.9cm} column it shares with longer ones.
    return escape(s).replace("+", r"+\allowbreak{}") if len(s) > 24 else escape(s)


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", s).strip("-") or "x"


def _metric_header() -> list[str]:
    return [
        r" & \multicolumn{3}{c}{Dice} & \multicolumn{3}{c}{HD95 (mm)} \\",
        r"\cmidrule(lr){2-4}\cmidrule(lr){5-7}",
    ]


def table1(a: Analysis) -> str:
    """Table 1 (the paper's layout) as a LaTeX fragment."""
    best = a.best_mask(text.DECIMALS)
    sig_b = a.significant("baseline")
    sig_p = a.significant("previous")
    n = len(a.labels)
    header = _metric_header() + ["Method & " + " & ".join(REGIONS + REGIONS) + r" \\"]
    lines, closing = _begin_table(
        n, _first_col(a.labels) + "c" * 6, text.table1_caption(a, MARKUP), f"tab:{_slug(a.experiment)}-table1",
        header,
    )
    for i, label in enumerate(a.labels):
        cells = []
        for j in range(len(METRICS)):
            v = text.fmt(a.mean[i, j])
            if best[i, j]:
                v = MARKUP.bold(v)
            if not np.isnan(a.sd[i, j]):
                v += rf" $\pm$ {text.fmt(a.sd[i, j])}"
            marks = (r"\dagger" if sig_b[i, j] else "") + (r"\ddagger" if sig_p[i, j] else "")
            if marks:
                v += f"$^{{{marks}}}$"
            cells.append(v)
        lines.append(_label(label) + " & " + " & ".join(cells) + r" \\")
    lines += _end_table(n, closing, text.table1_footnote(a, MARKUP))
    return "\n".join(lines) + "\n"


def table2(a: Analysis) -> str:
    """Table 2 (the paper's layout: Mean / StdDev / Median / quantiles per region) as a LaTeX fragment."""
    header = _metric_header() + [" & " + " & ".join(REGIONS + REGIONS) + r" \\"]
    lines, closing = _begin_table(
        len(TABLE2_STATS), "l" + "c" * 6, text.table2_caption(a, MARKUP), f"tab:{_slug(a.experiment)}-table2",
        header,
    )
    for stat in TABLE2_STATS:
        vals = [text.fmt(float(cast(float, a.table2.loc[stat, metric_name(m)]))) for m in METRICS]
        lines.append(stat + " & " + " & ".join(vals) + r" \\")
    lines += _end_table(len(TABLE2_STATS), closing, None)
    return "\n".join(lines) + "\n"


def stats_tables(a: Analysis) -> str:
    """Bootstrap intervals of every Table 1 mean and the Holm-adjusted p-values, as LaTeX tables."""
    n = len(a.labels)
    lvl = f"{100 * a.level:g}\\%"
    header = _metric_header() + ["Method & " + " & ".join(REGIONS + REGIONS) + r" \\"]
    cap = (
        f"{lvl} case-bootstrap intervals of the means of Table 1 ({a.n_boot} resamples of the test cases, seed "
        f"{a.seed}; each case averaged over its replicates first; test-case sampling only, run-to-run variance "
        f"not included)."
    )
    lines, closing = _begin_table(n, _first_col(a.labels) + "c" * 6, cap, f"tab:{_slug(a.experiment)}-ci", header)
    for i, label in enumerate(a.labels):
        cells = [
            f"[{text.fmt(a.ci_lo[i, j])}, {text.fmt(a.ci_hi[i, j])}]" if a.has_data(i) else "n/a"
            for j in range(len(METRICS))
        ]
        lines.append(_label(label) + " & " + " & ".join(cells) + r" \\")
    lines += _end_table(n, closing, None)
    out = "\n".join(lines) + "\n\n"
    if (why := text.interval_note(a)) is not None:
        out = rf"\paragraph{{Confidence intervals.}} {escape(why)}." + "\n\n"
    families = [("baseline", a.p_baseline, f"the baseline {escape(a.labels[a.baseline_index])}")]
    if a.is_ladder:
        families.append(("previous", a.p_previous, "the previous row"))
    note = text.wilcoxon_note(a)
    if note:
        out += rf"\paragraph{{Paired tests.}} {escape(note)}." + "\n\n"
        families = []
    for kind, p, against in families:
        cap = (
            f"Holm-adjusted p-values of the two-sided paired Wilcoxon signed-rank test per case against {against} "
            f"(cases paired on case, fold and seed, averaged over replicates; Holm within each column)."
        )
        lines, closing = _begin_table(
            n, _first_col(a.labels) + "c" * 6, cap, f"tab:{_slug(a.experiment)}-p-{kind}", header
        )
        for i, label in enumerate(a.labels):
            cells = [escape(text.fmt_p(p[i, j])) for j in range(len(METRICS))]
            lines.append(_label(label) + " & " + " & ".join(cells) + r" \\")
        lines += _end_table(n, closing, None)
        out += "\n".join(lines) + "\n\n"
    return out


def effects(a: Analysis) -> str:
    """Main effects and two-way interactions (full factorial), Optuna importances, or a note saying why not."""
    parts: list[str] = []
    lines_d = text.design_lines(a)
    if lines_d:
        parts.append(rf"\paragraph{{Design.}} {escape(' '.join(lines_d))}")
    if a.effects is not None and not a.effects.empty:
        header = _metric_header() + ["Trick & " + " & ".join(REGIONS + REGIONS) + r" \\"]
        for kind in ("main", "interaction"):
            sub = a.effects[a.effects["kind"] == kind]
            if sub.empty:
                continue
            names = list(dict.fromkeys(sub["effect"]))
            caption = text.effects_caption(a, MARKUP, kind)
            if not sub["run_measured"].all():  # the tag as a mark: six spelled-out tags overflow the page
                caption += rf" $^\dagger$: {text.CASES_ONLY_TAG}."
            lines, closing = _begin_table(
                len(names), _first_col(names, "2.8cm") + "c" * 6, caption, f"tab:{_slug(a.experiment)}-{kind}", header,
            )
            if not closing:  # a float: six interval columns and a wrapped label column fit with narrower gaps
                lines.insert(lines.index(r"\centering") + 1, r"\setlength{\tabcolsep}{3.5pt}")
            for name in names:
                rows = sub[sub["effect"] == name].set_index("metric")
                est, ci = [], []
                for m in METRICS:
                    if metric_name(m) not in rows.index:
                        est.append("n/a")
                        ci.append("")
                        continue
                    r = rows.loc[metric_name(m)]
                    star = "*" if bool(r["significant"]) else ""
                    est.append(text.fmt_signed(r["estimate"]) + star)
                    tag = "" if bool(r["run_measured"]) else r"$^\dagger$"
                    ci.append(rf"{{\scriptsize [{text.fmt_signed(r['ci_lo'])}, {text.fmt_signed(r['ci_hi'])}]{tag}}}")
                lines.append(_label(name) + " & " + " & ".join(est) + r" \\")
                lines.append(" & " + " & ".join(ci) + r" \\[2pt]")
            lines += _end_table(len(names), closing, None)
            parts.append("\n".join(lines))
    elif a.effects_note:
        parts.append(rf"\paragraph{{Factorial effects.}} {escape(a.effects_note)}.")
    if a.importances is not None and not a.importances.empty:
        n = len(a.importances)
        lines, closing = _begin_table(
            n, "lc", "Parameter importances of the Optuna study (" + escape(a.importances_note or "") + ").",
            f"tab:{_slug(a.experiment)}-importances", ["Parameter & Importance \\\\"],
        )
        for _, r in a.importances.iterrows():
            lines.append(f"{escape(str(r['parameter']))} & {float(r['importance']):.3f} \\\\")
        lines += _end_table(n, closing, None)
        parts.append("\n".join(lines))
    elif a.importances_note:
        parts.append(rf"\paragraph{{Parameter importances.}} {escape(a.importances_note)}")
    if not parts:
        parts.append(
            r"\paragraph{Factorial effects.} The design of this experiment is "
            + escape(a.design)
            + "; main effects and interactions are computed for full and fractional factorial designs only."
        )
    return "\n\n".join(parts) + "\n"


# Characters of \ttfamily at 10pt (5.25pt each) that fit the 17.4 cm text block of the preamble's geometry
# (93), less a margin for the fallback layout without geometry.sty.
VERBATIM_COLUMNS = 88


def wrap_code_line(line: str, width: int = VERBATIM_COLUMNS) -> list[str]:
    """``line`` cut into pieces of at most ``width`` characters, at a space where there is one.

    Continuations keep the line's indentation plus four spaces; a comment's continuations start with ``#``
    again, so a wrapped TOML comment is still a comment when copied back.
    """
    if len(line) <= width:
        return [line]
    indent = line[: len(line) - len(line.lstrip())]
    comment = line.lstrip().startswith("#")
    prefix = indent + ("#   " if comment else "    ")
    out: list[str] = []
    rest = line
    while len(rest) > width:
        cut = rest.rfind(" ", len(prefix) + 1, width + 1)
        if cut <= len(prefix):  # one long word: cut it where it must be cut
            piece, rest = rest[:width], rest[width:]
        else:
            piece, rest = rest[:cut], rest[cut + 1:]
        out.append(piece.rstrip())
        rest = prefix + rest.lstrip()
    out.append(rest)
    return out


def _verbatim(s: str, width: int = VERBATIM_COLUMNS) -> str:
    lines = []
    for line in s.encode("ascii", "replace").decode("ascii").replace("\t", "    ").splitlines():
        lines += [piece.replace(r"\end{verbatim}", r"\end {verbatim}") for piece in wrap_code_line(line, width)]
    return "\\begin{verbatim}\n" + "\n".join(lines) + "\n\\end{verbatim}\n"


def appendix(ap: Appendix) -> str:
    """The reproducibility appendix as LaTeX (spec, commits, packages, devices, seeds, timings, trick costs)."""
    out = [r"\section*{Reproducibility}"]
    # sloppypar: commit hashes and device names are long words that TeX cannot hyphenate.
    out.append(r"\begin{sloppypar}\paragraph{Provenance.} " + escape(ap.summary_sentence()) + r"\end{sloppypar}")
    if ap.packages:
        rows = [f"{escape(k)} & {escape(v)} \\\\" for k, v in ap.packages.items()]
        lines, closing = _begin_table(len(rows), "ll", "Package versions recorded by the cells.",
                                      "tab:packages", ["Package & Version \\\\"])
        out.append("\n".join(lines + rows + _end_table(len(rows), closing, None)))
    if not ap.trick_cost.empty:
        tc = ap.trick_cost
        rows = [
            f"{escape(str(r.trick))} & {int(r.cells)} & {r.cpu_hours:.3f} & {r.gpu_hours:.3f} & "
            f"{text.fmt(r.mean_seconds_on, 1)} & {text.fmt(r.mean_seconds_off, 1)} & "
            f"{text.fmt_signed(r.extra_seconds, 1)} \\\\"
            for r in cast(Any, tc.itertuples())
        ]
        lines, closing = _begin_table(
            len(rows), "lrrrrrr", escape(ap.trick_cost_caption), "tab:trick-cost",
            [r"Trick & Cells on & CPU h & GPU h & s/cell on & s/cell off & extra s/cell \\"],
        )
        out.append("\n".join(lines + rows + _end_table(len(rows), closing, None)))
    if not ap.timings.empty:
        t = ap.timings
        rows = [
            f"{escape(str(r.label))} & {r.fold} & {r.seed} & {escape(str(r.state))} & {escape(str(r.device))} & "
            f"{text.fmt(r.train_seconds, 1)} & {text.fmt(r.eval_seconds, 1)} \\\\"
            for r in cast(Any, t.itertuples())
        ]
        lines, closing = _begin_table(
            len(rows), "lrrllrr", "Every cell: state, device and wall-clock seconds of training and evaluation.",
            "tab:cells", [r"Configuration & Fold & Seed & State & Device & Train s & Eval s \\"],
        )
        out.append("\n".join(lines + rows + _end_table(len(rows), closing, None)))
    if ap.spec:
        out.append(r"\paragraph{Experiment spec.}" + "\n" + _verbatim(ap.spec))
    return "\n\n".join(out) + "\n"


_PREAMBLE = r"""\documentclass[10pt]{article}
\IfFileExists{geometry.sty}{\usepackage[margin=1.8cm]{geometry}}{}
\usepackage{graphicx}
\usepackage{array}
\usepackage{longtable}
\setlength{\LTcapwidth}{\textwidth}
\IfFileExists{booktabs.sty}{\usepackage{booktabs}}{%
  \newcommand{\toprule}{\hline}\newcommand{\midrule}{\hline}\newcommand{\bottomrule}{\hline}%
  \def\cmidrule(##1)##2{}}
\setlength{\tabcolsep}{4pt}
"""


def document(a: Analysis, ap: Appendix, figures: list[tuple[str, str]]) -> str:
    """A standalone LaTeX document with every table, the figures and the appendix.

    ``figures``: ``(file name relative to the document, caption)`` pairs (PDF or PNG next to report.tex).
    """
    body = [
        _PREAMBLE,
        r"\title{Bag of tricks benchmark: " + escape(a.experiment) + "}",
        r"\date{}",
        r"\begin{document}",
        r"\maketitle",
        r"\section*{Table 1}",
        table1(a),
        r"\section*{Table 2}",
        table2(a),
        r"\section*{Statistics}",
        stats_tables(a),
        effects(a),
    ]
    if figures:
        body.append(r"\section*{Figures}")
        for name, cap in figures:
            body.append(
                "\\begin{figure}[htbp]\n\\centering\n"
                f"\\includegraphics[width=\\linewidth,height=0.8\\textheight,keepaspectratio]{{{name}}}\n"
                f"\\caption{{{escape(cap)}}}\n\\end{{figure}}"
            )
    body.append(r"\clearpage")
    body.append(appendix(ap))
    body.append(r"\end{document}")
    return "\n".join(body) + "\n"


def compile_pdf(tex: Path, timeout: float = 120.0) -> Path:
    """Compile ``tex`` with pdflatex (twice, for references) in its folder; returns the PDF path.

    The PDF is built under a temporary job name and renamed into place, so an existing report.pdf is replaced
    only by a complete one. Raises ``RuntimeError`` with the end of the log when pdflatex fails, times out or
    is not installed.
    """
    exe = shutil.which("pdflatex")
    if exe is None:
        raise RuntimeError("pdflatex is not installed (apt-get install texlive-latex-base texlive-latex-recommended)")
    tex = Path(tex)
    job = f"{tex.stem}-build"  # no leading dot: TeX refuses to write dot files (openout_any=p)
    try:
        for _ in range(2):
            proc = subprocess.run(
                [exe, "-interaction=nonstopmode", "-halt-on-error", f"-jobname={job}", tex.name],
                cwd=tex.parent,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"pdflatex failed on {tex} (log: {tex.parent / (job + '.log')}):\n" + proc.stdout[-3000:])
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"pdflatex did not finish {tex} within {timeout:.0f} s") from exc
    pdf = tex.with_suffix(".pdf")
    os.replace(tex.parent / f"{job}.pdf", pdf)
    # The log stays as report.log: its overfull-box warnings say where a line ran past the margin.
    os.replace(tex.parent / f"{job}.log", tex.with_suffix(".log"))
    for ext in (".aux", ".out"):
        (tex.parent / f"{job}{ext}").unlink(missing_ok=True)
    return pdf
