"""Regions a configuration never predicted, read from stored per-case metrics (bench.evaluation.missed)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.evaluation.metrics import evaluate_case
from bench.evaluation.missed import missed_note, missed_notes, missed_regions


def _rows(cell_id: int, label: str, case: str, pred: np.ndarray, ref: np.ndarray) -> list[dict]:
    return [{"cell_id": cell_id, "label": label, "case_id": case, "region": r, **m.as_dict()}
            for r, m in evaluate_case(pred, ref).items()]


def _case(et: bool, ncr: bool = True) -> np.ndarray:
    lab = np.zeros((12, 12, 12), np.uint8)
    lab[2:10, 2:10, 2:10] = 2
    lab[4:8, 4:8, 4:8] = 4 if et else 1
    if ncr:
        lab[5:7, 5:7, 5:7] = 1
    return lab


def test_a_region_predicted_on_no_case_that_has_it_is_named() -> None:
    high, low = _case(et=True), _case(et=False)
    no_et = np.where(high == 4, 1, high).astype(np.uint8)  # the enhancing rim labelled as necrosis
    rows = (_rows(1, "BL", "a", high, high) + _rows(1, "BL", "b", low, low)  # perfect: nothing missed
            + _rows(2, "BL+x", "a", no_et, high) + _rows(2, "BL+x", "b", low, low)  # ET erased
            + _rows(3, "BL+y", "a", no_et, high) + _rows(3, "BL+y", "b", high, low))  # ET only as false positive
    df = pd.DataFrame(rows)
    found = missed_regions(df)
    assert [(m.cell_id, m.region, m.cases) for m in found] == [(2, "ET", 1), (3, "ET", 1)]
    assert missed_notes(df) == ["BL+x: no ET voxel predicted in 1 of 1 cell, on the 1 test case(s) that have ET",
                                "BL+y: no ET voxel predicted in 1 of 1 cell, on the 1 test case(s) that have ET"]
    assert missed_note(["ET", "TC"], {"ET": 3, "TC": 1}) == ("no ET voxel predicted (3 test cases have ET); "
                                                             "no TC voxel predicted (1 test case has TC)")


def test_one_predicted_case_clears_the_region_and_empty_pairs_do_not_count() -> None:
    high, low = _case(et=True), _case(et=False)
    no_et = np.where(high == 4, 1, high).astype(np.uint8)
    close = high.copy()
    close[4, 4, 4] = 1  # one enhancing voxel missed: a prediction, not a perfect copy (see the module docstring)
    rows = _rows(1, "BL", "a", no_et, high) + _rows(1, "BL", "b", close, high) + _rows(1, "BL", "c", low, low)
    assert missed_regions(pd.DataFrame(rows)) == []  # ET missed on a, predicted on b
    empty = np.zeros_like(high)
    rows = _rows(4, "BL", "a", empty, high) + _rows(4, "BL", "c", empty, empty)
    assert {(m.region, m.cases) for m in missed_regions(pd.DataFrame(rows))} == {("ET", 1), ("TC", 1), ("WT", 1)}
    assert missed_regions(pd.DataFrame(_rows(5, "BL", "c", empty, empty))) == []  # nothing to predict
    assert missed_regions(pd.DataFrame()) == []
