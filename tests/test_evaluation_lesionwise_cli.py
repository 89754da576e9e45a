"""`bench evaluate --lesionwise COHORT`: CSV columns and values against the reference, summary, bad input."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from lesionwise_reference import reference_case

from bench.data.formats import BRATS2023, from_brats
from bench.data.readers import list_cases, read_label
from bench.data.writers import write_nifti
from bench.evaluation.evaluate import LESION_CSV_COLUMNS, format_lesion_summary

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _predictions(gt_dir: Path, out: Path, n: int = 3) -> dict[str, tuple[np.ndarray, np.ndarray, tuple]]:
    out.mkdir()
    got = {}
    for i, cf in enumerate([c for c in list_cases(gt_dir) if c.seg is not None][:n]):
        gt, affine, spacing = read_label(cf)
        pred = np.roll(gt, i + 1, axis=i % 3)
        pred[(i * 7) % gt.shape[0], 1, 1] = 2  # a stray false-positive voxel
        if i == 1:
            pred[pred == 4] = 1  # enhancing tumour missed
        write_nifti(out / f"{cf.case_id}.nii.gz", pred, affine)
        got[cf.case_id] = (pred, gt, spacing)
    return got


def test_lesionwise_csv_matches_reference(synth_raw: Path, tmp_path: Path, run_cli) -> None:
    cases = _predictions(synth_raw, tmp_path / "p")
    out = tmp_path / "m.csv"
    res = run_cli("evaluate", "--pred", tmp_path / "p", "--gt", synth_raw, "--out", out, "--jobs", "2",
                  "--lesionwise", "GLI")
    assert res.code == 0, res.err
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(LESION_CSV_COLUMNS)
    labelled = [cf for cf in list_cases(synth_raw) if cf.seg is not None]
    assert len(rows) == 3 * len(labelled)  # cases without a prediction are scored as empty predictions
    for cf in labelled:
        if cf.case_id not in cases:
            gt, _, spacing = read_label(cf)
            cases[cf.case_id] = (np.zeros_like(gt), gt, spacing)
    for row in rows:
        pred, gt, spacing = cases[row["case"]]
        ref = reference_case(pred, gt, spacing, "gli")[row["region"]]
        for k in ("lesion_dice", "lesion_hd95", "legacy_dice", "legacy_hd95", "sensitivity", "specificity"):
            assert math.isclose(float(row[k]), ref[k], abs_tol=1e-9), (row["case"], row["region"], k)
        for k in ("num_tp", "num_fp", "num_fn"):
            assert int(row[k]) == ref[k]
        assert float(row["dice"]) >= 0.0 and row["penalty"] in ("0", "1")
    assert sum(int(r["num_fp"]) for r in rows) >= 3  # the stray voxels
    assert "LesionWise Dice" in res.out and "75quantile" in res.out and "dilation 3" in res.out
    assert "false positives (FP)" in res.out


def test_brats2023_labels_give_the_same_values(synth_raw: Path, tmp_path: Path) -> None:
    """Scores are computed on region masks, so the 2023 label numbering (ET = 3) scores identically."""
    from bench.evaluation.lesionwise import lesionwise_case

    cf = next(c for c in list_cases(synth_raw) if c.seg is not None)
    gt, _, spacing = read_label(cf)
    pred = np.roll(gt, 2, axis=0)
    a = lesionwise_case(pred, gt, spacing, "met")
    b = lesionwise_case(from_brats(pred, BRATS2023), from_brats(gt, BRATS2023), spacing, "met", BRATS2023)
    assert a == b


def test_unknown_cohort_is_a_usage_error(synth_raw: Path, tmp_path: Path, run_cli) -> None:
    res = run_cli("evaluate", "--pred", tmp_path, "--gt", synth_raw, "--lesionwise", "brats")
    assert res.code == 2
    assert "--lesionwise" in res.err and "gli, ssa, ped, men, met" in res.err


def test_lesion_summary_lists_cohort_parameters() -> None:
    from bench.evaluation.evaluate import LesionRow
    from bench.evaluation.lesionwise import LesionwiseMetrics

    rows = [LesionRow(f"c{i}", r, LesionwiseMetrics(0.5 + 0.1 * i, 10.0 * i, 0.8, 3.0, i, 1, 0, 0.9, 0.99))
            for i in range(3) for r in ("ET", "TC", "WT")]
    text = format_lesion_summary(rows, "met")
    assert "3 cases; BraTS 2023 MET lesion-wise rules: dilation 1, lesions <= 2 mm^3 ignored" in text
    mean_line = next(line for line in text.splitlines()[3:] if line.startswith("Mean"))
    assert mean_line.split()[1:] == ["0.6000"] * 3
    assert "lesions found (TP)" in text and text.splitlines()[-3].split()[-3:] == ["3", "3", "3"]


def test_foreign_labels_name_the_file(synth_raw: Path, tmp_path: Path, run_cli) -> None:
    cases = _predictions(synth_raw, tmp_path / "p", n=1)
    cid = next(iter(cases))
    pred, gt, _ = cases[cid]
    bad = pred.copy()
    bad[0, 0, 0] = 3  # 3 is not a BraTS 2019 label
    from bench.data.readers import load_nifti

    _, affine, _ = load_nifti(tmp_path / "p" / f"{cid}.nii.gz")
    write_nifti(tmp_path / "p" / f"{cid}.nii.gz", bad, affine)
    out = tmp_path / "m.csv"
    res = run_cli("evaluate", "--pred", tmp_path / "p", "--gt", synth_raw, "--out", out, "--jobs", "1",
                  "--lesionwise", "gli")
    assert res.code == 2 and f"{cid}.nii.gz: label values [3] are outside the brats2019 convention" in res.err
    assert not out.exists()
