"""bench's overhead around nnU-Net: the same training through ``bench train --engine nnunet`` and through
``nnUNetv2_train``, side by side in one run.

    python benchmarks/bench_nnunet.py [--cases 8] [--shape 64 64 48] [--epochs 3] [--iterations 5]
                                      [--val-iterations 2] [--rounds 2] [--device cpu]

Both run the same trainer class on the same plans and preprocessed data: bench plans and preprocesses the
synthetic cases once (not timed); ``nnUNetv2_train``'s entry point (``run_training_entry``: its arguments,
trainer construction, checkpoint handling, ``run_training`` and final validation) then trains bench's composed
baseline class, given to its trainer lookup directly (see DRIVER), with nnU-Net's folders pointed at bench's
prepared dataset. Timed: the
wall time from starting the process to the final checkpoint's write (``checkpoint_final.pth``), i.e. before
nnU-Net's own final validation (bench evaluates the test cases itself); the whole process too. Rounds
alternate the two, so machine load hits both alike. Target: bench at most 5% slower.

One difference is bench's on purpose: bench writes a checkpoint after every epoch (a killed or preempted cell
resumes from the last epoch), nnU-Net every 50 epochs; with short epochs that is part of what is measured.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

EXT_TRAINER = """
from bench.engines.nnunet.compose import trainer_class
from tricks import resolve

_Base = trainer_class(resolve([]), budget={budget!r})


class nnUNetTrainerBenchCmp(_Base):
    pass
"""

# nnUNetv2_train's own entry point with its trainer lookup pointed at the class above: nnU-Net's lookup imports
# every trainer module, and its Primus trainers import timm -> torchvision, which fails to import over the CPU
# torch 2.13.0 with PyPI's torchvision 0.28.0 ("operator torchvision::nms does not exist")
DRIVER = """
import sys

if __name__ == "__main__":  # nnU-Net's final validation spawns processes that import this file
    import nnunetv2.run.run_training as rt
    from bench_cmp_trainer import nnUNetTrainerBenchCmp

    rt.recursive_find_trainer_class_by_name = lambda name: nnUNetTrainerBenchCmp
    sys.argv = ["nnUNetv2_train", *sys.argv[1:]]
    rt.run_training_entry()
"""


def _final_time(root: Path, t0: float, proc: subprocess.Popen) -> tuple[float, float]:
    proc.wait()
    wall = time.time() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{proc.args[:3]} failed with exit code {proc.returncode}")
    finals = list(root.rglob("checkpoint_final.pth"))
    if not finals:
        raise SystemExit(f"no checkpoint_final.pth under {root}")
    return finals[0].stat().st_mtime - t0, wall


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=8)
    ap.add_argument("--shape", type=int, nargs=3, default=[64, 64, 48])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=5, help="iterations per epoch")
    ap.add_argument("--val-iterations", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=1, help="nnUNet_n_proc_DA for both")
    args = ap.parse_args(argv)

    from bench.data.synth import synthesize

    tmp = Path(tempfile.mkdtemp(prefix="bench-nnunet-"))
    src = tmp / "src"
    synthesize(src, cases=args.cases, shape=tuple(args.shape), seed=0)
    ws = tmp / "ws"
    ws.mkdir()
    budget = {"epochs": args.epochs, "iterations_per_epoch": args.iterations, "val_iterations": args.val_iterations}
    env = {**os.environ, "nnUNet_n_proc_DA": str(args.workers)}
    bench_cmd = [sys.executable, "-m", "bench", "train", "--engine", "nnunet", "--data", str(src), "--workspace",
                 str(ws), "--folds", "2", "--epochs", str(args.epochs), "--epoch-length", str(args.iterations),
                 "--val-iterations", str(args.val_iterations), "--device", args.device, "--workers",
                 str(args.workers)]
    t0 = time.time()  # first call: plans and preprocesses (not timed) and trains once (warm-up)
    res = subprocess.run([*bench_cmd, "--out", str(tmp / "warmup")], env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"bench train failed:\n{res.stderr[-3000:]}")
    print(f"prepared and one warm-up training in {time.time() - t0:.1f} s", flush=True)
    nn_root = next((ws / ".bench" / "nnunet").glob("*/nnUNet_preprocessed")).parent
    ext = tmp / "ext"
    ext.mkdir()
    (ext / "bench_cmp_trainer.py").write_text(textwrap.dedent(EXT_TRAINER.format(budget=budget)))
    (ext / "nnunet_train.py").write_text(DRIVER)
    nn_env = {**env, "nnUNet_raw": str(nn_root / "nnUNet_raw"), "nnUNet_preprocessed": str(nn_root / "nnUNet_preprocessed"),
              "nnUNet_extTrainer": str(ext), "PYTHONPATH": str(ext)}
    rows: dict[str, list[tuple[float, float]]] = {"bench": [], "nnUNetv2_train": []}
    for r in range(args.rounds):
        for name in (("bench", "nnUNetv2_train") if r % 2 == 0 else ("nnUNetv2_train", "bench")):
            out = tmp / f"{name}-{r}"
            if name == "bench":
                cmd = [*bench_cmd, "--out", str(out)]
                e = env
            else:
                cmd = [sys.executable, str(ext / "nnunet_train.py"), "1", "3d_fullres", "0", "-tr",
                       "nnUNetTrainerBenchCmp", "-device", args.device]
                e = {**nn_env, "nnUNet_results": str(out)}
            t0 = time.time()
            proc = subprocess.Popen(cmd, env=e, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            rows[name].append(_final_time(out, t0, proc))
            print(f"round {r}: {name:15s} to the final checkpoint {rows[name][-1][0]:6.1f} s, "
                  f"process {rows[name][-1][1]:6.1f} s", flush=True)
    b = statistics.median(t for t, _ in rows["bench"])
    n = statistics.median(t for t, _ in rows["nnUNetv2_train"])
    print(f"\n{args.cases} cases {'x'.join(map(str, args.shape))}, {args.epochs} epochs x {args.iterations} "
          f"iterations (+{args.val_iterations} validation), {args.device}, nnUNet_n_proc_DA={args.workers}")
    print(f"median to the final checkpoint: bench {b:.1f} s, nnUNetv2_train {n:.1f} s: bench/nnU-Net = {b / n:.3f}"
          f" (target <= 1.05)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
