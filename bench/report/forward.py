"""Reports of ``design = "forward"``: Table 1 from the confirmation runs only, the selection path apart.

The selection steps chose the ladder on validation Dice; the winner of each step is the candidate that looked
best on those very runs, so its selection gain is biased upwards. Table 1 therefore reads only the cells of
the confirmation stage (fresh seeds, held-out test cases) of the rungs the fixed-sequence test confirmed; the
selection path is an appendix table (``selection.md`` / ``selection.csv``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pandas as pd

from bench.report.tables import ReportData
from bench.report.text import write_text_atomic

__all__ = ["ForwardReport", "confirmation_data", "selection_frame", "write_selection"]


@dataclasses.dataclass
class ForwardReport:
    path: list[Any]
    confirmations: list[Any]
    ladder: list[str]
    note: str | None = None


def _design(data: ReportData) -> Any:
    from bench.design.forward import Forward
    from bench.runner.spec import parse_spec

    spec = parse_spec(str(data.record.get("spec") or ""), f"experiment {data.experiment} (stored spec)",
                      check_data=False)
    return Forward(spec)


def confirmation_data(data: ReportData) -> tuple[ReportData, ForwardReport]:
    """The report data restricted to the confirmed rungs' confirmation cells, shown as a ladder."""
    from bench.design import Results

    fw = _design(data)
    res = Results(data.cells, data.case_metrics)
    steps = fw.path(res)
    conf = fw.confirmations(res)
    confirmed = [c for c in conf if c.status == "confirmed"]
    labels = [fw.row([]).label] + [c.label for c in confirmed]
    seeds = set(fw.confirm_seeds)
    cells = data.cells[data.cells["label"].isin(labels) & data.cells["seed"].isin(seeds)]
    note = None
    if cells.empty:  # nothing was selected: the ladder is the baseline, only ever run in selection
        cells = data.cells[data.cells["label"] == labels[0]]
        note = "forward: no trick was selected; Table 1 shows the baseline from its selection runs"
    ids = set(cells["cell_id"])
    metrics = data.case_metrics[data.case_metrics["cell_id"].isin(ids)]
    confs = data.configurations[data.configurations["label"].isin(labels)].copy()
    order = {lab: i for i, lab in enumerate(labels)}
    confs["position"] = [order[lab] for lab in confs["label"]]
    confs = confs.sort_values("position").reset_index(drop=True)
    record = {**data.record, "design": "ladder", "baseline": labels[0]}
    out = dataclasses.replace(data, configurations=confs, cells=cells.reset_index(drop=True),
                              case_metrics=metrics.reset_index(drop=True), record=record)
    return out, ForwardReport(steps, conf, [c.trick for c in confirmed], note)


def selection_frame(rep: ForwardReport) -> pd.DataFrame:
    """One row per candidate of every selection step, then one per confirmation test."""
    rows = []
    for s in rep.path:
        for c in s.candidates:
            e = c.estimate
            rows.append({"stage": f"select-{s.number}", "from": s.base_label, "configuration": c.label,
                         "gain": None if e is None else e.estimate, "se": None if e is None else e.se,
                         "p": c.p, "p_holm": c.p_holm, "outcome": "added" if s.added == c.trick else ""})
    for c in rep.confirmations:
        e = c.estimate
        rows.append({"stage": f"confirm-{c.number}", "from": c.previous, "configuration": c.label,
                     "gain": None if e is None else e.estimate, "se": None if e is None else e.se, "p": c.p,
                     "p_holm": None, "outcome": c.status})
    return pd.DataFrame(rows, columns=["stage", "from", "configuration", "gain", "se", "p", "p_holm", "outcome"])


def _fmt(v: Any, spec: str) -> str:
    return "" if v is None or (isinstance(v, float) and v != v) else format(v, spec)


def selection_markdown(rep: ForwardReport) -> str:
    df = selection_frame(rep)
    lines = ["# Selection path (appendix)", "",
             "Selection: validation Dice on the cross-validation folds, paired by fold and seed, one-sided, Holm "
             "across the candidates of a step. Confirmation: test cases, fresh seeds, one-sided at 0.05 as a "
             "fixed sequence. The selection gains of the winners are biased upwards (chosen on the same runs); "
             "Table 1 uses the confirmation runs only.", "",
             "| stage | from | configuration | gain | SE | p | p (Holm) | outcome |",
             "|---|---|---|---:|---:|---:|---:|---|"]
    for r in df.itertuples():
        lines.append(f"| {r.stage} | {r._2} | {r.configuration} | {_fmt(r.gain, '+.4f')} | {_fmt(r.se, '.4f')} | "
                     f"{_fmt(r.p, '.3g')} | {_fmt(r.p_holm, '.3g')} | {r.outcome} |")
    return "\n".join(lines) + "\n"


def write_selection(rep: ForwardReport, out_dir: Path, formats: Any) -> list[Path]:
    files = []
    if "markdown" in formats or "html" in formats or "latex" in formats:
        files.append(write_text_atomic(out_dir / "selection.md", selection_markdown(rep)))
    if "csv" in formats:
        files.append(write_text_atomic(out_dir / "selection.csv", selection_frame(rep).to_csv(index=False)))
    return files
