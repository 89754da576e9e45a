"""Engine benchmarks: learning on synthetic data, trainer overhead, sliding-window inference vs MONAI.

    python benchmarks/bench_engine.py learn [--iterations N] [--cases 20] [--data DIR]
    python benchmarks/bench_engine.py overhead
    python benchmarks/bench_engine.py infer

Every ratio is measured side by side in one process (the machine is shared; absolute times are noisy).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.engine.config import InferenceConfig, ModelConfig, TrainConfig  # noqa: E402


def _dataset(args: argparse.Namespace):
    if args.data:
        from bench.data.prepare import prepare

        return prepare(args.data, args.cache, spacing=args.spacing, progress=False)
    from bench.engine.synthetic import MemoryDataset

    return MemoryDataset(cases=args.cases, shape=tuple(args.shape), seed=args.seed, folds=5)


def learn(args: argparse.Namespace) -> None:
    import tricks
    from bench.engine import api
    from bench.evaluation.metrics import evaluate_case

    ds = _dataset(args)
    mc = dataclasses.replace(ModelConfig.cpu(), width=args.width, depth=args.depth, norm=args.norm)
    tc = TrainConfig.cpu(iterations=args.iterations, patch=args.patch, batch=args.batch, lr=args.lr,
                         seed=args.seed, num_workers=args.workers, val_every=0)
    stack = tricks.resolve(args.tricks)
    out = Path(tempfile.mkdtemp(prefix="bench-learn-"))
    stop = threading.Event()
    timer = threading.Timer(args.minutes * 60, stop.set)
    timer.start()
    t0 = time.perf_counter()
    last = {"i": 0}

    def progress(info: dict) -> None:
        last["i"] = info["iteration"]
        if info["iteration"] % 25 == 0:
            print(f"  it {info['iteration']:5d}  loss {info['loss']:.4f}  lr {info['lr']:.5f}  "
                  f"{time.perf_counter() - t0:6.1f}s", flush=True)

    try:
        if args.dice_smooth is not None or args.per_sample_dice:
            from bench.engine.losses import CEDiceLoss
            from bench.engine.recipe import TrainContext, baseline_recipe
            from bench.engine.train import run_training

            recipe = stack.build(baseline_recipe(tc))
            recipe.loss = CEDiceLoss(smooth=1.0 if args.dice_smooth is None else args.dice_smooth,
                                     batch_dice=not args.per_sample_dice)
            res = run_training(TrainContext(ds, out, mc, tc, recipe, stack, progress=progress, stop=stop))
        else:
            res = api.train(ds, out, mc, tc, stack, progress=progress, stop=stop)
        ckpt, done = res.checkpoint, res.iterations
    except api.TrainingStopped as exc:
        ckpt, done = exc.checkpoint, exc.iteration
    finally:
        timer.cancel()
    train_s = time.perf_counter() - t0
    rows = []
    for cid, labels in api.predict([ckpt], ds, ds.test_ids(), InferenceConfig(overlap=args.overlap)):
        m = evaluate_case(labels, ds.source_label(cid), ds.load(cid).meta.spacing)
        rows.append({r: m[r].dice for r in ("ET", "TC", "WT")})
    mean = {r: float(np.mean([row[r] for row in rows])) for r in ("ET", "TC", "WT")}
    print("\n| tricks | width | patch | batch | iterations done | train s | test cases | Dice WT | Dice TC | Dice ET |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {stack.label()} | {args.width} | {args.patch} | {args.batch} | {done}/{args.iterations} | "
          f"{train_s:.0f} | {len(rows)} | {mean['WT']:.3f} | {mean['TC']:.3f} | {mean['ET']:.3f} |")


def overhead(args: argparse.Namespace) -> None:
    """Full trainer iteration (loader worker, schedule, hooks, loss, clipping, progress) vs a bare
    forward + backward + step of the same model on one fixed batch of the same shape, same thread count."""
    from bench.engine import api
    from bench.engine.losses import CEDiceLoss, MeanCrossEntropy
    from bench.engine.model import build_model
    from bench.engine.recipe import StepState
    from bench.engine.synthetic import MemoryDataset

    ds = MemoryDataset(cases=8, shape=(96, 96, 64), seed=0, folds=2)
    mc = dataclasses.replace(ModelConfig.cpu(), width=args.width)
    tc = TrainConfig.cpu(iterations=args.iterations, patch=args.patch, batch=args.batch, num_workers=1,
                         val_every=0, checkpoint_every=0)
    threads = max(1, (__import__("os").cpu_count() or 1) - 1)  # what the trainer's auto setting uses

    def bare(n: int) -> list[float]:
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        model = build_model(mc)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.99, nesterov=True, weight_decay=3e-5)
        x = torch.rand(tc.batch, 4, tc.patch, tc.patch, tc.patch)
        y = torch.randint(0, 4, (tc.batch, tc.patch, tc.patch, tc.patch))
        loss_fn = CEDiceLoss()
        st = StepState(0, n, 0, 1, 0.01, (tc.patch,) * 3, tc.batch, MeanCrossEntropy())
        times = []
        for _ in range(n):
            t = time.perf_counter()
            loss = loss_fn(model(x), y, st).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t)
        return times

    def trainer() -> list[float]:
        stamps: list[float] = []
        out = Path(tempfile.mkdtemp(prefix="bench-ovh-"))
        api.train(ds, out, mc, tc, progress=lambda info: stamps.append(time.perf_counter()))
        return list(np.diff(stamps))

    rows = []
    for rnd in range(args.rounds):
        b = bare(args.iterations)[2:]
        t = trainer()[2:]
        rows.append((rnd, float(np.median(b)), float(np.median(t))))
    print("| round | bare step median s | trainer iteration median s | ratio |")
    print("|---|---|---|---|")
    for rnd, b, t in rows:
        print(f"| {rnd} | {b:.3f} | {t:.3f} | {t / b:.2f} |")
    b_all, t_all = np.median([r[1] for r in rows]), np.median([r[2] for r in rows])
    print(f"\nmedian over rounds: bare {b_all:.3f} s, trainer {t_all:.3f} s, ratio {t_all / b_all:.2f} "
          f"(goal <= 1.1); width {args.width}, patch {args.patch}, batch {args.batch}, threads {threads}")


def infer(args: argparse.Namespace) -> None:
    """Our sliding window over the brain box vs MONAI's sliding_window_inference over the whole 240x240x155
    volume: same model, window, overlap, Gaussian weights; labels compared inside the brain."""
    from monai.inferers import sliding_window_inference

    from bench.data.formats import MODALITIES
    from bench.data.synth import make_phantom
    from bench.engine.infer import predict_probabilities, to_source_grid
    from bench.engine.model import build_model
    from bench.engine.synthetic import preprocess

    torch.set_num_threads(max(1, (__import__("os").cpu_count() or 1)))
    ph = make_phantom((240, 240, 155), np.random.default_rng(0))
    image = np.stack([ph.images[m] for m in MODALITIES]).astype(np.float32)
    case, _ = preprocess("big", image, np.asarray(ph.label, np.uint8))
    # the same normalisation on the whole volume (the crop drops only zero background)
    sl = tuple(slice(a, b) for a, b in case.meta.bbox)
    full = np.zeros_like(image)
    full[(slice(None), *sl)] = case.image
    if args.model:
        from bench.engine.checkpoint import load_checkpoint
        from bench.engine.infer import model_from_checkpoint

        model = model_from_checkpoint(args.model, load_checkpoint(args.model))
    else:
        torch.manual_seed(0)
        model = build_model(dataclasses.replace(ModelConfig.cpu(), width=args.width, norm="batch"))
    model.eval()
    cfg = InferenceConfig(window=args.window, overlap=args.overlap, weights="gaussian", window_batch=args.sw_batch)
    dev = torch.device("cpu")

    def monai_run() -> tuple[float, np.ndarray]:
        t = time.perf_counter()
        with torch.no_grad():
            probs = sliding_window_inference(
                torch.from_numpy(full)[None], (args.window,) * 3, args.sw_batch,
                lambda x: torch.softmax(model(x), 1), overlap=args.overlap, mode="gaussian", sigma_scale=0.125)
        lab = probs[0].argmax(0).numpy()
        return time.perf_counter() - t, lab

    def ours_run() -> tuple[float, np.ndarray]:
        t = time.perf_counter()
        probs = predict_probabilities([model], case.image, args.window, cfg, dev)
        lab = to_source_grid(probs, case.meta)
        return time.perf_counter() - t, lab

    rows = []
    for _ in range(args.rounds):
        tm, lm = monai_run()
        to, lo = ours_run()
        rows.append((tm, to))
    brain = np.zeros(image.shape[1:], bool)
    brain[sl] = np.any(full[(slice(None), *sl)] != 0, axis=0)
    classes_to_brats = np.asarray((0, 1, 2, 4), np.uint8)
    lm_b = classes_to_brats[lm]
    agree = float((lm_b[brain] == lo[brain]).mean())
    crop_frac = float(np.prod([b - a for a, b in case.meta.bbox]) / np.prod(image.shape[1:]))
    print("| round | MONAI s (whole volume) | ours s (brain box) | ratio |")
    print("|---|---|---|---|")
    for i, (tm, to) in enumerate(rows):
        print(f"| {i} | {tm:.2f} | {to:.2f} | {to / tm:.2f} |")
    print(f"\nwindow {args.window}, overlap {args.overlap}, gaussian, sw batch {args.sw_batch}; brain box = "
          f"{crop_frac:.1%} of the volume; labels identical on {agree:.4%} of {int(brain.sum())} brain voxels")

    # Same windows: our sliding_window over the whole volume with MONAI's placement rule. Constant weights are
    # the same function in both; MONAI's Gaussian is centred on voxel w//2, ours on (w-1)/2 (symmetric).
    from bench.engine.infer import sliding_window

    def fn(x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(model(x), 1)

    print("\n| same windows as MONAI (placement='stride', whole volume) | labels identical (all voxels) | "
          "in the brain | max abs prob. difference |")
    print("|---|---|---|---|")
    for mode in ("constant", "gaussian"):
        with torch.no_grad():
            pm = sliding_window_inference(torch.from_numpy(full)[None], (args.window,) * 3, args.sw_batch, fn,
                                          overlap=args.overlap, mode=mode, sigma_scale=0.125)[0]
            po = sliding_window(fn, torch.from_numpy(full), args.window, pm.shape[0], overlap=args.overlap,
                                weights=mode, window_batch=args.sw_batch, placement="stride")
        la, lb = pm.argmax(0).numpy(), po.argmax(0).numpy()
        print(f"| {mode} weights | {(la == lb).mean():.4%} | {(la[brain] == lb[brain]).mean():.4%} | "
              f"{float((pm - po).abs().max()):.2e} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    lp = sub.add_parser("learn")
    lp.add_argument("--data", default=None, help="raw dataset folder (default: in-memory phantoms)")
    lp.add_argument("--spacing", type=float, default=None, help="working grid spacing in mm")
    lp.add_argument("--cache", default=None, help="prepared-cache root (default .bench/cache)")
    lp.add_argument("--cases", type=int, default=20)
    lp.add_argument("--shape", type=int, nargs=3, default=(96, 96, 64))
    lp.add_argument("--iterations", type=int, default=TrainConfig().iterations)
    lp.add_argument("--minutes", type=float, default=5.0)
    lp.add_argument("--width", type=int, default=ModelConfig().width)
    lp.add_argument("--depth", type=int, default=ModelConfig().depth)
    lp.add_argument("--norm", default=ModelConfig().norm)
    lp.add_argument("--dice-smooth", type=float, default=None, help="override the soft-Dice smoothing (default 1)")
    lp.add_argument("--per-sample-dice", action="store_true", help="soft Dice per sample (default: over the batch)")
    lp.add_argument("--patch", type=int, default=TrainConfig().patch)
    lp.add_argument("--batch", type=int, default=TrainConfig().batch)
    lp.add_argument("--lr", type=float, default=TrainConfig().lr)
    lp.add_argument("--workers", type=int, default=1)
    lp.add_argument("--seed", type=int, default=0)
    lp.add_argument("--tricks", default="")
    lp.add_argument("--overlap", type=float, default=0.0, help="inference overlap (baseline: 0, tiles)")
    op = sub.add_parser("overhead")
    op.add_argument("--iterations", type=int, default=12)
    op.add_argument("--rounds", type=int, default=2)
    op.add_argument("--width", type=int, default=ModelConfig().width)
    op.add_argument("--patch", type=int, default=TrainConfig().patch)
    op.add_argument("--batch", type=int, default=TrainConfig().batch)
    ip = sub.add_parser("infer")
    ip.add_argument("--window", type=int, default=64)
    ip.add_argument("--overlap", type=float, default=0.5)
    ip.add_argument("--sw-batch", type=int, default=2)
    ip.add_argument("--width", type=int, default=ModelConfig().width)
    ip.add_argument("--model", default=None, help="a checkpoint (default: a random batch-norm model)")
    ip.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    {"learn": learn, "overhead": overhead, "infer": infer}[args.cmd](args)


if __name__ == "__main__":
    main()
