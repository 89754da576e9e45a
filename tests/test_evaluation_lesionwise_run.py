"""Lesion-wise evaluation inside runs: the spec key, stored per-case values, MLflow metrics, and reports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_spec import evaluation_spec_text

from bench.errors import SpecError
from bench.runner.spec import parse_spec
from bench.store import queries as q

spec_text = evaluation_spec_text


def test_spec_evaluation_section() -> None:
    s = parse_spec(spec_text("a", '[evaluation]\nlesionwise = "MET"'), "a.toml", check_data=False)
    assert s.evaluation.lesionwise == "met"
    plain = parse_spec(spec_text("a"), "a.toml", check_data=False)
    assert plain.evaluation.lesionwise is None
    assert "evaluation" not in plain.core() and s.core()["evaluation"] == {"lesionwise": "met"}
    with pytest.raises(SpecError, match=r"a.toml: evaluation.lesionwise = 'brats' is not one of gli, ssa, ped"):
        parse_spec(spec_text("a", '[evaluation]\nlesionwise = "brats"'), "a.toml", check_data=False)
    with pytest.raises(SpecError, match=r"unknown key 'lesion' in \[evaluation\].*accepted: lesionwise"):
        parse_spec(spec_text("a", '[evaluation]\nlesion = "gli"'), "a.toml", check_data=False)


def _run(ws: Path, spec_file: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", "run", str(spec_file), "--workspace", str(ws), *extra],
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_run_stores_lesionwise_values_and_reports_rank_by_them(tmp_path: Path) -> None:
    spec_file = tmp_path / "lw.toml"
    spec_file.write_text(spec_text("lw", '[evaluation]\nlesionwise = "gli"'))
    ws = tmp_path / "ws"
    res = _run(ws, spec_file)
    assert res.returncode == 0, res.stderr
    url = f"sqlite:///{ws}/.bench/results.db"
    m = q.case_metrics(url, "lw")
    assert len(m) == 2 * 2 * 3
    assert m[list(q.LESION_COLUMNS)].notna().all().all()
    assert ((m["lesion_dice"] >= 0) & (m["lesion_dice"] <= 1)).all()
    assert ((m["num_tp"] + m["num_fn"]) >= 0).all() and (m["num_fp"] == m["num_fp"].round()).all()
    # a whole-image Dice of 1 with exactly one lesion each way is a lesion-wise Dice of 1 too; in general the
    # legacy Dice of the 2023 evaluator equals bench's whole-image Dice
    assert (abs(m["legacy_dice"] - m["dice"]) <= 1e-12).all()

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{ws}/.bench/mlflow.db")
    exp = client.get_experiment_by_name("lw")
    children = [r for r in client.search_runs([exp.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    bl = next(r for r in children if r.data.tags.get("label") == "BL")
    rows = m[(m.label == "BL") & (m.region == "ET")]
    assert bl.data.metrics["lesion_dice_et"] == pytest.approx(rows["lesion_dice"].mean())
    assert bl.data.metrics["lesion_hd95_et"] == pytest.approx(rows["lesion_hd95"].mean())
    assert {f"lesion_{k}_{r}" for k in ("dice", "hd95") for r in ("et", "tc", "wt")} <= set(bl.data.metrics)

    from bench.report.build import build_report

    out = tmp_path / "reports"
    r = build_report(url, "lw", out=out, formats=["markdown", "csv"], plots=False, pdf=False, workspace=ws,
                     n_boot=200, metric="lesion_dice")
    assert r.out_dir == out / "lw-lesionwise"
    md = (r.out_dir / "table1.md").read_text()
    assert "lesion-wise values of cohort GLI" in md and "1 dilation" not in md and "3 dilation(s)" in md
    assert "at most 50 mm^3" in md and "373.13" not in md
    bl_i = r.analysis.labels.index("BL")
    et = r.analysis.mean[bl_i, 0]  # Dice ET (the paper's column order ET, WT, TC)
    assert et == pytest.approx(rows["lesion_dice"].mean())

    # an experiment without lesion-wise values cannot be reported by them (one line, exit 2)
    plain = tmp_path / "plain.toml"
    plain.write_text(spec_text("plain"))
    assert _run(ws, plain, "--tracking", "none").returncode == 0
    rep = subprocess.run([sys.executable, "-m", "bench", "report", "plain", "--workspace", str(ws), "--metric",
                          "lesion_dice", "--out", str(out), "--no-plots", "--no-pdf"],
                         capture_output=True, text=True, timeout=300)
    assert rep.returncode == 2 and "has no lesion-wise values" in rep.stderr and "Traceback" not in rep.stderr
    assert q.case_metrics(url, "plain")["lesion_dice"].isna().all()
