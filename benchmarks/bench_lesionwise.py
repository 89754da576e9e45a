"""Benchmark: BraTS 2023 lesion-wise evaluation of 240x240x155 cases, bench vs. the straightforward version.

Contenders, on the same label maps (synthetic cases with 1 to 30 separate lesions, each an oedema blob with a
core and an enhancing part; the prediction is a perturbed copy: shifted, grown or shrunk lesions, some lesions
dropped, stray voxels added):
- reference: ``tests/lesionwise_reference.py``, the evaluator's algorithm written plainly (per lesion a
  full-volume dilation, ``np.unique`` and ``np.isin``; ``cc3d`` components; DeepMind ``surface_distance``);
- bench: ``bench.evaluation.lesionwise.lesionwise_case`` (box-cropped, one labelling pass per region).

Both run on the same case one after the other (interleaved per case, so load on a shared machine hits both
alike); all nine values and three counts of the three regions are compared (max abs difference reported).
A second part times the 26-connected labelling of one case's WT box and of the full volume with
``scipy.ndimage.label`` and ``cc3d.connected_components``.

Run: ``python benchmarks/bench_lesionwise.py [--lesions 1 5 15 30] [--cohort gli] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from lesionwise_reference import reference_case  # noqa: E402

from bench.evaluation.lesionwise import lesionwise_case  # noqa: E402

SHAPE = (240, 240, 155)
FIELDS = ("lesion_dice", "lesion_hd95", "legacy_dice", "legacy_hd95", "sensitivity", "specificity",
          "num_tp", "num_fp", "num_fn")


def _ball(shape, centre, radii) -> tuple[tuple[slice, ...], np.ndarray]:
    lo = [max(0, int(c - r) - 1) for c, r in zip(centre, radii)]
    hi = [min(n, int(c + r) + 2) for c, r, n in zip(centre, radii, shape)]
    grids = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi))]
    d2 = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii))
    return tuple(slice(a, b) for a, b in zip(lo, hi)), d2 <= 1.0


def make_case(rng: np.random.Generator, n_lesions: int) -> tuple[np.ndarray, np.ndarray]:
    """(prediction, reference) BraTS-2019 label maps with ``n_lesions`` lesions inside the brain box."""
    gt = np.zeros(SHAPE, np.uint8)
    pred = np.zeros(SHAPE, np.uint8)
    big = n_lesions <= 3
    for _ in range(n_lesions):
        r = rng.uniform(12, 25) if big else rng.uniform(2.5, 10)
        c = [rng.uniform(40 + r, n - 40 - r) for n in SHAPE[:2]] + [rng.uniform(20 + r, SHAPE[2] - 20 - r)]
        radii = [r * rng.uniform(0.7, 1.3) for _ in range(3)]
        for lab, f in ((2, 1.0), (1, 0.6), (4, 0.35)):
            box, m = _ball(SHAPE, c, [x * f for x in radii])
            gt[box][m] = lab
        if rng.random() < 0.1:
            continue  # missed lesion
        c2 = [x + rng.normal(0, 1.5) for x in c]
        g = rng.uniform(0.8, 1.15)
        for lab, f in ((2, 1.0), (1, 0.55), (4, 0.4)):
            box, m = _ball(SHAPE, c2, [x * f * g for x in radii])
            pred[box][m] = lab
    specks = rng.random(SHAPE) < 2e-6
    pred[specks] = 2
    return pred, gt


def compare(a: dict, b: dict) -> float:
    worst = 0.0
    for region in ("ET", "TC", "WT"):
        mine = a[region].as_dict()
        for k in FIELDS:
            if k.startswith("num_"):
                if mine[k] != b[region][k]:
                    return float("inf")
            else:
                worst = max(worst, abs(mine[k] - b[region][k]))
    return worst


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def labeller_figures(rng: np.random.Generator, repeats: int) -> None:
    import cc3d

    _, gt = make_case(rng, 30)
    wt = gt > 0
    box = ndimage.find_objects(wt.astype(np.uint8))[0]
    s26 = np.ones((3, 3, 3), bool)
    print(f"\n26-connected labelling of a 30-lesion WT mask (median of {repeats}):")
    for name, mask in (("WT box " + "x".join(str(s.stop - s.start) for s in box), wt[box]), ("full volume", wt)):
        t_sc, (lab_sc, n_sc) = timed(lambda m=mask: ndimage.label(m, structure=s26), repeats)
        t_cc, lab_cc = timed(lambda m=mask: cc3d.connected_components(m, connectivity=26), repeats)
        same = n_sc == int(lab_cc.max()) and np.array_equal(lab_sc > 0, lab_cc > 0)
        print(f"  {name:<22} scipy.ndimage.label {t_sc * 1e3:7.1f} ms   cc3d {t_cc * 1e3:7.1f} ms   "
              f"components {n_sc} / {int(lab_cc.max())}{'' if same else '  DIFFERENT'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lesions", type=int, nargs="+", default=[1, 5, 15, 30])
    ap.add_argument("--cohort", default="gli")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of the bench side (median reported)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    print(f"cases {SHAPE}, cohort {args.cohort}; reference once per case, bench median of {args.repeats}")
    print(f"{'lesions':>7} {'GT lesions ET/TC/WT':>20} {'reference s':>12} {'bench ms':>9} {'speed-up':>9} "
          f"{'max |diff|':>11}")
    ref_total = bench_total = 0.0
    ok = True
    for n in args.lesions:
        pred, gt = make_case(rng, n)
        t_ref, ref = timed(lambda p=pred, g=gt: reference_case(p, g, (1.0, 1.0, 1.0), args.cohort), 1)
        t_b, mine = timed(lambda p=pred, g=gt: lesionwise_case(p, g, (1.0, 1.0, 1.0), args.cohort), args.repeats)
        diff = compare(mine, ref)
        ok &= diff <= 1e-9
        ref_total += t_ref
        bench_total += t_b
        counts = "/".join(str(ref[r]["num_tp"] + ref[r]["num_fn"]) for r in ("ET", "TC", "WT"))
        print(f"{n:>7} {counts:>20} {t_ref:>12.2f} {t_b * 1e3:>9.1f} {t_ref / t_b:>8.1f}x {diff:>11.2e}")
    print(f"{'all':>7} {'':>20} {ref_total:>12.2f} {bench_total * 1e3:>9.1f} {ref_total / bench_total:>8.1f}x")
    print("values identical (<= 1e-9, equal counts):", "yes" if ok else "NO")
    labeller_figures(rng, args.repeats)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
