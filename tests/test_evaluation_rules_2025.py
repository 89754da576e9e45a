"""The BraTS 2025 rules against the official code: ``BraTS-evaluation`` 0.0.10 (its bundled Panoptica configs,
``evaluate_single_exam`` on NIfTI files and the ``seg`` parser that writes the leaderboard CSV) on random and
adversarial cases. Every value equal to 1e-9, every count equal, NaN and inf where the package has them."""

from __future__ import annotations

import csv
import json
import math
from importlib.resources import files
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from rules_cases import adversarial_cases, perturb, random_label

from bench.evaluation.rules import get_rules

evaluation = pytest.importorskip("brats_evaluation.evaluation")
parser = pytest.importorskip("brats_evaluation.metrics_parser")
pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.timeout(300)]

RULES = get_rules("2025")
PED = (2, 4, 1, 3)  # ped: 1 ET, 2 NETC, 3 CC, 4 ED -> blobs of ED around NETC around ET, CC beside


def _official(tmp: Path, config: str, cases: list[tuple[str, np.ndarray, np.ndarray]], spacing,
              missing: list[str]) -> list[dict[str, str]]:
    from panoptica import Panoptica_Evaluator

    cfg = str(files("brats_evaluation").joinpath("configs", f"config_{config}.yaml"))
    evaluator = Panoptica_Evaluator.load_from_config(cfg)
    affine = np.diag([*spacing, 1.0])
    results = []
    for name, pred, gt in cases:
        pp, gp = tmp / f"pred-{name}.nii.gz", tmp / f"ref-{name}.nii.gz"
        nib.save(nib.Nifti1Image(pred.astype(np.uint8), affine), pp)
        nib.save(nib.Nifti1Image(gt.astype(np.uint8), affine), gp)
        results.append(evaluation.evaluate_single_exam(str(pp), str(gp), name, evaluator))
    assert not [r for r in results if "error" in r], results
    js = tmp / f"{config}.json"
    # numpy scalars as plain numbers (the package's own json.dump assumes an older numpy's types)
    js.write_text(json.dumps({"metrics": results, "missings": missing}, default=lambda o: o.item()))
    out = tmp / f"{config}.csv"
    parser.parse_seg_results(str(js), str(out))
    with open(out, newline="") as fh:
        return list(csv.DictReader(fh))


def _num(text) -> float:
    if isinstance(text, str):
        return math.nan if text == "" else float(text)
    return float(text)


def _assert_rows(mine: dict, ref: dict, what: str) -> None:
    assert list(mine) == list(ref), f"{what}: columns differ"
    for col in list(mine)[1:]:
        a, b = _num(mine[col]), _num(ref[col])
        if math.isnan(b) or math.isinf(b):
            assert (math.isnan(a) and math.isnan(b)) or a == b, f"{what} {col}: {a} vs {b}"
        elif "_tp_" in col or "_fp_" in col or "_fn_" in col:
            assert a == b, f"{what} {col}: {a} vs {b}"
        else:
            assert math.isclose(a, b, rel_tol=0, abs_tol=1e-9), f"{what} {col}: {a} vs {b}"


def _check(tmp: Path, config: str, cases, spacing, missing=()) -> None:
    ref = _official(tmp, config, cases, spacing, list(missing))
    spacing = tuple(float(v) for v in np.float32(spacing))  # the header's float32 voxel sizes, as read back
    mine = [RULES.score(pred, gt, spacing, config, name)[0] for name, pred, gt in cases]
    mine += [RULES.missing(m, cases[0][2], spacing, config)[0] for m in missing]
    rows = mine + RULES.summary(mine, config)
    assert len(rows) == len(ref)
    assert list(ref[0]) == list(RULES.columns(config))
    for m, r in zip(rows, ref):
        assert m["subject_id"] == r["subject_id"]
        _assert_rows(m, r, f"{config} {r['subject_id']}")


def test_gli_has_the_91_leaderboard_columns() -> None:
    cols = RULES.columns("gli")
    assert len(cols) == 91 and cols[0] == "subject_id" and "lesionwise_dsc_mean_et" in cols


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.8, 1.0, 2.5)])
def test_gli_random_and_adversarial_cases_equal_the_package(tmp_path: Path, spacing) -> None:
    rng = np.random.default_rng(7)
    cases = [(f"rand{i:02d}", perturb(rng, gt), gt)
             for i, gt in enumerate(random_label(rng, n_lesions=int(rng.integers(1, 5)), rc=i % 2 == 0)
                                    for i in range(10))]
    cases += [(name.replace(" ", "_"), p, g) for name, p, g in adversarial_cases()]
    _check(tmp_path, "gli", cases, spacing, missing=["BraTS-GLI-00099-000.nii.gz"])


@pytest.mark.parametrize("config", ["mets", "ped", "MenRT", "MenPre", "GoAT"])
def test_other_bundled_configs_equal_the_package(tmp_path: Path, config: str) -> None:
    rng = np.random.default_rng(11)
    if config == "ped":
        cases = [(f"c{i}", perturb(rng, g, PED), g) for i, g in
                 enumerate(random_label(rng, labels=PED) for _ in range(5))]
    elif config == "MenRT":
        cases = [(f"c{i}", perturb(rng, g, (1,)), g) for i, g in
                 enumerate((random_label(rng) > 0).astype(np.uint8) for _ in range(5))]
    else:
        rc = config == "mets"
        cases = [(f"c{i}", np.where(p > (4 if rc else 3), 0, p), np.where(g > (4 if rc else 3), 0, g))
                 for i, (p, g) in enumerate((perturb(rng, g), g) for g in
                                            (random_label(rng, rc=rc) for _ in range(5)))]
    _check(tmp_path, config, cases, (1.0, 1.2, 1.5))
