"""Regions a configuration never predicted: a trick that erases a region must not hide behind a mean.

A trained stack that labels no voxel of a region (ET, say) still gets a Dice mean: 1.0 on every case whose
reference lacks the region too, 0.0 (and the HD95 penalty) on the others. Averaged with the other regions,
or reported as one number per configuration, that can look like a weak result instead of a broken one. The
check below reads the stored per-case metrics and names every (cell, region) where the prediction was empty
on every test case whose reference has the region.

From the stored BraTS metrics, exactly:
- *missed* (prediction empty, reference not): ``penalty`` and specificity exactly 1.0 (an empty prediction has
  no false positive; a non-empty prediction against an empty reference has at least one, so its specificity
  is below 1);
- *predicted* (both non-empty): no penalty, and not the both-empty values (Dice 1, HD95 0, sensitivity 1,
  specificity 1). A perfect prediction of a non-empty reference has the both-empty values too and is counted
  as empty; it can only matter when every other case of that region was missed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Missed", "missed_regions", "missed_note", "missed_notes"]


@dataclass(frozen=True)
class Missed:
    """A region the cell's prediction never contained although ``cases`` test references have it."""

    cell_id: int
    region: str
    cases: int  # test cases whose reference has the region (all of them predicted empty)


def missed_regions(metrics: Any) -> list[Missed]:
    """Every (cell, region) of ``metrics`` (a DataFrame with cell_id, region, dice, hd95, sensitivity,
    specificity, penalty: one row per case and region) predicted empty on every case whose reference has it."""
    out: list[Missed] = []
    if metrics is None or len(metrics) == 0:
        return out
    for (cell_id, region), g in metrics.groupby(["cell_id", "region"], sort=True):
        penalty = g["penalty"].astype(bool)
        missed = penalty & (g["specificity"] == 1.0)
        both_empty = (~penalty & (g["dice"] == 1.0) & (g["hd95"] == 0.0) & (g["sensitivity"] == 1.0)
                      & (g["specificity"] == 1.0))
        predicted = ~penalty & ~both_empty
        if int(missed.sum()) > 0 and not bool(predicted.any()):
            out.append(Missed(int(cell_id), str(region), int(missed.sum())))
    return out


def missed_note(regions: list[str], cases: dict[str, int]) -> str:
    """``"no ET voxel predicted (3 test cases have ET)"``, several regions joined by ``; ``."""
    return "; ".join(f"no {r} voxel predicted ({cases[r]} test case{'s' if cases[r] != 1 else ''} "
                     f"{'have' if cases[r] != 1 else 'has'} {r})" for r in regions)


def missed_notes(metrics: Any) -> list[str]:
    """One line per configuration label with missed regions, for a report: ``"BL+multitask: no ET voxel
    predicted in 2 of 2 cells (fold/seed), on the 3 test cases that have ET"``."""
    found = missed_regions(metrics)
    if not found:
        return []
    labels = metrics.groupby("cell_id")["label"].first().to_dict() if "label" in metrics else {}
    cells_of = metrics.groupby("label")["cell_id"].nunique().to_dict() if "label" in metrics else {}
    by: dict[tuple[str, str], list[Missed]] = {}
    for m in found:
        by.setdefault((str(labels.get(m.cell_id, m.cell_id)), m.region), []).append(m)
    out = []
    for (label, region), ms in by.items():
        total = int(cells_of.get(label, len(ms)))
        cases = sorted({m.cases for m in ms})
        n_cases = str(cases[0]) if len(cases) == 1 else f"{cases[0]}-{cases[-1]}"
        out.append(f"{label}: no {region} voxel predicted in {len(ms)} of {total} cell{'s' if total != 1 else ''}, "
                   f"on the {n_cases} test case(s) that have {region}")
    return out
