"""`bench report` on results databases filled through the ORM with known numbers: Table 1, Table 2, tests,
effects, every output format, exit codes, and the compiled PDF."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from known_results import DemoRow, fill_results, grid_rows, ladder_rows
from scipy import stats as sps

from bench.analysis.tests import holm
from bench.report.build import build_report, load_report_data
from bench.report.tables import analyse

REG = ("ET", "TC", "WT")  # database order
COLS = (("dice", "ET"), ("dice", "WT"), ("dice", "TC"), ("hd95", "ET"), ("hd95", "WT"), ("hd95", "TC"))
N_CASES = 10
SEEDS = (0, 1)


def _ladder_values() -> tuple[np.ndarray, np.ndarray]:
    """dice, hd95 of shape (config 3, seed 2, case N, region 3 in REG order)."""
    rng = np.random.default_rng(42)
    base = rng.uniform(0.55, 0.85, size=(1, 1, N_CASES, 3))
    dice = base + np.array([0.0, 0.04, 0.05]).reshape(3, 1, 1, 1) + rng.normal(0, 0.01, size=(3, 2, N_CASES, 3))
    hd = rng.uniform(2.0, 9.0, size=(1, 1, N_CASES, 3)) - np.array([0.0, 1.0, 0.5]).reshape(3, 1, 1, 1)
    hd = hd + rng.normal(0, 0.2, size=(3, 2, N_CASES, 3))
    dice[0, 1, 4, 0], hd[0, 1, 4, 0] = 0.0, 373.13  # one penalty: BL, seed 1, case 4, ET
    return np.clip(dice, 0, 1), hd


@pytest.fixture(scope="module")
def ladder_db(tmp_path_factory) -> tuple[str, np.ndarray, np.ndarray]:
    ws = tmp_path_factory.mktemp("ladder")
    url = f"sqlite:///{ws / 'results.db'}"
    dice, hd = _ladder_values()
    fill_results(url, "ladder-exp", "ladder", ladder_rows(["warmup", "fuse"]),
                 lambda ci, f, s, k, r: (dice[ci, s, k, REG.index(r)], hd[ci, s, k, REG.index(r)]),
                 seeds=SEEDS, cases=N_CASES)
    return url, dice, hd


def _grid_metric(ci: int, fold: int, seed: int, k: int, region: str, rows: list[DemoRow]) -> tuple[float, float]:
    t = rows[ci].toggles
    a, b = t["warmup"], t["focal"]
    dice = 0.6 + 0.05 * a + 0.02 * b + 0.03 * a * b + 0.01 * k + 0.003 * seed + 0.001 * REG.index(region)
    hd = 6.0 - 1.0 * a - 0.5 * b + 0.1 * k
    return dice, hd


@pytest.fixture(scope="module")
def grid_db(tmp_path_factory) -> tuple[str, list[DemoRow]]:
    ws = tmp_path_factory.mktemp("grid")
    url = f"sqlite:///{ws / 'results.db'}"
    rows = grid_rows(["warmup", "focal"])
    fill_results(url, "grid-exp", "full", rows, lambda *x: _grid_metric(*x, rows=rows), seeds=(0, 1, 2), cases=6,
                 device=lambda ci, f, s: "cuda:0" if rows[ci].toggles["warmup"] else "cpu",
                 train_seconds=lambda ci, f, s: 3600.0 * (1 + rows[ci].toggles["focal"]))
    return url, rows


def _col(dice: np.ndarray, hd: np.ndarray, m: tuple[str, str]) -> np.ndarray:
    return (dice if m[0] == "dice" else hd)[..., REG.index(m[1])]


def test_table1_means_sd_over_seeds_and_table2_by_hand(ladder_db):
    url, dice, hd = ladder_db
    a = analyse(load_report_data(url, "ladder-exp"))
    assert a.labels == ["BL", "BL+warmup", "BL+warmup+fuse"]
    for j, m in enumerate(COLS):
        v = _col(dice, hd, m)  # (config, seed, case)
        per_seed = v.mean(axis=2)
        np.testing.assert_allclose(a.mean[:, j], per_seed.mean(axis=1), rtol=1e-12)
        np.testing.assert_allclose(a.sd[:, j], per_seed.std(axis=1, ddof=1), rtol=1e-12)
    assert list(a.n_replicates) == [2, 2, 2] and list(a.n_cases) == [N_CASES] * 3
    # Table 2: the best by mean Dice, per case averaged over seeds
    obj = np.array([np.mean([_col(dice, hd, m)[i].mean() for m in COLS[:3]]) for i in range(3)])
    best = int(np.argmax(obj))
    assert a.table2_index == best
    for m in COLS:
        case = _col(dice, hd, m)[best].mean(axis=0)
        name = f"{'Dice' if m[0] == 'dice' else 'HD95'} {m[1]}"
        col = a.table2[name]
        assert col["Mean"] == pytest.approx(case.mean())
        assert col["StdDev"] == pytest.approx(case.std(ddof=1))
        assert col["Median"] == pytest.approx(np.median(case))
        assert col["25quantile"] == pytest.approx(np.percentile(case, 25))
        assert col["75quantile"] == pytest.approx(np.percentile(case, 75))


def test_wilcoxon_holm_against_scipy_by_hand(ladder_db):
    url, dice, hd = ladder_db
    a = analyse(load_report_data(url, "ladder-exp"))
    for j, m in enumerate(COLS):
        case = _col(dice, hd, m).mean(axis=1)  # (config, case): mean over seeds first
        raw_b = [sps.wilcoxon(case[i], case[0]).pvalue for i in (1, 2)]
        np.testing.assert_allclose(a.p_baseline_raw[1:, j], raw_b, rtol=1e-12)
        np.testing.assert_allclose(a.p_baseline[1:, j], holm(np.array(raw_b)), rtol=1e-12)
        raw_p = [sps.wilcoxon(case[i], case[i - 1]).pvalue for i in (1, 2)]
        np.testing.assert_allclose(a.p_previous[1:, j], holm(np.array(raw_p)), rtol=1e-12)
        assert np.isnan(a.p_baseline[0, j]) and np.isnan(a.p_previous[0, j])
    # Table 1 marks: the difference with test-case and run variance (two seeds each), Holm within each column
    from bench.analysis.effects import effect

    for j, m in enumerate(COLS):
        v = _col(dice, hd, m)  # (config, seed, case)
        raw = [effect("", [v[i], v[0]], np.array([1.0, -1.0]), n_boot=0).p for i in (1, 2)]
        np.testing.assert_allclose(a.p_marks_baseline[1:, j], holm(np.array(raw)), rtol=1e-10)
    # WT and TC gains are large and consistent over both seeds: marked; ET is not, because BL lost case 4's
    # ET in one of its two seeds, which makes its run-to-run variance too large for a claim from two seeds
    sig = a.significant("baseline")
    assert sig[1:, 1:3].all() and not sig[:, 0].any()


def test_outputs_bold_sd_marks_penalty_caption(ladder_db, tmp_path):
    url, dice, hd = ladder_db
    res = build_report(url, "ladder-exp", out=tmp_path, pdf=False, plots=True)
    a = res.analysis
    out = tmp_path / "ladder-exp"
    tex = (out / "table1.tex").read_text()
    md = (out / "table1.md").read_text()
    rows = {line.split(" & ")[0]: line for line in tex.splitlines() if line.startswith("BL")}
    assert set(rows) == {"BL", "BL+warmup", "BL+warmup+fuse"}
    for j, m in enumerate(COLS):
        col = np.round(a.mean[:, j], 3)
        best = int(np.argmax(col)) if m[0] == "dice" else int(np.argmin(col))
        for i, label in enumerate(a.labels):
            cell = rows[label].rstrip(" \\").split(" & ")[1 + j]
            assert cell.startswith(f"\\textbf{{{col[i]:.3f}}}") == (i == best), (label, m, cell)
            assert f"$\\pm$ {a.sd[i, j]:.3f}" in cell
    # dagger on the Dice WT and TC columns of the two rows above the baseline
    assert rows["BL+warmup"].count(r"\dagger") >= 2
    assert "1 of 180 case evaluations" in tex and "(ET 1, WT 0, TC 0)" in tex and "373.13" in tex
    assert "95th percentile of the pooled surface distances" in tex
    assert "**" in md and "±" in md and "†" in md and "1 of 180 case evaluations" in md
    for name in ("table2.tex", "stats.tex", "effects.tex", "appendix.tex", "report.tex", "report.md", "report.html",
                 "table1.csv", "table2.csv", "case_values.csv", "cells.csv", "dice_boxplot.png", "dice_boxplot.pdf",
                 "learning_curves.png", "learning_curves.pdf", "spec.toml"):
        assert (out / name).stat().st_size > 0, name
    assert not list(out.glob(".*.tmp"))
    import pandas as pd

    t1 = pd.read_csv(out / "table1.csv")
    np.testing.assert_allclose(t1["dice_ET"], a.mean[:, 0], rtol=1e-5)
    assert list(t1["penalties"]) == [1, 0, 0]
    # the effects fragment of a ladder says why there are no factorial effects
    assert "full and fractional factorial" in (out / "effects.tex").read_text()
    # appendix: commit, packages, device, seeds, per-cell training time
    app = (out / "appendix.tex").read_text()
    assert "0123456789ab" in app and "torch" in app and "2.13.0" in app and "cpu (6 cells)" in app
    assert "seeds: 0, 1" in app


def test_grid_main_effects_interaction_and_cost_by_hand(grid_db, tmp_path):
    url, rows = grid_db
    res = build_report(url, "grid-exp", out=tmp_path, pdf=False, formats=("csv", "latex", "markdown"))
    eff = res.analysis.effects.set_index(["effect", "metric"])
    # Dice ET = 0.6 + 0.05 a + 0.02 b + 0.03 ab + ... -> main a = 0.05 + 0.03/2, main b = 0.02 + 0.015,
    # interaction = 0.03 / 2 (the +-1 coding)
    assert eff.loc[("warmup", "Dice ET"), "estimate"] == pytest.approx(0.065)
    assert eff.loc[("focal", "Dice ET"), "estimate"] == pytest.approx(0.035)
    assert eff.loc[("warmup x focal", "Dice ET"), "estimate"] == pytest.approx(0.015)
    assert eff.loc[("warmup", "HD95 WT"), "estimate"] == pytest.approx(-1.0)
    assert eff.loc[("focal", "HD95 TC"), "estimate"] == pytest.approx(-0.5)
    assert eff.loc[("warmup x focal", "HD95 ET"), "estimate"] == pytest.approx(0.0, abs=1e-12)
    # the per-case effect is the same for every case (s_d = 0); the seed term 0.003 * seed is run-to-run
    # variance: s_run^2 = var(0, 0.003, 0.006) = 9e-6 in every configuration, so per side (2 configurations,
    # weight 1/2, 3 runs) 2 * 0.25 * 9e-6 / 3 = 1.5e-6 with 4 df; SE^2 = 3e-6, Satterthwaite df = 8
    half = sps.t.ppf(0.975, 8) * np.sqrt(3e-6)
    assert eff.loc[("warmup", "Dice ET"), "ci_lo"] == pytest.approx(0.065 - half)
    assert eff.loc[("warmup", "Dice ET"), "ci_hi"] == pytest.approx(0.065 + half)
    assert eff.loc[("warmup", "Dice ET"), "df"] == pytest.approx(8.0)
    assert bool(eff.loc[("warmup", "Dice ET"), "significant"]) and bool(eff.loc[("warmup", "Dice ET"), "run_measured"])
    out = tmp_path / "grid-exp"
    assert "+0.065" in (out / "effects.tex").read_text() and "+0.065" in (out / "effects.md").read_text()
    assert (out / "effects.csv").exists() and (out / "main_effects.png").exists()
    # compute cost: warmup cells ran on cuda (GPU hours), focal doubles the training time
    cost = pd_read(out / "trick_cost.csv").set_index("trick")
    assert cost.loc["warmup", "gpu_hours"] == pytest.approx(2 * 3 * (3600 * 1 + 3600 * 2 + 4) / 3600 / 2)
    assert cost.loc["warmup", "cpu_hours"] == 0.0
    assert cost.loc["focal", "extra_seconds"] == pytest.approx(3600.0)


def pd_read(p: Path):
    import pandas as pd

    return pd.read_csv(p)


def test_incomplete_grid_says_which_combinations_are_missing(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    rows = grid_rows(["warmup", "focal"])
    rows[-1].refused = "focal conflicts with warmup (test)"
    fill_results(url, "g", "full", rows, lambda *x: _grid_metric(*x, rows=rows), cases=4)
    res = build_report(url, "g", out=tmp_path / "r", pdf=False, plots=False, formats=("latex",))
    a = res.analysis
    assert a.effects is None and "1 of 4 combinations" in a.effects_note and "warmup+focal" in a.effects_note
    assert a.labels == ["BL", "BL+warmup", "BL+focal"]
    assert "refused by the trick registry" in (tmp_path / "r" / "g" / "table1.tex").read_text()


def test_optuna_importances_from_the_study_or_from_the_results_with_a_note(tmp_path):
    import optuna

    url = f"sqlite:///{tmp_path / 'r.db'}"
    rows = grid_rows(["warmup", "focal"])
    fill_results(url, "search", "optuna", rows, lambda *x: _grid_metric(*x, rows=rows), cases=4)
    # no Optuna storage in the workspace: reconstructed from the results database, and said so
    res = build_report(url, "search", out=tmp_path / "r", pdf=False, plots=False, formats=("markdown",),
                       workspace=tmp_path)
    imp = res.analysis.importances.set_index("parameter")["importance"]
    assert set(imp.index) == {"trick.warmup", "trick.focal"} and imp.sum() == pytest.approx(1.0)
    assert "could not be read" in res.analysis.importances_note
    assert "Parameter importances" in (tmp_path / "r" / "search" / "report.md").read_text()
    # a real study in the workspace journal (the runner names it bench:<experiment>): read from there
    from optuna.storages.journal import JournalFileBackend

    (tmp_path / ".bench").mkdir()
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(tmp_path / ".bench" / "optuna.journal")))
    study = optuna.create_study(study_name="bench:search", storage=storage, direction="maximize")
    for i in range(12):
        x, y = i % 3 / 2, (i * 7) % 5 / 4
        study.add_trial(optuna.trial.create_trial(
            params={"lr": x, "gamma": y}, value=5 * y + 0.1 * x,
            distributions={"lr": optuna.distributions.FloatDistribution(0, 1),
                           "gamma": optuna.distributions.FloatDistribution(0, 1)}))
    res = build_report(url, "search", out=tmp_path / "r", pdf=False, plots=False, formats=("csv",),
                       workspace=tmp_path)
    imp = res.analysis.importances.set_index("parameter")["importance"]
    assert set(imp.index) == {"lr", "gamma"} and imp["gamma"] > imp["lr"]
    assert "12 finished trials of study bench:search" in res.analysis.importances_note
    assert (tmp_path / "r" / "search" / "importances.csv").exists()


def test_cli_errors_are_one_line_exit_2(ladder_db, tmp_path, run_cli):
    url, _, _ = ladder_db
    cases = [
        (["report", "nope", "--results", url], "known experiments: ladder-exp"),
        (["report", "ladder-exp", "--results", url, "--baseline", "XX"], "known labels: BL, BL+warmup, BL+warmup+fuse"),
        (["report", "ladder-exp", "--results", url, "--config", "YY"], "known labels: BL, BL+warmup, BL+warmup+fuse"),
        (["report", "--results", f"sqlite:///{tmp_path / 'missing.db'}"], "no results database"),
        (["report", "ladder-exp", "--results", url, "--format", "latex,pdf"], "accepted: latex, markdown, csv, html"),
    ]
    for argv, expected in cases:
        r = run_cli(*argv, "--out", str(tmp_path / "o"))
        assert r.code == 2, argv
        lines = [ln for ln in r.err.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("bench: error:") and expected in lines[0], r.err
    # an experiment without any finished cell
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    fill_results(empty, "empty", "ladder", [DemoRow("BL", {}, refused=None)], lambda *x: (0, 0), cases=0)
    r = run_cli("report", "--results", empty, "--out", str(tmp_path / "o"))
    assert r.code == 2 and "no per-case metrics" in r.err and "BL" in r.err
    # and the working case: default experiment = the only one, files written
    r = run_cli("report", "--results", url, "--out", str(tmp_path / "ok"), "--no-pdf", "--format", "markdown")
    assert r.code == 0, r.err
    assert (tmp_path / "ok" / "ladder-exp" / "table1.md").exists() and "BL+warmup+fuse" in r.out


def _pdftext(pdf: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout


@pytest.mark.skipif(shutil.which("pdflatex") is None and not __import__("os").environ.get("CI"),
                    reason="pdflatex not installed (CI installs TeX)")
def test_standalone_pdf_compiles_and_shows_the_database_numbers(ladder_db, grid_db, tmp_path):
    for (url, name) in ((ladder_db[0], "ladder-exp"), (grid_db[0], "grid-exp")):
        res = build_report(url, name, out=tmp_path, pdf=True)
        pdf = tmp_path / name / "report.pdf"
        assert pdf in res.files and pdf.stat().st_size > 1000
        assert not list((tmp_path / name).glob("report-build.*"))  # built under a temporary name, then renamed
        txt = _pdftext(pdf)
        a = res.analysis
        data = load_report_data(url, name)
        cm = data.case_metrics
        for label in a.labels:
            line = next(ln for ln in txt.splitlines() if re.match(rf"\s*{re.escape(label)}\s+\d", ln))
            nums = [float(x) for x in re.findall(r"\d+\.\d{3}", line)]
            # the means straight from the database rows: mean per seed, then over seeds
            sub = cm[cm["label"] == label]
            for j, m in enumerate(COLS):
                per_rep = sub[sub["region"] == m[1]].groupby(["fold", "seed"])[m[0]].mean()
                assert nums[2 * j] == pytest.approx(round(per_rep.mean(), 3), abs=5e-4), (label, m, line)
                assert nums[2 * j + 1] == pytest.approx(round(per_rep.std(ddof=1), 3), abs=5e-4), (label, m)
        n_pen = int(cm["penalty"].sum())
        assert f"{n_pen} of {len(cm)} case evaluations" in " ".join(txt.split())
        assert "Mean" in txt and "25quantile" in txt and "75quantile" in txt


@pytest.mark.slow
def test_figures_are_logged_to_the_mlflow_parent_run_and_failures_are_only_notes(tmp_path):
    from bench.runner.tracking import Tracker, default_artifact_root, default_tracking_uri

    tracker = Tracker(default_tracking_uri(tmp_path), "logged", default_artifact_root(tmp_path))
    run_id = tracker.start_parent("launch", {}, {})
    assert run_id
    url = f"sqlite:///{tmp_path / 'r.db'}"
    fill_results(url, "logged", "ladder", ladder_rows(["warmup"]), lambda *x: (0.5 + 0.1 * x[0], 3.0), cases=4,
                 mlflow_parent_run_id=run_id)
    fill_results(url, "dangling", "ladder", ladder_rows(["warmup"]), lambda *x: (0.5 + 0.1 * x[0], 3.0), cases=4,
                 mlflow_parent_run_id="0" * 32)
    res = build_report(url, "logged", out=tmp_path / "r", pdf=False, formats=("csv",), workspace=tmp_path)
    assert any("figures logged to MLflow run" in n for n in res.notes), res.notes
    from mlflow import MlflowClient

    names = {f.path for f in MlflowClient(default_tracking_uri(tmp_path)).list_artifacts(run_id, "report")}
    assert {"report/dice_boxplot.png", "report/dice_boxplot.pdf", "report/learning_curves.png"} <= names
    res = build_report(url, "dangling", out=tmp_path / "r", pdf=False, formats=("csv",), workspace=tmp_path)
    assert any("not logged to MLflow" in n and "not found" in n for n in res.notes), res.notes
    assert (tmp_path / "r" / "dangling" / "table1.csv").exists()




@pytest.mark.postgres
def test_report_from_postgresql_equals_sqlite(ladder_db, pg_url, tmp_path):
    url, dice, hd = ladder_db
    fill_results(pg_url, "ladder-exp", "ladder", ladder_rows(["warmup", "fuse"]),
                 lambda ci, f, s, k, r: (dice[ci, s, k, REG.index(r)], hd[ci, s, k, REG.index(r)]),
                 seeds=SEEDS, cases=N_CASES)
    a_pg = build_report(pg_url, None, out=tmp_path / "pg", pdf=False, plots=False).analysis
    a_sq = analyse(load_report_data(url, "ladder-exp"))
    np.testing.assert_allclose(a_pg.mean, a_sq.mean, rtol=1e-12)
    np.testing.assert_allclose(a_pg.p_baseline, a_sq.p_baseline, rtol=1e-12)
    assert (tmp_path / "pg" / "ladder-exp" / "table1.tex").read_text().count(r"\textbf") == 6


def test_one_run_per_configuration_tags_every_interval_and_marks_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'one.db'}"
    rows = grid_rows(["warmup", "focal"])

    def metric(ci, fold, seed, k, region):  # a large, consistent warm-up effect on 8 cases
        return 0.5 + 0.2 * rows[ci].toggles["warmup"] + 0.01 * k, 5.0

    fill_results(url, "one-seed", "full", rows, metric, seeds=(0,), cases=8)
    res = build_report(url, "one-seed", out=tmp_path, pdf=False, plots=False, formats=("markdown",))
    a = res.analysis
    assert not a.runs_measured and not a.significant("baseline").any()
    assert not a.effects["run_measured"].any() and not a.effects["significant"].any()
    md = (tmp_path / "one-seed" / "report.md").read_text()
    main = [line for line in md.splitlines() if line.startswith("| warmup |")][0]
    assert main.count("(cases only)") == 6 and "+0.200" in main
    assert "No row is marked: with one run" in md and "run-to-run variance is not measured" in md
    assert "p-values against" in md  # 8 cases: the signed-rank test can reach 0.05, its table is shown


def _run_shift_db(tmp_path: Path, seeds_of: dict[str, tuple[int, ...]] | None = None) -> str:
    """Two seeds, 10 cases, no true effect: every run (configuration x seed) is shifted by about 0.02 as a
    whole, the case values are otherwise the same up to 0.002."""
    url = f"sqlite:///{tmp_path / 'shift.db'}"
    rows = ladder_rows(["warmup"])
    rng = np.random.default_rng(3)
    base = rng.uniform(0.6, 0.85, size=(10, 3))
    shift = {(0, 0): -0.02, (0, 1): 0.01, (1, 0): 0.02, (1, 1): 0.01}  # BL+warmup - BL = +0.02 by chance
    noise = rng.normal(0.0, 0.002, size=(2, 2, 10, 3))

    def metric(ci, fold, seed, k, region):
        return base[k, REG.index(region)] + shift[(ci, seed)] + noise[ci, seed, k, REG.index(region)], 5.0

    fill_results(url, "shift", "ladder", rows, metric, seeds=(0, 1), cases=10)
    return url


def test_table1_marks_include_run_variance_two_seeds_no_effect_marks_nothing(tmp_path):
    url = _run_shift_db(tmp_path)
    a = analyse(load_report_data(url, "shift"))
    # the per-case Wilcoxon test (cases averaged over seeds) sees ten +0.02 differences...
    assert a.p_baseline_raw[1, 0] < 0.01
    # ...but two runs per arm shifted by about 0.02 cannot support a claim: nothing is marked
    assert not a.significant("baseline").any() and not a.significant("previous").any()
    assert (a.p_marks_baseline[1, :3] > 0.05).all()
    build_report(url, "shift", out=tmp_path, pdf=False, plots=False, formats=("markdown",))
    text1 = (tmp_path / "shift" / "table1.md").read_text()
    assert "†" not in text1.split("\n\n")[1]  # the table itself
    assert "run-to-run variance" in text1 and "Satterthwaite" in text1


def test_table1_row_with_one_run_is_never_marked(tmp_path):
    url = f"sqlite:///{tmp_path / 'mixed.db'}"
    rows = ladder_rows(["warmup", "fuse"])

    def metric(ci, fold, seed, k, region):  # large consistent gains, tiny run noise
        return 0.5 + 0.1 * ci + 0.01 * k + 0.001 * seed, 5.0

    fill_results(url, "mixed", "ladder", rows, metric, seeds=(0, 1, 2), cases=8)
    from sqlalchemy import create_engine, text

    eng = create_engine(url)
    with eng.begin() as c:  # the last row keeps one run only
        cid = c.execute(text("select id from configurations where label = 'BL+warmup+fuse'")).scalar()
        c.execute(text("delete from case_metrics where cell_id in (select id from cells where configuration_id = :c"
                       " and seed > 0)"), {"c": cid})
        c.execute(text("delete from cells where configuration_id = :c and seed > 0"), {"c": cid})
    eng.dispose()
    a = analyse(load_report_data(url, "mixed"))
    assert list(a.n_replicates) == [3, 3, 1]
    sig = a.significant("baseline")
    assert sig[1, :3].all()  # three runs each, a 0.1 gain: marked
    assert not sig[2].any() and not a.significant("previous")[2].any()  # one run: never marked


def test_three_cases_say_why_instead_of_printing_bootstrap_intervals(tmp_path):
    url = f"sqlite:///{tmp_path / 'three.db'}"
    rows = ladder_rows(["warmup"])
    fill_results(url, "three", "ladder", rows, lambda ci, f, s, k, r: (0.5 + 0.1 * ci + 0.05 * k, 5.0),
                 seeds=(0, 1), cases=3)
    res = build_report(url, "three", out=tmp_path, pdf=False, plots=False, formats=("markdown", "latex", "html"))
    a = res.analysis
    assert not a.intervals_reachable and np.isnan(a.ci_lo).all() and np.isnan(a.ci_hi).all()
    for name in ("report.md", "stats.tex", "report.html"):
        body = (tmp_path / "three" / name).read_text()
        assert "bootstrap intervals are not shown" in body and "3 = 0.25, so it cannot reach 95" in body, name
        assert "case-bootstrap intervals of the" not in body.lower(), name
    # six cases: the interval table is back
    fill_results(url, "six", "ladder", rows, lambda ci, f, s, k, r: (0.5 + 0.1 * ci + 0.05 * k, 5.0),
                 seeds=(0, 1), cases=6)
    six = analyse(load_report_data(url, "six"))
    assert six.intervals_reachable and not np.isnan(six.ci_lo).any()


def test_validation_curve_panel_shows_the_regions_every_validation_recorded():
    import pandas as pd

    from bench.report.plots import validation_regions

    native = pd.DataFrame({"epoch": [1, 2], "train_loss": [0.9, 0.5], "val_dice_et": [0.2, 0.4],
                           "val_dice_wt": [0.5, 0.7], "val_dice_tc": [0.3, 0.6]})
    assert validation_regions(native) == ["ET", "WT", "TC"]
    # a training whose validation scored ET alone (nnU-Net's own per-class pseudo-Dice, without bench's region
    # counts): the panel shows ET instead of nothing; a row without validation does not count as a missing region
    nnunet = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [0.9, 0.5, 0.4], "val_dice_et": [0.1, None, 0.5],
                           "val_dice_class_ed": [0.6, None, 0.8]})
    assert validation_regions(nnunet) == ["ET"]
    partly = native.assign(val_dice_wt=[0.5, None])
    assert validation_regions(partly) == ["ET", "TC"]
    assert validation_regions(native[["epoch", "train_loss"]]) == []
