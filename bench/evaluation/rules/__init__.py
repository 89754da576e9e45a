"""The BraTS evaluation definitions of each year, one file each (the contract is ``_base.Rules``):

- ``2017``: whole-image Dice / HD95 / sensitivity / specificity (BraTS 2017-2022), :mod:`.brats2017`;
- ``2023``: lesion-wise Dice / HD95 (BraTS 2023), :mod:`.brats2023`;
- ``2024``: lesion-wise with post-treatment labels (NETC, SNFH, ET, RC), MET and MEN-RT, :mod:`.brats2024`;
- ``2025``: the Panoptica-based BraTS-evaluation package and its leaderboard columns, :mod:`.brats2025`.

``get_rules(year)`` returns one; ``case_values(...)`` scores a case held in bench's canonical BraTS 2019 labels
(as a run does) and returns ``(region, metric, value)`` triples.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bench.errors import SpecError
from bench.evaluation.rules._base import Rules
from bench.evaluation.rules.brats2017 import Brats2017
from bench.evaluation.rules.brats2023 import Brats2023
from bench.evaluation.rules.brats2024 import Brats2024
from bench.evaluation.rules.brats2025 import Brats2025

__all__ = ["Rules", "RULES", "DEFAULT_RULES", "get_rules", "case_values"]

RULES: dict[str, Rules] = {r.year: r for r in (Brats2017(), Brats2023(), Brats2024(), Brats2025())}
DEFAULT_RULES = "2017"


def get_rules(year: str | int | Rules, *, where: str = "--rules") -> Rules:
    """The rule set of ``year`` ("2017", "2023", "2024", "2025"); SpecError naming ``where`` otherwise."""
    if isinstance(year, Rules):
        return year
    key = str(year).strip()
    if key not in RULES:
        raise SpecError(f"{where}: unknown rules {year!r}; expected one of {', '.join(RULES)}")
    return RULES[key]


def case_values(
    year: str | Rules, cohort: str | None, pred_brats: np.ndarray, gt_brats: np.ndarray,
    spacing: Sequence[float] | float | None, case_id: str = "",
) -> list[tuple[str, str, float]]:
    """``(region, metric, value)`` of one case given in BraTS 2019 labels, scored by ``year``'s rules."""
    rules = get_rules(year)
    c = rules.cohort(cohort)
    rows = rules.score(rules.from_brats2019(pred_brats), rules.from_brats2019(gt_brats), spacing, c, case_id)
    return rules.values(rows, c)
