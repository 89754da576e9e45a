"""BraTS evaluation: Dice, HD95, sensitivity, specificity with the BraTS 2017-2022 rules (``metrics``), the
BraTS 2023 lesion-wise definition (``lesionwise``, with DeepMind-style robust HD95 in ``surface``);
`bench evaluate`.

Each year's definition is a rule set in ``rules`` (2017, 2023, 2024, 2025; ``rules.get_rules(year)``), scored
on folders by ``evaluate_rules`` and per run case by ``per_case``.

``metrics``, ``surface``, ``lesionwise`` and ``rules`` import numpy and scipy only; ``evaluate`` (folder
evaluation) adds nibabel through the readers.
"""

from bench.evaluation.metrics import (
    METRIC_NAMES,
    RegionMetrics,
    dice,
    evaluate_case,
    hd95,
    sensitivity,
    specificity,
    surface_distances,
)

__all__ = [
    "METRIC_NAMES", "RegionMetrics", "dice", "evaluate_case", "hd95", "sensitivity", "specificity",
    "surface_distances",
]
