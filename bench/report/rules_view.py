"""Report views by a later year's rules (``bench report --metric brats2024|brats2025``): each case's Dice and
HD95 replaced by that year's lesion-wise values stored with the run (``case_values``), and the caption sentence
naming the rules.

2024: ``LesionWise_Score_Dice`` / ``LesionWise_Score_HD95`` (always defined). 2025: ``lesionwise_dsc_mean`` /
``lesionwise_hd95_mean``; where the official code leaves them empty (no lesion on either side) the view counts
Dice 1 and HD95 0, and an infinite HD95 (no matched lesion) counts 373 mm, the parser's fill for HD95; the
caption says how many values were filled.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from bench.errors import StoreError
from bench.report.tables import ReportData

__all__ = ["RULE_METRICS", "rules_view"]

# --metric name -> (rules year, Dice metric, HD95 metric)
RULE_METRICS: dict[str, tuple[str, str, str]] = {
    "brats2024": ("2024", "LesionWise_Score_Dice", "LesionWise_Score_HD95"),
    "brats2025": ("2025", "lesionwise_dsc_mean", "lesionwise_hd95_mean"),
}
_HD95_FILL = 373.0


def rules_view(data: ReportData, values: pd.DataFrame, metric: str) -> tuple[ReportData, str]:
    """``data`` with Dice / HD95 of ET, TC, WT taken from ``values`` (``queries.case_values``) by ``metric``'s
    rules, and the caption note. StoreError when the experiment has no such values."""
    from bench.evaluation.rules import get_rules

    year, dice_m, hd_m = RULE_METRICS[metric]
    v = values[(values["rules"] == year) & values["metric"].isin([dice_m, hd_m])
               & values["region"].isin(["ET", "TC", "WT"])]
    cm = data.case_metrics
    if v.empty or cm is None or cm.empty:
        raise StoreError(
            f"--metric {metric}: experiment {data.experiment!r} has no BraTS {year} values; set [evaluation] "
            f"rules = \"{year}\" (and cohort) in its spec and run it"
        )
    cohort = str(v["cohort"].iloc[0])
    wide = v.pivot_table(index=["cell_id", "case_id", "region"], columns="metric", values="value",
                         aggfunc="first", dropna=False).reset_index()
    view = cm.drop(columns=["dice", "hd95"]).merge(wide, on=["cell_id", "case_id", "region"], how="inner")
    dice = view[dice_m].astype(float).to_numpy()
    hd = view[hd_m].astype(float).to_numpy()
    n_nan = int(np.isnan(dice).sum())
    n_inf = int(np.isinf(hd).sum())
    view["dice"] = np.where(np.isnan(dice), 1.0, dice)
    view["hd95"] = np.where(np.isnan(hd), 0.0, np.where(np.isinf(hd), _HD95_FILL, hd))
    view["penalty"] = False  # the 373.13 mm whole-image penalty does not apply to these values
    view = view.drop(columns=[dice_m, hd_m])
    rules = get_rules(year)
    note = (f"Dice and HD95 are the {rules.describe(cohort)}: {dice_m} and {hd_m} per case and region.")
    if year == "2025":
        note += (f" Regions without a lesion on either side (empty in the official output) count Dice 1 and HD95 0 "
                 f"({n_nan} of {len(view)} values); no matched lesion counts HD95 {_HD95_FILL:g} mm ({n_inf}).")
    return dataclasses.replace(data, case_metrics=view), note
