"""Specs choose later years' rules; runs store their values per case (``case_values``, migration 0006), the
query returns them, the MLflow means are computed from them; older specs keep their hash."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from tiny_spec import evaluation_spec_text

from bench.errors import SpecError
from bench.evaluation.per_case import case_rows, rule_means
from bench.evaluation.rules import get_rules
from bench.runner.spec import parse_spec

spec_text = evaluation_spec_text


def test_spec_rules_and_cohort() -> None:
    s = parse_spec(spec_text("a", '[evaluation]\nrules = "2025"\ncohort = "MENPRE"'), "a.toml", check_data=False)
    assert (s.evaluation.rules, s.evaluation.cohort, s.evaluation.lesionwise) == ("2025", "MenPre", None)
    assert s.core()["evaluation"] == {"rules": "2025", "cohort": "MenPre"}
    s = parse_spec(spec_text("a", "[evaluation]\nrules = 2024"), "a.toml", check_data=False)
    assert (s.evaluation.rules, s.evaluation.cohort) == ("2024", "gli")
    # 2023 by rules is the same spec as lesionwise; 2017 adds nothing: the hashes of older specs are kept
    old = parse_spec(spec_text("a", '[evaluation]\nlesionwise = "met"'), "a.toml", check_data=False)
    new = parse_spec(spec_text("a", '[evaluation]\nrules = "2023"\ncohort = "met"'), "a.toml", check_data=False)
    assert old.evaluation == new.evaluation and old.core() == new.core()
    assert old.core()["evaluation"] == {"lesionwise": "met"}
    plain = parse_spec(spec_text("a"), "a.toml", check_data=False)
    same = parse_spec(spec_text("a", '[evaluation]\nrules = "2017"'), "a.toml", check_data=False)
    assert "evaluation" not in plain.core() and plain.core_hash() == same.core_hash()


@pytest.mark.parametrize("body,needle", [
    ('rules = "2026"', "a.toml: evaluation.rules = '2026' is not one of '2017', '2023', '2024', '2025'"),
    ('rules = "2024"\ncohort = "ped"', "a.toml: evaluation.cohort: unknown cohort 'ped' for the BraTS 2024 rules"),
    ('cohort = "gli"', "a.toml: evaluation.cohort needs evaluation.rules"),
    ('rules = "2023"\ncohort = "met"\nlesionwise = "gli"', "evaluation.lesionwise = 'gli' and evaluation.cohort"),
])
def test_spec_bad_rules_name_the_key(body: str, needle: str) -> None:
    with pytest.raises(SpecError) as exc:
        parse_spec(spec_text("a", f"[evaluation]\n{body}"), "a.toml", check_data=False)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def _case() -> tuple[np.ndarray, np.ndarray]:
    gt = np.zeros((20, 18, 14), np.uint8)
    gt[4:12, 4:12, 3:9] = 2
    gt[6:10, 6:10, 4:8] = 1
    gt[7:9, 7:9, 5:7] = 4
    pred = np.roll(gt, 1, axis=0)
    pred[18, 1, 1] = 4
    return pred, gt


def test_case_rows_carry_the_rule_values_of_the_case() -> None:
    pred, gt = _case()
    rows = case_rows("c1", pred, gt, (1.0, 1.0, 1.5), lesionwise="gli", rules="2025", cohort="gli")
    assert [r["region"] for r in rows] == ["ET", "TC", "WT"] and "lesion_dice" in rows[0]
    vals = rows[0]["rule_values"]
    assert "rule_values" not in rows[1] and len(vals) == 6 * 15
    r = get_rules("2025")
    row = r.score(r.from_brats2019(pred), r.from_brats2019(gt), (1.0, 1.0, 1.5), "gli", "c1")[0]
    got = {(reg, m): v for _, _, reg, m, v in vals}
    assert got[("ET", "all_instance_fp")] == row["all_instance_fp_et"] == 1
    assert got[("ET", "lesionwise_dsc_mean")] == row["lesionwise_dsc_mean_et"]
    assert math.isnan(got[("RC", "lesionwise_dsc_mean")])  # no cavity on either side: empty, as the package
    means = rule_means(rows + case_rows("c2", gt, gt, (1, 1, 1), rules="2025"))
    assert means["brats2025_lesionwise_dsc_mean_et"] == pytest.approx((row["lesionwise_dsc_mean_et"] + 1) / 2)
    assert "brats2025_lesionwise_dsc_mean_rc" not in means
    assert "rule_values" not in case_rows("c", pred, gt, (1, 1, 1), rules="2023", lesionwise="gli")[0]


def test_finish_cell_stores_the_values_and_the_query_returns_them(tmp_path: Path) -> None:
    from bench.runner import state
    from bench.store import queries as q
    from bench.store.models import CaseMetric, CaseValue, Cell, Configuration, Experiment
    from bench.store.session import open_store

    store = open_store(f"sqlite:///{tmp_path}/r.db")
    with store.session() as s:
        e = Experiment(name="x", design="full", spec_toml="", spec_hash="h")
        s.add(e)
        s.flush()
        c = Configuration(experiment_id=e.id, label="BL", position=0, tricks=[], params={}, config_hash="k")
        s.add(c)
        s.flush()
        cell = Cell(experiment_id=e.id, configuration_id=c.id, fold=0, seed=0, state="running", worker="w")
        s.add(cell)
        s.flush()
        cell_id = cell.id
    pred, gt = _case()
    rows = case_rows("c1", pred, gt, (1, 1, 1), rules="2024", cohort="gli")
    assert state.finish_cell(store, cell_id, "w", rows, [])
    df = q.case_values(store, "x")
    assert len(df) == 6 * 10 and set(df["rules"]) == {"2024"} and set(df["label"]) == {"BL"}
    et = df[(df.region == "ET") & (df.metric == "LesionWise_Score_Dice")]["value"].iloc[0]
    r = get_rules("2024")
    ref = {x["Labels"]: x for x in r.score(r.from_brats2019(pred), r.from_brats2019(gt), (1, 1, 1), "gli")}
    assert et == ref["ET"]["LesionWise_Score_Dice"]
    with store.session() as s:
        assert s.query(CaseMetric).count() == 3 and s.query(CaseValue).count() == 60


@pytest.mark.slow
def test_run_stores_2025_values_and_reports_by_them(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from bench.report.build import build_report
    from bench.store import queries as q

    spec_file = tmp_path / "r25.toml"
    spec_file.write_text(spec_text("r25", '[evaluation]\nrules = "2025"'))
    ws = tmp_path / "ws"
    res = subprocess.run([sys.executable, "-m", "bench", "run", str(spec_file), "--workspace", str(ws)],
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    url = f"sqlite:///{ws}/.bench/results.db"
    m, v = q.case_metrics(url, "r25"), q.case_values(url, "r25")
    n_cases = m["case_id"].nunique()
    assert len(v) == 2 * n_cases * 6 * 15 and set(v["rules"]) == {"2025"} and set(v["cohort"]) == {"gli"}
    et = v[(v.region == "ET") & (v.metric == "global_dsc")].merge(
        m[m.region == "ET"], on=["cell_id", "case_id"])
    assert np.allclose(et["value"].fillna(1.0), et["dice"].where(et["value"].notna(), 1.0))  # global = Dice
    out = tmp_path / "reports"
    r = build_report(url, "r25", out=out, formats=["markdown"], plots=False, pdf=False, workspace=ws,
                     n_boot=100, metric="brats2025")
    assert r.out_dir == out / "r25-brats2025"
    md = (r.out_dir / "table1.md").read_text()
    assert "BraTS 2025 rules, config gli" in md and "lesionwise" in md and "_dsc" in md.replace("\\", ""), md
    plain = tmp_path / "plain.toml"
    plain.write_text(spec_text("plain"))
    assert subprocess.run([sys.executable, "-m", "bench", "run", str(plain), "--workspace", str(ws)],
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=600).returncode == 0
    res = subprocess.run([sys.executable, "-m", "bench", "report", "plain", "--workspace", str(ws), "--metric",
                          "brats2024", "--no-pdf", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "has no BraTS 2024 values" in res.stderr and "Traceback" not in res.stderr
