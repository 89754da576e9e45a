"""`bench evaluate --rules 2024|2025 [--cohort]`: official columns, summary rows, a case without a prediction,
the same CSV as the official BraTS-evaluation tooling on the same files, and bad input (foreign labels,
differing geometry, conflicting options) refused with one line and nothing written."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from bench.data.readers import list_cases, load_nifti
from bench.data.writers import write_nifti
from bench.evaluation.rules import get_rules

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def post_treatment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BraTS 2023-layout dataset of 4 labelled cases, two with a resection cavity (label 4)."""
    from bench.data.synth import synthesize

    root = tmp_path_factory.mktemp("gli24") / "data"
    synthesize(root, cases=4, shape=(32, 28, 20), fmt="brats2023", seed=3)
    for i, cf in enumerate(c for c in list_cases(root) if c.seg is not None):
        seg, affine, _ = load_nifti(cf.seg)
        seg = np.array(seg, dtype=np.uint8)
        if i % 2 == 0:
            seg[2:6, 2:7, 2:6] = 4
        write_nifti(cf.seg, seg, affine)
    return root


def _predictions(gt_dir: Path, out: Path, skip_last: bool = True) -> dict[str, np.ndarray]:
    out.mkdir()
    cases = [c for c in list_cases(gt_dir) if c.seg is not None]
    got = {}
    for i, cf in enumerate(cases[:-1] if skip_last else cases):
        gt, affine, _ = load_nifti(cf.seg)
        pred = np.roll(np.asarray(gt, np.uint8), i + 1, axis=i % 3)
        pred[(i * 5) % gt.shape[0], 1, 1] = 3  # a stray ET voxel
        write_nifti(out / f"{cf.case_id}.nii.gz", pred, affine)
        got[cf.case_id] = pred
    return got


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_rules_2024_writes_the_official_columns_per_region(post_treatment: Path, tmp_path: Path, run_cli) -> None:
    _predictions(post_treatment, tmp_path / "p")
    out = tmp_path / "m.csv"
    res = run_cli("evaluate", "--pred", tmp_path / "p", "--gt", post_treatment, "--out", out, "--rules", "2024",
                  "--jobs", "1")
    assert res.code == 0, res.err
    rows = _rows(out)
    assert list(rows[0]) == ["case", "Labels", "Num_TP", "Num_FP", "Num_FN", "Sensitivity", "Specificity",
                             "Legacy_Dice", "Legacy_HD95", "GT_Complete_Volume", "LesionWise_Score_Dice",
                             "LesionWise_Score_HD95"]
    assert len(rows) == 4 * 6 + 3 * 6  # 4 cases (one without a prediction) x 6 regions, then mean/std/median
    assert {r["case"] for r in rows[-18:]} == {"mean", "std", "median"}
    missing = [r for r in rows if r["case"] == sorted({r["case"] for r in rows[:24]})[-1]]
    assert {r["Labels"] for r in missing} == {"WT", "TC", "NETC", "SNFH", "ET", "RC"}
    wt = next(r for r in missing if r["Labels"] == "WT")
    assert float(wt["LesionWise_Score_Dice"]) == 0.0 and int(wt["Num_FN"]) >= 1  # an empty prediction
    assert "1 case(s) without a prediction" in res.err and "scored as the official code" in res.out
    assert "BraTS 2024 GLI lesion-wise rules" in res.out


def test_rules_2025_csv_equals_the_official_tooling(post_treatment: Path, tmp_path: Path, run_cli) -> None:
    evaluation = pytest.importorskip("brats_evaluation.evaluation")
    parser = pytest.importorskip("brats_evaluation.metrics_parser")
    from importlib.resources import files

    from panoptica import Panoptica_Evaluator

    preds = _predictions(post_treatment, tmp_path / "p")
    out = tmp_path / "m.csv"
    res = run_cli("evaluate", "--pred", tmp_path / "p", "--gt", post_treatment, "--out", out, "--rules", "2025",
                  "--cohort", "GLI", "--jobs", "2")
    assert res.code == 0, res.err
    mine = _rows(out)
    assert len(mine[0]) == 91 and len(mine) == 4 + 3

    evaluator = Panoptica_Evaluator.load_from_config(
        str(files("brats_evaluation").joinpath("configs", "config_gli.yaml")))
    cases = sorted((c for c in list_cases(post_treatment) if c.seg is not None), key=lambda c: c.case_id)
    results = [evaluation.evaluate_single_exam(str(tmp_path / "p" / f"{cf.case_id}.nii.gz"), str(cf.seg),
                                               cf.case_id, evaluator) for cf in cases if cf.case_id in preds]
    js = tmp_path / "official.json"
    js.write_text(json.dumps({"metrics": results, "missings": [cases[-1].case_id]}, default=lambda o: o.item()))
    parser.parse_seg_results(str(js), str(tmp_path / "official.csv"))
    ref = _rows(tmp_path / "official.csv")
    assert list(ref[0]) == list(mine[0])
    assert [r["subject_id"] for r in ref] == [r["subject_id"] for r in mine]
    for a, b in zip(mine, ref):
        for col in list(a)[1:]:
            x, y = (math.nan if v == "" else float(v) for v in (a[col], b[col]))
            assert (math.isnan(x) and math.isnan(y)) or x == y or math.isclose(x, y, abs_tol=1e-9), (a[col], b[col])


def test_foreign_labels_are_refused_and_nothing_written(post_treatment: Path, tmp_path: Path, run_cli) -> None:
    _predictions(post_treatment, tmp_path / "p", skip_last=False)
    bad = sorted((tmp_path / "p").iterdir())[0]
    arr, affine, _ = load_nifti(bad)
    arr = np.array(arr)
    arr[0, 0, 0] = 5
    write_nifti(bad, arr, affine)
    out = tmp_path / "m.csv"
    res = run_cli("evaluate", "--pred", tmp_path / "p", "--gt", post_treatment, "--out", out, "--rules", "2025",
                  "--jobs", "1")
    assert res.code == 2 and not out.exists()
    lines = [ln for ln in res.err.splitlines() if ln.startswith("bench: error")]
    assert len(lines) == 1 and bad.name in lines[0] and "[5]" in lines[0] and "[0, 1, 2, 3, 4]" in lines[0]


def test_differing_geometry_is_refused(post_treatment: Path, tmp_path: Path, run_cli) -> None:
    _predictions(post_treatment, tmp_path / "p", skip_last=False)
    bad = sorted((tmp_path / "p").iterdir())[1]
    arr, affine, _ = load_nifti(bad)
    shifted = affine.copy()
    shifted[0, 3] += 5.0
    write_nifti(bad, np.array(arr), shifted)
    out = tmp_path / "m.csv"
    res = run_cli("evaluate", "--pred", tmp_path / "p", "--gt", post_treatment, "--out", out, "--rules", "2024")
    assert res.code == 2 and not out.exists()
    assert bad.name in res.err and "geometry" in res.err and "Traceback" not in res.err


@pytest.mark.parametrize("argv,needle", [
    (("--rules", "2025", "--lesionwise", "gli"), "--lesionwise chooses the 2023 rules"),
    (("--rules", "2024", "--cohort", "ped"), "--cohort: unknown cohort 'ped' for --rules 2024"),
    (("--rules", "2026",), "invalid choice"),
])
def test_conflicting_or_unknown_options(post_treatment: Path, tmp_path: Path, run_cli, argv, needle) -> None:
    res = run_cli("evaluate", "--pred", tmp_path, "--gt", post_treatment, *argv)
    assert res.code == 2 and needle in res.err


def test_rules_2023_is_the_lesionwise_path(synth_raw: Path, tmp_path: Path, run_cli) -> None:
    from bench.data.readers import read_label

    (tmp_path / "p").mkdir()
    cf = next(c for c in list_cases(synth_raw) if c.seg is not None)
    gt, affine, _ = read_label(cf)
    write_nifti(tmp_path / "p" / f"{cf.case_id}.nii.gz", gt, affine)
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert run_cli("evaluate", "--pred", tmp_path / "p", "--gt", synth_raw, "--out", a, "--rules", "2023",
                   "--cohort", "met").code == 0
    assert run_cli("evaluate", "--pred", tmp_path / "p", "--gt", synth_raw, "--out", b,
                   "--lesionwise", "met").code == 0
    assert a.read_text() == b.read_text()
    assert get_rules("2023").cohort("MET") == "met"


def test_brats2019_datasets_are_converted_for_glioma_cohorts(synth_raw: Path, tmp_path: Path, run_cli) -> None:
    from bench.data.readers import read_label

    (tmp_path / "p").mkdir()
    cf = next(c for c in list_cases(synth_raw) if c.seg is not None)
    gt, affine, _ = read_label(cf)  # BraTS 2019 labels {0, 1, 2, 4}
    write_nifti(tmp_path / "p" / f"{cf.case_id}.nii.gz", gt, affine)
    out = tmp_path / "m.csv"
    res = run_cli("evaluate", "--pred", tmp_path / "p", "--gt", synth_raw, "--out", out, "--rules", "2025",
                  "--jobs", "1")
    assert res.code == 0, res.err
    row = next(r for r in _rows(out) if r["subject_id"] == cf.case_id)
    assert float(row["lesionwise_dsc_mean_wt"]) == 1.0 and float(row["global_dsc_et"]) == 1.0
    assert row["lesionwise_dsc_mean_rc"] == ""  # no cavity in a BraTS 2019 case: empty, as the package writes
    res = run_cli("evaluate", "--pred", tmp_path / "p", "--gt", synth_raw, "--out", out, "--rules", "2025",
                  "--cohort", "ped", "--jobs", "1")
    assert res.code == 2 and "needs a BraTS 2023+ dataset layout" in res.err


def test_the_cli_lists_the_registry_s_years_and_cohorts() -> None:
    from bench.cli.evaluate import _RULES
    from bench.evaluation.rules import RULES

    assert list(_RULES) == list(RULES)
    assert all(tuple(RULES[y].cohorts()) == tuple(c) for y, c in _RULES.items())


@pytest.mark.parametrize("rules", ["2017", "2023"])
def test_whole_image_and_2023_paths_refuse_another_affine(synth_raw: Path, tmp_path: Path, run_cli, rules) -> None:
    from bench.data.readers import read_label

    (tmp_path / "p").mkdir()
    cf = next(c for c in list_cases(synth_raw) if c.seg is not None)
    gt, affine, _ = read_label(cf)
    shifted = affine.copy()
    shifted[2, 3] += 3.0
    write_nifti(tmp_path / "p" / f"{cf.case_id}.nii.gz", gt, shifted)
    out = tmp_path / "m.csv"
    res = run_cli("evaluate", "--pred", tmp_path / "p", "--gt", synth_raw, "--out", out, "--rules", rules)
    assert res.code == 2 and not out.exists()
    assert f"{cf.case_id}.nii.gz: prediction affine differs" in res.err and "Traceback" not in res.err
