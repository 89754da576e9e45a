"""Benchmark: BraTS metrics of one 240x240x155 case, bench.evaluation vs. medpy, side by side in one process.

Contenders, on the same pair of label maps (the label of a synthetic case from ``bench.data.synth`` and a
perturbed copy of it: regions dilated, eroded or shifted, plus three far-away false-positive specks):
- medpy: ``medpy.metric.binary.dc`` + ``medpy.metric.binary.hd95`` for ET, TC and WT (region masks built
  beforehand and not timed, so medpy is not charged for them);
- bench: ``bench.evaluation.metrics.evaluate_case`` (region masks from the label maps, Dice, HD95,
  sensitivity, specificity for ET, TC and WT).

Several pairs (different perturbations), several repeats each; the median time per pair is reported and the
HD95 values of both are checked to agree within 1e-9.

Run: ``python benchmarks/bench_metrics.py [--repeats N] [--pairs N]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
from scipy import ndimage as ndi

SHAPE = (240, 240, 155)
SPACING = (1.0, 1.0, 1.0)


def phantom(rng: np.random.Generator, shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    """The label map of a synthetic BraTS-like case (bench.data.synth) that has all three regions."""
    from bench.data.synth import make_phantom

    while True:
        label = make_phantom(shape, rng).label
        if (label == 4).any() and (label == 1).any():
            return np.asarray(label, dtype=np.uint8)


def perturb(label: np.ndarray, rng: np.random.Generator, kind: str) -> np.ndarray:
    """A plausible prediction of ``label``: dilated, eroded or shifted regions plus a few far specks."""
    out = label.copy()
    if kind == "dilate":
        out[ndi.binary_dilation(label == 4, iterations=1) & (label == 2)] = 4
        out[ndi.binary_dilation(label > 0, iterations=2) & (label == 0)] = 2
    elif kind == "erode":
        wt = ndi.binary_erosion(label > 0, iterations=2)
        out[(label > 0) & ~wt] = 0
        out[(label == 4) & ~ndi.binary_erosion(label == 4)] = 1
    else:  # shift
        out = np.roll(label, tuple(int(v) for v in rng.integers(-3, 4, 3)), axis=(0, 1, 2))
    for _ in range(3):  # far-away false-positive specks
        idx = tuple(int(rng.integers(0, s - 2)) for s in label.shape)
        out[idx[0] : idx[0] + 2, idx[1] : idx[1] + 2, idx[2] : idx[2] + 2] = 4
    return out


def main(argv: list[str] | None = None) -> int:
    from medpy.metric.binary import dc as medpy_dc
    from medpy.metric.binary import hd95 as medpy_hd95

    from bench.data.formats import REGIONS, region_masks
    from bench.evaluation.metrics import evaluate_case

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    kinds = ("dilate", "erode", "shift")
    rows = []
    worst = 0.0
    for i in range(args.pairs):
        gt = phantom(rng)
        pred = perturb(gt, rng, kinds[i % len(kinds)])
        mp, mg = region_masks(pred), region_masks(gt)
        t_medpy, t_bench = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            ref = {
                r: (medpy_dc(mp[r], mg[r]), medpy_hd95(mp[r], mg[r], voxelspacing=SPACING)) for r in REGIONS
            }
            t1 = time.perf_counter()
            ours = evaluate_case(pred, gt, SPACING)
            t2 = time.perf_counter()
            t_medpy.append(t1 - t0)
            t_bench.append(t2 - t1)
        for r in REGIONS:
            worst = max(worst, abs(ref[r][1] - ours[r].hd95), abs(ref[r][0] - ours[r].dice))
        sizes = "/".join(str(int(mg[r].sum())) for r in REGIONS)
        hds = "/".join(f"{ours[r].hd95:.3f}" for r in REGIONS)
        m_med, b_med = statistics.median(t_medpy), statistics.median(t_bench)
        rows.append((kinds[i % len(kinds)], sizes, hds, m_med, b_med, m_med / b_med))

    print(f"shape {SHAPE}, spacing {SPACING}, {args.repeats} repeats per pair, median times")
    head = ("pair", "GT voxels ET/TC/WT", "HD95 ET/TC/WT (mm)", "medpy s", "bench ms", "ratio")
    print(f"{head[0]:8} {head[1]:22} {head[2]:24} {head[3]:>9} {head[4]:>9} {head[5]:>7}")
    for kind, sizes, hds, m, b, ratio in rows:
        print(f"{kind:8} {sizes:22} {hds:24} {m:9.3f} {b * 1e3:9.1f} {ratio:7.1f}x")
    ratios = [r[-1] for r in rows]
    print(f"median ratio {statistics.median(ratios):.1f}x (min {min(ratios):.1f}x); "
          f"max |HD95/Dice difference| vs medpy: {worst:.3g}")
    return 0 if worst <= 1e-9 else 1


if __name__ == "__main__":
    sys.exit(main())
