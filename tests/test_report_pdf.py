"""The report PDF's reproducibility appendix fits the page: a spec with long comment and array lines and long
labels compiles with no overfull box after the appendix starts, and pdftotext finds every word of the spec."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from known_results import fill_results, grid_rows

from bench.report.build import build_report
from bench.report.latex import VERBATIM_COLUMNS, _verbatim, wrap_code_line
from bench.runner.spec import packaged_specs

needs_tex = pytest.mark.skipif(shutil.which("pdflatex") is None and not os.environ.get("CI"),
                               reason="pdflatex not installed (CI installs TeX)")

LONG_COMMENT = ("# A comment far longer than the text block is wide, as the packaged specs have: it explains why "
                "these tricks and budgets were chosen, names the paper's section and the hardware it was sized for, "
                "and ends with a_single_unbreakable_token_" + "x" * 110 + " done.")
LONG_ARRAY = ('factors = ["warmup", "heuristic_sampling", "focal_loss", "patch_fusion", "hard_mining", '
              '"multitask", "random_patch_size", "model_fusion"]')


def _overfull(log: str) -> list[tuple[float, int]]:
    """(points too wide, first source line) of every overfull \\hbox in a pdflatex log."""
    out = []
    for m in re.finditer(r"Overfull \\hbox \(([\d.]+)pt too wide\) (?:in paragraph at lines (\d+)--\d+|"
                         r"in alignment at lines (\d+)--\d+|detected at line (\d+))", log):
        line = next(int(g) for g in m.groups()[1:] if g)
        out.append((float(m.group(1)), line))
    return out


def test_wrapped_lines_fit_and_lose_nothing() -> None:
    for line in (LONG_COMMENT, LONG_ARRAY, "    " + LONG_ARRAY, "short = 1", ""):
        pieces = wrap_code_line(line)
        assert all(len(p) <= VERBATIM_COLUMNS for p in pieces), pieces
        assert "".join(p.strip().removeprefix("#").replace(" ", "") for p in pieces) == \
            line.strip().removeprefix("#").replace(" ", "").replace("#", "")
    comment = wrap_code_line(LONG_COMMENT)
    assert len(comment) > 2 and all(p.startswith("#") for p in comment)  # still a TOML comment
    assert wrap_code_line(LONG_ARRAY)[1].startswith("    ")
    assert wrap_code_line("    " + LONG_ARRAY)[1].startswith("        ")  # the indentation is kept
    assert r"\end {verbatim}" in _verbatim("x = '\\end{verbatim}'")


@needs_tex
def test_appendix_has_no_line_wider_than_the_text_block(tmp_path: Path) -> None:
    spec = packaged_specs()["demo"].read_text() + "\n" + LONG_COMMENT + "\n" + LONG_ARRAY + "\n"
    names = ["warmup", "heuristic_sampling", "focal_loss", "patch_fusion"]
    rows = grid_rows(names)
    url = f"sqlite:///{tmp_path / 'results.db'}"
    fill_results(url, "wide-exp", "full", rows, lambda ci, f, s, k, r: (0.5 + 0.01 * ci + 0.001 * k, 5.0),
                 seeds=(0,), cases=3, spec=spec, factors=names)
    build_report(url, "wide-exp", out=tmp_path, pdf=True)
    folder = tmp_path / "wide-exp"
    tex = (folder / "report.tex").read_text()
    start = next(i for i, line in enumerate(tex.splitlines(), 1) if line.startswith(r"\section*{Reproducibility}"))
    log = (folder / "report.log").read_text(errors="replace")
    assert "Output written" in log
    wide = [(pt, line) for pt, line in _overfull(log) if line >= start]
    assert not wide, f"overfull boxes in the appendix (points, report.tex line): {wide}"

    text = subprocess.run(["pdftotext", "-layout", str(folder / "report.pdf"), "-"], capture_output=True,
                          text=True, check=True).stdout
    appendix = text[text.index("Reproducibility"):]
    # Every word of the spec is on the page, none cut at the margin (the wrapped comment included).
    def unquoted(text: str) -> list[str]:  # cmtt's quotes come back from pdftotext as curly ones
        return re.sub("[`'\u2018\u2019]", "", text).split()

    words = set(unquoted(appendix))
    missing = [w for w in unquoted(spec) if w not in words and len(w) < VERBATIM_COLUMNS]
    assert not missing, missing[:10]
    assert "a_single_unbreakable_token_" in appendix and "x" * 40 in appendix


@needs_tex
@pytest.mark.parametrize("seeds", [(0,), (0, 1)])
def test_effect_tables_fit_the_text_block(tmp_path: Path, seeds: tuple[int, ...]) -> None:
    """Main effects and interactions of a 2^4 grid: with one seed every interval carries the cases-only mark."""
    names = ["warmup", "heuristic_sampling", "focal_loss", "patch_fusion"]
    url = f"sqlite:///{tmp_path / 'results.db'}"
    fill_results(url, "fx", "full", grid_rows(names), lambda ci, f, s, k, r: (0.5 + 0.01 * ci + 0.001 * k + 0.01 * s,
                                                                              5.0),
                 seeds=seeds, cases=3, spec=packaged_specs()["demo"].read_text(), factors=names)
    build_report(url, "fx", out=tmp_path, pdf=True)
    tex = (tmp_path / "fx" / "report.tex").read_text()
    assert r"\label{tab:fx-interaction}" in tex
    assert (r"$^\dagger$: cases only" in tex) == (len(seeds) == 1)
    log = (tmp_path / "fx" / "report.log").read_text(errors="replace")
    assert "Output written" in log and not _overfull(log), _overfull(log)
