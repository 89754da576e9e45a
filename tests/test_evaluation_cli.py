"""`bench evaluate` and the folder evaluation: matching, CSV, summary, parallel runs and bad input."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from medpy.metric import binary as mb

from bench.data.formats import HD95_PENALTY, REGIONS, region_masks
from bench.data.readers import list_cases, load_nifti, read_label
from bench.data.writers import write_nifti
from bench.errors import DataError
from bench.evaluation.evaluate import (
    CSV_COLUMNS,
    CaseRow,
    evaluate_folder,
    format_summary,
    penalty_counts,
    read_csv,
    summary_table,
    write_csv,
)


def _copy_segs(gt: Path, out: Path, fmt: str | None = None, skip: int = 0) -> list[str]:
    """Copy every case's segmentation to ``out/<ID>.nii.gz`` (a perfect submission); returns the case IDs."""
    out.mkdir(parents=True, exist_ok=True)
    ids = []
    for cf in list_cases(gt, fmt)[skip:]:
        if cf.seg is None:
            continue
        shutil.copyfile(cf.seg, out / f"{cf.case_id}.nii.gz")
        ids.append(cf.case_id)
    return ids


def _read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_ground_truth_as_prediction_scores_perfectly(synth_raw: Path, tmp_path: Path, run_cli) -> None:
    ids = _copy_segs(synth_raw, tmp_path / "p")
    out = tmp_path / "m.csv"
    res = run_cli("evaluate", "--pred", tmp_path / "p", "--gt", synth_raw, "--out", out, "--jobs", "1")
    assert res.code == 0, res.err
    rows = _read_rows(out)
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert len(rows) == 3 * len(ids) and {r["case_id"] for r in rows} == set(ids)
    for r in rows:
        assert float(r["dice"]) == 1.0 and float(r["hd95"]) == 0.0
        assert float(r["sensitivity"]) == 1.0 and float(r["specificity"]) == 1.0 and r["penalty"] == "0"
    assert "Mean" in res.out and "75quantile" in res.out and "HD95 penalty 373.13" in res.out
    assert "ET 0, TC 0, WT 0" in res.out
    assert "warning" not in res.err


def test_perturbed_predictions_match_medpy_and_count_penalties(
    synth_raw: Path, tmp_path: Path, run_cli
) -> None:
    pred_dir = tmp_path / "p"
    pred_dir.mkdir()
    cases = [cf for cf in list_cases(synth_raw) if cf.seg is not None][:4]
    expected = {}
    for i, cf in enumerate(cases):
        gt, affine, spacing = read_label(cf)
        pred = np.roll(gt, i + 1, axis=i % 3)
        if i == 0:
            pred[pred == 4] = 1  # ET missed entirely: penalty if the reference has ET
        write_nifti(pred_dir / f"{cf.case_id}.nii.gz", pred, affine)
        mp, mg = region_masks(pred), region_masks(gt)
        for r in REGIONS:
            if mp[r].any() and mg[r].any():
                expected[cf.case_id, r] = float(mb.hd95(mp[r], mg[r], voxelspacing=spacing))
            elif mp[r].any() or mg[r].any():
                expected[cf.case_id, r] = HD95_PENALTY
            else:
                expected[cf.case_id, r] = 0.0
    out = tmp_path / "m.csv"
    res = run_cli("evaluate", "--pred", pred_dir, "--gt", synth_raw, "--out", out, "--jobs", "2")
    assert res.code == 0, res.err
    rows = read_csv(out)
    n_cases = len([cf for cf in list_cases(synth_raw) if cf.seg is not None])
    assert len(rows) == 3 * n_cases  # the cases without a prediction are scored as empty predictions
    for row in rows:
        if (row.case_id, row.region) in expected:
            assert abs(row.hd95 - expected[row.case_id, row.region]) <= 1e-9
        else:
            assert (row.dice, row.hd95) in ((0.0, HD95_PENALTY), (1.0, 0.0))
        assert row.penalty == (row.hd95 == HD95_PENALTY)
    n_pen = penalty_counts(rows)
    assert sum(n_pen.values()) >= 1  # case 0 lost its ET
    assert f"ET {n_pen['ET']}, TC {n_pen['TC']}, WT {n_pen['WT']}" in res.out
    # unmatched cases are reported on stderr
    assert "case(s) without a prediction" in res.err


def test_unmatched_files_are_reported(synth_raw: Path, tmp_path: Path, run_cli) -> None:
    pred_dir = tmp_path / "p"
    ids = _copy_segs(synth_raw, pred_dir, skip=2)
    all_ids = [cf.case_id for cf in list_cases(synth_raw) if cf.seg is not None]
    shutil.copyfile(pred_dir / f"{ids[0]}.nii.gz", pred_dir / "BraTS19_UNKNOWN_9.nii.gz")
    (pred_dir / "notes.txt").write_text("not a prediction")
    res = run_cli("evaluate", "--pred", pred_dir, "--gt", synth_raw, "--jobs", "1")
    assert res.code == 0, res.err
    assert "1 prediction(s) without a labeled case" in res.err and "BraTS19_UNKNOWN_9.nii.gz" in res.err
    assert "2 case(s) without a prediction" in res.err
    assert all_ids[0] in res.err and all_ids[1] in res.err
    assert "notes.txt" in res.err
    rows = _read_rows(pred_dir / "metrics.csv")  # default output beside the predictions
    assert {r["case_id"] for r in rows} == set(all_ids)  # the two without a prediction scored as empty ones
    missed = [r for r in rows if r["case_id"] in (all_ids[0], all_ids[1]) and r["region"] == "WT"]
    assert [float(r["dice"]) for r in missed] == [0.0, 0.0] and all(r["penalty"] == "1" for r in missed)
    assert "scored as the official code scores a missing one" in res.err


def test_rerun_with_default_output_overwrites_quietly(synth_raw: Path, tmp_path: Path, run_cli) -> None:
    pred_dir = tmp_path / "p"
    _copy_segs(synth_raw, pred_dir, skip=7)
    first = run_cli("evaluate", "--pred", pred_dir, "--gt", synth_raw, "--jobs", "1")
    second = run_cli("evaluate", "--pred", pred_dir, "--gt", synth_raw, "--jobs", "1")
    assert first.code == second.code == 0
    assert "ignored" not in second.err  # the CSV of the first run is not reported as a stray file
    assert len(_read_rows(pred_dir / "metrics.csv")) == 3 * len(
        [cf for cf in list_cases(synth_raw) if cf.seg is not None])
    assert first.out == second.out


@pytest.mark.parametrize("fmt", ["brats2023", "msd"])
def test_other_layouts_use_their_label_convention(fmt: str, tmp_path: Path) -> None:
    from bench.data.synth import synthesize

    gt = tmp_path / "d"
    synthesize(gt, cases=2, shape=(24, 24, 16), fmt=fmt, seed=1)
    _copy_segs(gt, tmp_path / "p")
    result = evaluate_folder(tmp_path / "p", gt, jobs=1, progress=False)
    assert result.format == fmt and len(result.rows) == 6
    assert all(r.dice == 1.0 and r.hd95 == 0.0 for r in result.rows)
    # a prediction written in BraTS-2019 numbering is refused for these datasets (label 4 does not exist)
    cf = next(c for c in list_cases(gt) if c.seg is not None)
    lab, affine, _ = read_label(cf)
    lab[lab == 4] = 2
    lab[0, 0, 0] = 4
    write_nifti(tmp_path / "p" / f"{cf.case_id}.nii.gz", lab, affine)
    with pytest.raises(DataError, match=rf"{cf.case_id}.nii.gz: label values \[4\] are outside the {fmt}"):
        evaluate_folder(tmp_path / "p", gt, jobs=1, progress=False)


def test_summary_table_statistics() -> None:
    rows = [CaseRow(f"c{i}", r, d, h, 1.0, 1.0, h == HD95_PENALTY)
            for i, (d, h) in enumerate([(0.5, 2.0), (0.7, 4.0), (0.9, HD95_PENALTY), (1.0, 0.0)])
            for r in REGIONS]
    table = summary_table(rows)
    dice = np.array([0.5, 0.7, 0.9, 1.0])
    assert table["ET"]["dice"]["Mean"] == pytest.approx(0.775)
    assert table["ET"]["dice"]["StdDev"] == pytest.approx(dice.std(ddof=1))
    assert table["ET"]["dice"]["Median"] == pytest.approx(0.8)
    assert table["ET"]["dice"]["25quantile"] == pytest.approx(0.65)
    assert table["ET"]["dice"]["75quantile"] == pytest.approx(0.925)
    assert table["WT"]["hd95"]["Mean"] == pytest.approx((2 + 4 + HD95_PENALTY + 0) / 4)
    assert penalty_counts(rows) == {"ET": 1, "TC": 1, "WT": 1}
    # mappings with string values (as csv.DictReader gives) work too
    as_text = [{k: str(v) for k, v in zip(CSV_COLUMNS, (r.case_id, r.region, r.dice, r.hd95, r.sensitivity,
                                                         r.specificity, int(r.penalty)))} for r in rows]
    assert summary_table(as_text) == table
    assert penalty_counts(as_text) == penalty_counts(rows)
    text = format_summary(rows)
    assert "4 cases" in text and "ET 1, TC 1, WT 1" in text


def test_csv_round_trip_is_exact(tmp_path: Path) -> None:
    rows = [CaseRow("a", "ET", 1 / 3, 1.7320508075688772, 0.1, 0.999999999999, False),
            CaseRow("a", "TC", 0.0, HD95_PENALTY, 0.0, 1.0, True)]
    path = write_csv(rows, tmp_path / "sub" / "m.csv")
    assert read_csv(path) == rows
    assert [p.name for p in path.parent.iterdir()] == ["m.csv"]  # no temporary file left behind


# ------------------------------------------------------------------------------------------ bad input


def test_missing_folders_exit_2(synth_raw: Path, tmp_path: Path, run_cli) -> None:
    res = run_cli("evaluate", "--pred", tmp_path / "nope", "--gt", synth_raw)
    assert res.code == 2 and "nope: prediction folder not found" in res.err
    (tmp_path / "p").mkdir()
    res = run_cli("evaluate", "--pred", tmp_path / "p", "--gt", tmp_path / "nogt")
    assert res.code == 2 and "nogt: ground-truth folder not found" in res.err
    assert res.err.count("\n") == 1 and "Traceback" not in res.err


def test_no_nifti_predictions_exit_2(synth_raw: Path, tmp_path: Path, run_cli) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "readme.txt").write_text("x")
    res = run_cli("evaluate", "--pred", tmp_path / "p", "--gt", synth_raw)
    assert res.code == 2 and "no NIfTI predictions found" in res.err and "<ID>.nii.gz" in res.err
    (tmp_path / "p" / "nomatch.nii.gz").write_bytes(b"")
    res = run_cli("evaluate", "--pred", tmp_path / "p", "--gt", synth_raw)
    assert res.code == 2 and "no prediction matches a case" in res.err


def test_non_nifti_prediction_exit_2(synth_raw: Path, tmp_path: Path, run_cli) -> None:
    ids = _copy_segs(synth_raw, tmp_path / "p")
    bad = tmp_path / "p" / f"{ids[1]}.nii.gz"
    bad.write_text("this is not a NIfTI file")
    res = run_cli("evaluate", "--pred", tmp_path / "p", "--gt", synth_raw, "--jobs", "2")
    assert res.code == 2, res.err
    assert f"{ids[1]}.nii.gz" in res.err and "NIfTI" in res.err
    assert not (tmp_path / "p" / "metrics.csv").exists()


def test_shape_mismatch_exit_2(synth_raw: Path, tmp_path: Path, run_cli) -> None:
    ids = _copy_segs(synth_raw, tmp_path / "p")
    cf = next(c for c in list_cases(synth_raw) if c.case_id == ids[0])
    lab, affine, _ = load_nifti(cf.seg)
    write_nifti(tmp_path / "p" / f"{ids[0]}.nii.gz", lab[:-2], affine)
    res = run_cli("evaluate", "--pred", tmp_path / "p", "--gt", synth_raw, "--jobs", "1")
    assert res.code == 2
    assert f"{ids[0]}.nii.gz: prediction shape (46, 48, 32) differs" in res.err and "(48, 48, 32)" in res.err


def test_foreign_labels_exit_2(synth_raw: Path, tmp_path: Path, run_cli) -> None:
    ids = _copy_segs(synth_raw, tmp_path / "p")
    cf = next(c for c in list_cases(synth_raw) if c.case_id == ids[0])
    lab, affine, _ = load_nifti(cf.seg)
    lab = lab.copy()
    lab[0, 0, 0] = 3
    write_nifti(tmp_path / "p" / f"{ids[0]}.nii.gz", lab, affine)
    res = run_cli("evaluate", "--pred", tmp_path / "p", "--gt", synth_raw, "--jobs", "1")
    assert res.code == 2 and "label values [3] are outside the brats2019 convention" in res.err


def test_bad_jobs_is_a_usage_error(synth_raw: Path, tmp_path: Path, run_cli) -> None:
    res = run_cli("evaluate", "--pred", tmp_path, "--gt", synth_raw, "--jobs", "0")
    assert res.code == 2 and "--jobs" in res.err
