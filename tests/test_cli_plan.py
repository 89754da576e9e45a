"""``bench plan``: configurations, cells, trainings, cost, the design's description, --power; and a tiny
fractional design run end to end with ``bench run`` and ``bench report``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps
from tiny_spec import TINY_DATA_MODEL

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "runs" / "fractional.toml"


def test_plan_json_of_the_packaged_fractional_spec(run_cli, tmp_path):
    r = run_cli("plan", str(SPEC), "--json", "--workspace", str(tmp_path))
    assert r.code == 0, r.err
    d = json.loads(r.out)
    assert d["design"] == "fractional" and d["cells"] == 16 and len(d["configurations"]) == 8
    toggles = np.array([[c["toggles"][f] for f in d["factors"]] for c in d["configurations"]])
    z = 2 * toggles - 1
    assert np.all(z[:, 3] == z[:, 0] * z[:, 1] * z[:, 2])  # D = ABC
    assert np.allclose(z.T @ z, 8 * np.eye(4))  # orthogonal, balanced
    assert d["trainings"] == 16 and d["cost"]["iterations"] == 16 * 60
    desc = d["describe"]
    assert desc["generators"] == ["D=ABC"] and desc["resolution"] == 4 and desc["defining_relation"] == "I = ABCD"
    assert "AB = CD" in desc["alias_chains"]
    names = {e["name"] for e in desc["estimable"]}
    assert "warmup x heuristic_sampling + focal_loss x patch_fusion" in names and "warmup" in names
    assert not (tmp_path / ".bench").exists()  # nothing written


def test_plan_text_shows_aliases_and_validates_like_run(run_cli, tmp_path):
    r = run_cli("plan", str(SPEC), "--workspace", str(tmp_path))
    assert r.code == 0 and "alias chains:" in r.out and "(alias sum)" in r.out and "\nBL+warmup+heur+focal " not in r.out
    assert "8 configurations x 1 fold(s) x 2 seed(s) = 16 cells, 16 trainings" in r.out
    bad = tmp_path / "bad.toml"
    bad.write_text(SPEC.read_text().replace('"patch_fusion"]', '"hard_mining"]'))
    for cmd in ("plan", "run"):
        r = run_cli(cmd, str(bad), "--workspace", str(tmp_path), *(["--tracking", "none"] if cmd == "run" else []))
        assert r.code == 2 and r.err.count("\n") == 1 and "'focal_loss' and 'hard_mining'" in r.err, r.err
    r = run_cli("plan", str(SPEC), "--trials", "3")
    assert r.code == 2 and "--trials is only used by Optuna searches" in r.err


def _pilot(tmp_path):
    """A 2-configuration pilot (3 seeds, 6 cases): run-to-run term 0.01 * seed, no residual or interaction."""
    from known_results import fill_results, grid_rows

    url = f"sqlite:///{tmp_path / 'pilot.db'}"
    rows = grid_rows(["warmup"])

    def metric(ci, fold, seed, k, region):
        return 0.6 + 0.05 * rows[ci].toggles["warmup"] + 0.01 * seed + 0.02 * k, 5.0

    fill_results(url, "pilot", "full", rows, metric, seeds=(0, 1, 2), cases=6)
    return url


def test_plan_power_from_a_pilot_matches_the_formula(run_cli, tmp_path):
    url = _pilot(tmp_path)
    r = run_cli("plan", str(SPEC), "--json", "--power", "0.02", "--pilot", "pilot", "--results", url)
    assert r.code == 0, r.err
    p = json.loads(r.out)["power"]
    mean = [e for e in p["by_metric"] if e["metric"].startswith("mean")][0]
    assert mean["s_run"] == pytest.approx(0.01) and mean["s_res"] == pytest.approx(0.0, abs=1e-9)

    def enough(s: int, sum_w2: float, arms: int) -> bool:  # the report's t test: SE^2 = sum_w2 s_run^2 / S
        df = arms * (s - 1)
        return (sps.t.ppf(0.975, df) + sps.t.ppf(0.8, df)) * np.sqrt(sum_w2 * 1e-4 / s) <= 0.02

    n = mean["seeds_pairwise"]
    assert enough(n, 2.0, 2) and not enough(n - 1, 2.0, 2)
    z = sps.norm.ppf(0.975) + sps.norm.ppf(0.8)
    assert n > int(np.ceil(2 * 1e-4 / (0.02 / z) ** 2)) == 4  # the normal approximation said 4
    m = mean["seeds_main_effect"]  # 8 configurations of the fraction: weights +-1/4, 8 arms
    assert enough(m, 0.5, 8) and (m == 2 or not enough(m - 1, 0.5, 8))
    r = run_cli("plan", str(SPEC), "--power", "0.02", "--pilot", "nope", "--results", url)
    assert r.code == 2 and "nope" in r.err and r.err.count("\n") == 1, r.err
    # a tiny effect with no interaction floor: reachable, only beyond the seed cap, and said so
    r = run_cli("plan", str(SPEC), "--power", "0.0001", "--pilot", "pilot", "--results", url)
    assert r.code == 0, r.err
    assert "more than 1000 seeds" in r.out and "floor" not in r.out.split("from pilot")[1].split("floor with")[0]


TINY = """
name = "frac-tiny"
design = "fractional"
resolution = 3
factors = ["warmup", "focal_loss", "patch_fusion"]
folds = [0]
seeds = [0, 1]
[params]
warmup = { epochs = 1 }
""" + TINY_DATA_MODEL + """[train]
iterations = 2
epoch_length = 2
patch = 16
batch = 1
num_workers = 0
threads = 1
"""


def test_tiny_fractional_design_runs_end_to_end_and_reports_its_aliases(run_cli, tmp_path):
    spec = tmp_path / "frac.toml"
    spec.write_text(TINY)
    r = run_cli("run", str(spec), "--workspace", str(tmp_path), "--tracking", "none", "--threads", "1")
    assert r.code == 0, r.err
    assert "8 done" in r.err
    out = tmp_path / "reports"
    r = run_cli("report", "frac-tiny", "--workspace", str(tmp_path), "--out", str(out), "--no-pdf", "--no-plots",
                "--format", "markdown")
    assert r.code == 0, r.err
    md = next(out.rglob("report.md")).read_text()
    assert "Design." in md and "C=AB" in md and "I = ABC" in md
    # resolution III: every main effect is an alias sum with a two-factor interaction, named as such
    assert "warmup + focal\\_loss x patch\\_fusion" in md
    assert "test-case sampling and run-to-run variance" in md
    assert "Paired tests are not shown: with 2 test cases" in md


FORWARD = """
name = "fwd"
design = "forward"
factors = ["warmup", "patch_fusion", "model_fusion"]
folds = [0]
seeds = [0, 1]
[data]
path = "synthetic"
[train]
val_every = 1
"""


def test_plan_power_of_a_forward_spec_sizes_selection_from_paired_validation_dice(run_cli, tmp_path):
    from sqlalchemy import select

    from bench.analysis.power import seeds_for_ladder
    from bench.store import open_store
    from bench.store.models import Cell, Configuration

    url = _pilot(tmp_path)
    spec = tmp_path / "fwd.toml"
    spec.write_text(FORWARD)
    r = run_cli("plan", str(spec), "--json", "--power", "0.02", "--pilot", "pilot", "--results", url)
    assert r.code == 0, r.err
    p = json.loads(r.out)["power"]
    mean = [e for e in p["by_metric"] if e["metric"].startswith("mean")][0]
    # no validation Dice in the pilot: selection falls back to the test components (a lower bound, said so)
    assert p["selection_var"] is None and mean["selection_sd"] is None
    assert mean["seeds_forward_ladder"] == seeds_for_ladder(1e-4, 0.0, 0.0, 6, 3, 0.02)
    r = run_cli("plan", str(spec), "--power", "0.02", "--pilot", "pilot", "--results", url)
    assert "validation-set noise is left out" in r.out
    # validation Dice per cell: the second configuration's paired differences to the first are 0.01, 0.03, 0.05
    # (variance 0.0004 on 2 degrees of freedom)
    store = open_store(url)
    with store.session() as s:
        for cell, label in s.execute(select(Cell, Configuration.label).join(Configuration)).all():
            cell.objective = 0.5 + (0.01 + 0.02 * cell.seed if label != "BL" else 0.0)
    r = run_cli("plan", str(spec), "--json", "--power", "0.02", "--pilot", "pilot", "--results", url)
    p = json.loads(r.out)["power"]
    mean = [e for e in p["by_metric"] if e["metric"].startswith("mean")][0]
    assert p["selection_var"] == {"variance": pytest.approx(4e-4), "df": 2}
    assert mean["selection_sd"] == pytest.approx(0.02)
    n = mean["seeds_forward_ladder"]
    assert n == seeds_for_ladder(1e-4, 0.0, 0.0, 6, 3, 0.02, selection_var=4e-4)
    assert n > seeds_for_ladder(1e-4, 0.0, 0.0, 6, 3, 0.02)  # the validation noise costs seeds
