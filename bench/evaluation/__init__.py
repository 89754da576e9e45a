"""BraTS evaluation: Dice, HD95, sensitivity, specificity with the BraTS 2017-2022 rules (``metrics``), the
BraTS 2023 lesion-wise definition (``lesionwise``, with DeepMind-style robust HD95 in ``surface``);
`bench evaluate`.

``metrics``, ``surface`` and ``lesionwise`` import numpy and scipy only; ``evaluate`` (folder evaluation)
adds nibabel through the readers.
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
