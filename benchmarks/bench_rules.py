"""Benchmark: BraTS 2025 rules on 240x240x155 cases, bench vs. the official BraTS-evaluation package.

Both read the same NIfTI files and score them with the ``gli`` config: the package's ``evaluate_single_exam``
(Panoptica on SimpleITK arrays, the evaluator loaded once, as its CLI does) against bench's reading
(``bench.evaluation.evaluate_rules.read_pair_rules``) plus ``Brats2025.score``, one after the other per case
(interleaved, so load on a shared machine hits both alike), median of ``--repeats``. Afterwards the package's
results go through its own ``seg`` parser and every one of the 91 columns is compared with bench's row
(max abs difference; NaN/inf must agree; counts must be equal). A second table times the 2024 rules
(``Brats2024.score``) on the same arrays, for information.

Cases: post-treatment glioma label maps (1 NETC, 2 SNFH, 3 ET, 4 RC) with ``--lesions`` separate tumours,
a resection cavity beside about half of them; the prediction a perturbed copy (shifted, grown or shrunk, some
tumours missed, stray voxels all over the volume).

Run: ``python benchmarks/bench_rules.py [--lesions 1 3 10 20] [--repeats 3] [--seed 0]`` (needs
``pip install --no-deps panoptica==2.1.7 BraTS-evaluation==0.0.10`` plus rich, ruamel.yaml, scikit-image, plotly).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
import tempfile
import time
import warnings
from importlib.resources import files
from pathlib import Path

import nibabel as nib
import numpy as np

from bench.data.formats import brats_affine
from bench.data.readers import CaseFiles
from bench.evaluation.evaluate_rules import read_pair_rules
from bench.evaluation.rules import get_rules

SHAPE = (240, 240, 155)


def _ball(centre, radii) -> tuple[tuple[slice, ...], np.ndarray]:
    lo = [max(0, int(c - r) - 1) for c, r in zip(centre, radii)]
    hi = [min(n, int(c + r) + 2) for c, r, n in zip(centre, radii, SHAPE)]
    grids = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi))]
    d2 = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii))
    return tuple(slice(a, b) for a, b in zip(lo, hi)), d2 <= 1.0


def make_case(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(prediction, reference) in the 2024+ numbering."""
    gt = np.zeros(SHAPE, np.uint8)
    pred = np.zeros(SHAPE, np.uint8)
    for _ in range(n):
        r = rng.uniform(12, 25) if n <= 3 else rng.uniform(3, 10)
        c = [rng.uniform(40 + r, s - 40 - r) for s in SHAPE[:2]] + [rng.uniform(20 + r, SHAPE[2] - 20 - r)]
        radii = [r * rng.uniform(0.7, 1.3) for _ in range(3)]
        cavity = rng.random() < 0.5
        off = [x + r * 0.8 for x in c]
        for target, jitter, grow in ((gt, 0.0, 1.0), (pred, 1.5, rng.uniform(0.8, 1.15))):
            if target is pred and rng.random() < 0.1:
                continue  # a missed tumour
            cc = [x + rng.normal(0, jitter) for x in c]
            for lab, f in ((2, 1.0), (1, 0.55), (3, 0.35)):
                box, m = _ball(cc, [x * f * grow for x in radii])
                target[box][m] = lab
            if cavity:
                box, m = _ball(off, [x * 0.4 * grow for x in radii])
                target[box][m] = 4
    pred[rng.random(SHAPE) < 2e-6] = 2
    return pred, gt


def _num(v) -> float:
    if isinstance(v, str):
        return math.nan if v == "" else float(v)
    return float(v)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lesions", type=int, nargs="+", default=[1, 3, 10, 20])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    from brats_evaluation.evaluation import evaluate_single_exam
    from brats_evaluation.metrics_parser import parse_seg_results
    from panoptica import Panoptica_Evaluator

    evaluator = Panoptica_Evaluator.load_from_config(
        str(files("brats_evaluation").joinpath("configs", "config_gli.yaml")))
    r25, r24 = get_rules("2025"), get_rules("2024")
    rng = np.random.default_rng(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="bench_rules_"))
    affine = brats_affine(SHAPE)
    official, mine, table = [], [], []
    for i, n in enumerate(args.lesions):
        pred, gt = make_case(rng, n)
        name = f"BraTS-GLI-{i:05d}-000"
        pp, gp = tmp / "pred" / f"{name}.nii.gz", tmp / "ref" / f"{name}-seg.nii.gz"
        for path, arr in ((pp, pred), (gp, gt)):
            path.parent.mkdir(exist_ok=True)
            nib.save(nib.Nifti1Image(arr, affine), path)
        cf = CaseFiles(name, "brats2023", {}, gp, gp.parent)
        t_off, t_me, t_24 = [], [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            res = evaluate_single_exam(str(pp), str(gp), name, evaluator)
            t_off.append(time.perf_counter() - t)
            t = time.perf_counter()
            p, g, spacing = read_pair_rules(pp, cf, r25, "gli")
            row = r25.score(p, g, spacing, "gli", name)[0]
            t_me.append(time.perf_counter() - t)
            t = time.perf_counter()
            r24.score(p, g, spacing, "gli", name)
            t_24.append(time.perf_counter() - t)
        official.append(res)
        mine.append(row)
        lesions = {k: row[f"all_instance_tp_{k}"] + row[f"all_instance_fn_{k}"] for k in ("et", "rc", "wt")}
        table.append((n, lesions, statistics.median(t_off), statistics.median(t_me), statistics.median(t_24)))
        print(f"case {i}: {n} tumours done", file=sys.stderr)
    js = tmp / "official.json"
    js.write_text(json.dumps({"metrics": official, "missings": []}, default=lambda o: o.item()))
    parse_seg_results(str(js), str(tmp / "official.csv"))
    with open(tmp / "official.csv", newline="") as fh:
        ref = list(csv.DictReader(fh))[: len(mine)]
    worst, same_counts, same_special = 0.0, True, True
    for a, b in zip(mine, ref):
        for col in list(a)[1:]:
            x, y = _num(a[col]), _num(b[col])
            if math.isnan(y) or math.isinf(y):
                same_special &= (math.isnan(x) and math.isnan(y)) or x == y
            elif "_tp_" in col or "_fp_" in col or "_fn_" in col:
                same_counts &= x == y
            else:
                worst = max(worst, abs(x - y))
    print("\n| tumours | GT lesions ET/RC/WT | BraTS-evaluation 0.0.10 | bench 2025 | speed-up | bench 2024 |")
    print("|---|---|---|---|---|---|")
    for n, les, a, b, c in table:
        print(f"| {n} | {les['et']}/{les['rc']}/{les['wt']} | {a:.2f} s | {b:.3f} s | {a / b:.1f}x | {c:.3f} s |")
    tot_a, tot_b = sum(t[2] for t in table), sum(t[3] for t in table)
    print(f"| all | | {tot_a:.2f} s | {tot_b:.3f} s | {tot_a / tot_b:.1f}x | {sum(t[4] for t in table):.3f} s |")
    print(f"\n91 columns x {len(mine)} cases: max abs difference {worst:.3g}, counts equal: {same_counts}, "
          f"NaN/inf equal: {same_special}")
    return 0 if worst <= 1e-9 and same_counts and same_special else 1


if __name__ == "__main__":
    raise SystemExit(main())
