"""The BraTS 2024 rules against a step-by-step port of the official algorithm (tests/brats2024_reference.py)
on random and adversarial cases: every value equal to 1e-9, every count equal."""

from __future__ import annotations

import math

import numpy as np
import pytest
from brats2024_reference import reference_case
from rules_cases import adversarial_cases, perturb, random_label

from bench.errors import SpecError
from bench.evaluation.rules import get_rules

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning")]
RULES = get_rules("2024")
COUNTS = ("Num_TP", "Num_FP", "Num_FN")


def _assert_case(pred, gt, spacing, cohort, what="") -> None:
    mine = RULES.score(pred, gt, spacing, cohort, "c")
    ref = reference_case(pred, gt, spacing, cohort)
    assert [r["Labels"] for r in mine] == [r["Labels"] for r in ref]
    for m, r in zip(mine, ref):
        for k, v in r.items():
            if k == "Labels":
                continue
            if k in COUNTS:
                assert m[k] == v, f"{what} {r['Labels']} {k}: {m[k]} vs {v}"
            else:
                assert math.isclose(m[k], v, rel_tol=0, abs_tol=1e-9), f"{what} {r['Labels']} {k}: {m[k]} vs {v}"


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.8, 1.0, 2.5)])
def test_gli_random_cases_equal_the_official_algorithm(spacing) -> None:
    rng = np.random.default_rng(3)
    for i in range(8):
        gt = random_label(rng, n_lesions=int(rng.integers(1, 5)), rc=i % 2 == 0)
        _assert_case(perturb(rng, gt), gt, spacing, "gli", f"case {i}")


@pytest.mark.parametrize("name,pred,gt", adversarial_cases(), ids=[c[0] for c in adversarial_cases()])
def test_gli_adversarial_cases_equal_the_official_algorithm(name, pred, gt) -> None:
    _assert_case(pred, gt, (1.0, 1.0, 1.0), "gli", name)


def test_met_and_men_rt_equal_the_official_algorithm() -> None:
    rng = np.random.default_rng(5)
    for i in range(5):
        gt = np.where(random_label(rng, rc=False) > 3, 0, random_label(rng, rc=False))
        _assert_case(np.where(perturb(rng, gt) > 3, 0, perturb(rng, gt)), gt, (1.0, 1.0, 1.2), "met", f"met {i}")
        gtv = (random_label(rng) > 0).astype(np.uint8)
        _assert_case(perturb(rng, gtv, (1,)), gtv, (1.0, 1.0, 1.0), "men-rt", f"men-rt {i}")


def test_cross_tissue_merge_joins_two_ET_lesions_bridged_by_NETC() -> None:
    gt = np.zeros((20, 20, 12), np.uint8)
    gt[4:8, 3:7, 3:7] = 3
    gt[4:8, 13:17, 3:7] = 3  # two ET lesions far apart (not merged by dilation 3)
    gt[4:8, 7:13, 3:7] = 1   # NETC touching both
    et = {r["Labels"]: r for r in RULES.score(gt, gt, (1, 1, 1), "gli")}["ET"]
    assert et["Num_TP"] == 1 and et["Num_FN"] == 0  # one lesion after merging


def test_unknown_cohort_names_the_option() -> None:
    with pytest.raises(SpecError, match="--cohort: unknown cohort 'xyz'.*gli, met, men-rt"):
        RULES.cohort("xyz")
