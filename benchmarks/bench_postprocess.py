"""BraTS post-processing tricks on phantoms with the post-processing traps (bench.data.traps).

    python benchmarks/bench_postprocess.py [--cases 16] [--shape 96 96 64] [--iterations 300] [--seed 0]
                                           [--work DIR]

``--work DIR`` keeps the data and the training there; a second call with the same DIR reuses both.

Writes ``--cases`` phantoms with ``traps=True`` (faint spurious enhancement in the low-grade cases, bright
non-tumour FLAIR spots far from the lesion in every case), prepares them (3 folds, 25% test), trains one
baseline model (fold 0; a plain U-Net, depth 3, width 8, patch 32, instance norm), predicts the test cases
once without post-processing, then applies each post-processing to the same predictions (what the inference
tricks do, after the probabilities are mapped back to the source grid) and evaluates them with bench's BraTS
metrics: mean Dice and HD95 per region, and the ET Dice of the low-grade test cases. The ``validation`` rows
choose the parameters on fold 0's validation cases (``bench.engine.api.select_postprocess``) and report the
choice. One seed, one training: a measurement of what each rule does to these predictions, not of its mean
effect over trainings.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.engine.postprocess import DropStrayComponents, SmallEtToNecrosis, apply_postprocess  # noqa: E402

ARMS = {
    "none": (),
    "et_to_necrosis (500 mm3)": (SmallEtToNecrosis(500.0),),
    "drop_stray_components (0.1, 20 mm)": (DropStrayComponents(0.1, 20.0),),
    "both": (DropStrayComponents(0.1, 20.0), SmallEtToNecrosis(500.0)),
    "both, chosen on validation": (DropStrayComponents(0.1, 20.0, "validation"),
                                   SmallEtToNecrosis(500.0, "validation")),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=16)
    ap.add_argument("--shape", type=int, nargs=3, default=(96, 96, 64))
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=None, help="folder for data and training (kept; reused)")
    args = ap.parse_args()

    from bench.data.prepare import prepare
    from bench.data.synth import synthesize
    from bench.engine import api
    from bench.engine.config import InferenceConfig, ModelConfig, TrainConfig
    from bench.evaluation.metrics import evaluate_case

    tmp = args.work or Path(tempfile.mkdtemp(prefix="bench-postprocess-"))
    t0 = time.perf_counter()
    if not (tmp / "data").is_dir():
        synthesize(tmp / "data", cases=args.cases, shape=args.shape, seed=args.seed, traps=True)
    ds = prepare(tmp / "data", tmp / "cache", folds=3, test_fraction=0.25, progress=False)
    low = {c for c in ds.case_ids if not ds.has_et(c)}
    print(f"{args.cases} trap phantoms of {'x'.join(map(str, args.shape))} (low-grade: {len(low)}), test "
          f"{ds.test_ids()}, fold-0 validation {ds.val_ids(0)}; data {time.perf_counter() - t0:.0f} s")
    mcfg = ModelConfig(width=8, depth=3, norm="instance")
    tcfg = TrainConfig(iterations=args.iterations, epoch_length=50, patch=32, batch=2, num_workers=0,
                       val_every=0, threads=args.threads, seed=args.seed, device="cpu")
    t0 = time.perf_counter()
    ck = api.train(ds, tmp / "train", mcfg, tcfg).checkpoint
    print(f"training {args.iterations} iterations: {time.perf_counter() - t0:.0f} s")
    icfg = InferenceConfig(window=32, overlap=0.5, weights="gaussian", device="cpu")
    t0 = time.perf_counter()
    raw = dict(api.predict([ck], ds, ds.test_ids(), icfg))
    print(f"prediction of {len(raw)} test cases: {time.perf_counter() - t0:.1f} s")

    rows = []
    for arm, steps in ARMS.items():
        note = ""
        if any(s.select == "validation" for s in steps):
            chosen, lines = api.select_postprocess([ck], ds, dataclasses.replace(icfg, postprocess=steps))
            steps, note = chosen.postprocess, "; ".join(lines)
        t0 = time.perf_counter()
        per = {c: evaluate_case(apply_postprocess(lab, steps, ds.meta(c).spacing), ds.source_label(c),
                                ds.meta(c).spacing) for c, lab in raw.items()}
        secs = (time.perf_counter() - t0) / len(per)
        row = {"arm": arm, "s/case": secs}
        for r in ("WT", "TC", "ET"):
            row[f"Dice {r}"] = statistics.mean(m[r].dice for m in per.values())
            row[f"HD95 {r}"] = statistics.mean(m[r].hd95 for m in per.values())
        lows = [per[c]["ET"].dice for c in per if c in low]
        row["ET Dice low-grade"] = statistics.mean(lows) if lows else float("nan")
        rows.append(row)
        if note:
            print(f"{arm}: {note}")
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for row in rows:
        print("| " + " | ".join(v if isinstance(v, str) else f"{v:.3f}" for v in row.values()) + " |")
    per_case = {c: {r: round(m.dice, 3) for r, m in evaluate_case(lab, ds.source_label(c),
                                                                 ds.meta(c).spacing).items()}
                for c, lab in raw.items()}
    print("per test case without post-processing (Dice):", per_case)
    print("predicted WT components per test case:",
          {c: int(_components(lab)) for c, lab in raw.items()})


def _components(labels: np.ndarray) -> int:
    from scipy import ndimage

    return ndimage.label(labels > 0, structure=np.ones((3, 3, 3), bool))[1]


if __name__ == "__main__":
    main()
