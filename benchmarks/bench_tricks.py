"""Trick overhead benchmarks (and a reduced look at each trick's effect on test Dice).

    python benchmarks/bench_tricks.py overhead [--steps 20] [--rounds 0] [--iterations 6]
    python benchmarks/bench_tricks.py effect [--iterations 400] [--seeds 0 1 2] [--tricks a b ...] [--set t.p=v]

``overhead``: a CPU trainer iteration of the demo model (default ModelConfig / TrainConfig: depth 3, width
16, patch 48, batch 2, data loading in-process) for the baseline and for heuristic_sampling (K=4),
hard_mining and focal_loss, side by side in one process: the trainer's step (batch assembly with the recipe's
patch plan, sampler and augmentation, forward, the recipe's loss, backward, SGD step) with the stacks
alternating at every iteration; median seconds per iteration. ``--rounds N`` also times whole short trainings
(``run_training``, interleaved runs; noisier). Component timings (sampler call; loss forward+backward)
are printed too: they are far less noisy on a shared machine. Targets: heuristic_sampling <= 1.10x,
hard_mining and focal_loss <= 1.05x the baseline.

``effect``: each trick alone on top of the baseline, same budget, same seeds, mean test Dice on synthetic
phantoms (MemoryDataset, 20 cases of 96x96x64 by default, fold 0 of 2, 20% test cases). Expensive on 2 CPU
cores (arms x seeds trainings of the baseline's budget); a first look, not a verdict.
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
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.engine.config import ModelConfig, TrainConfig  # noqa: E402

STACKS: dict[str, tuple[list[str], dict]] = {
    "baseline": ([], {}),
    "heuristic_sampling K=4": (["heuristic_sampling"], {"heuristic_sampling": {"k": 4}}),
    "hard_mining": (["hard_mining"], {}),
    "focal_loss": (["focal_loss"], {}),
}


def _train_times(names: list[str], params: dict, ds, iterations: int, seed: int) -> list[float]:
    from bench.engine.recipe import TrainContext, baseline_recipe
    from tricks import resolve

    stack = resolve(names, params)
    cfg = TrainConfig(
        iterations=iterations,
        epoch_length=iterations,
        num_workers=0,
        device="cpu",
        seed=seed,
        checkpoint_every=0,
    )
    recipe = stack.build(baseline_recipe(cfg))
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        stamps.append(time.perf_counter())
        ctx = TrainContext(
            ds,
            Path(tmp),
            ModelConfig(),
            cfg,
            recipe,
            stack,
            progress=lambda info: stamps.append(time.perf_counter()),
        )
        recipe.procedure(ctx)
    return [b - a for a, b in zip(stamps[1:], stamps[2:])]  # drop the first iteration of the run


def _components(ds) -> dict[str, dict[str, float]]:
    """Median seconds of the slot fillers alone: sampler call, and loss forward + backward on demo logits."""
    from bench.engine.losses import CEDiceLoss, MeanCrossEntropy
    from bench.engine.recipe import StepState
    from bench.engine.sampling import UniformSampler, as_patch3
    from tricks.focal_loss import FocalWeighting
    from tricks.hard_mining import HardMiningWeighting
    from tricks.heuristic_sampling import HeuristicSampler

    case = ds.load(ds.train_ids(0)[0])
    patch = as_patch3(TrainConfig().patch)
    samplers = {"baseline": UniformSampler(), "heuristic_sampling K=4": HeuristicSampler(UniformSampler(), 4)}
    out: dict[str, dict[str, float]] = {"sampler": {}, "loss": {}}
    for name, s in samplers.items():
        ts = []
        for i in range(200):
            rng = np.random.default_rng([0, i])
            t = time.perf_counter()
            s(case, patch, rng)
            ts.append(time.perf_counter() - t)
        out["sampler"][name] = statistics.median(ts)
    g = torch.Generator().manual_seed(0)
    logits0 = torch.randn(2, 4, *patch, generator=g)
    target = torch.randint(0, 4, (2, *patch), generator=g)
    weightings = {
        "baseline": MeanCrossEntropy(),
        "hard_mining": HardMiningWeighting(),
        "focal_loss": FocalWeighting(),
    }
    loss = CEDiceLoss()
    times: dict[str, list[float]] = {k: [] for k in weightings}
    for _ in range(15):
        for name, w in weightings.items():  # interleaved
            logits = logits0.clone().requires_grad_(True)
            state = StepState(50, 100, 0, 25, 0.01, patch, 2, w)
            t = time.perf_counter()
            loss(logits, target, state).mean().backward()
            times[name].append(time.perf_counter() - t)
    out["loss"] = {k: statistics.median(v) for k, v in times.items()}
    return out


def _interleaved_steps(ds, reps: int) -> dict[str, list[float]]:
    """The trainer's iteration (batch assembly through the recipe's plan/sampler/augment, forward, the recipe's
    loss, backward, SGD step), one model per stack, alternating stacks at every iteration so that load drift
    on the shared machine hits all of them alike."""
    from bench.engine.loader import BatchSource, CasePool
    from bench.engine.model import build_model
    from bench.engine.recipe import StepState, baseline_recipe
    from tricks import resolve

    cfg = TrainConfig(num_workers=0, device="cpu")
    runs = {}
    for name, (names, params) in STACKS.items():
        recipe = resolve(names, params).build(baseline_recipe(cfg))
        torch.manual_seed(0)
        model = build_model(ModelConfig(), recipe.block, recipe.head, recipe.block_options)
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
        source = BatchSource(
            [CasePool(ds, tuple(ds.train_ids(0)))],
            recipe.patch_plan,
            recipe.sampler,
            recipe.augment,
            0,
            reps + 2,
        )
        runs[name] = (recipe, model, opt, source)
    times: dict[str, list[float]] = {k: [] for k in STACKS}
    for it in range(reps + 2):
        for name, (recipe, model, opt, source) in runs.items():
            t = time.perf_counter()
            batch = source[it]
            x, y, w = batch["image"], batch["label"], batch["weight"]
            state = StepState(
                it,
                100,
                0,
                25,
                cfg.lr,
                tuple(x.shape[2:]),
                int(x.shape[0]),  # type: ignore[arg-type]
                recipe.voxel_weighting,
                sample_weight=w,
            )
            loss = (recipe.loss(model(x), y, state) * w).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            if it >= 2:  # the first two iterations warm up (lazy imports, allocator)
                times[name].append(time.perf_counter() - t)
    return times


def overhead(args: argparse.Namespace) -> None:
    from bench.engine.synthetic import MemoryDataset

    ds = MemoryDataset(cases=8, shape=(64, 64, 48), seed=0, folds=2)
    comp = _components(ds)
    print("component medians (s)")
    for part, rows in comp.items():
        base = rows["baseline"]
        for name, v in rows.items():
            print(f"  {part:8s} {name:24s} {v * 1e3:9.2f} ms   {v / base:5.2f}x")
    steps = _interleaved_steps(ds, args.steps)
    base = statistics.median(steps["baseline"])
    targets = {"heuristic_sampling K=4": 1.10, "hard_mining": 1.05, "focal_loss": 1.05}
    print(
        f"\ntrainer iteration, demo model (patch 48, batch 2), stacks alternating every iteration, {args.steps} "
        "iterations each"
    )
    print(f"  {'stack':24s} {'median s/it':>12s} {'ratio':>7s} {'paired':>7s} {'target':>7s}")
    for name, v in steps.items():
        m = statistics.median(v)
        # paired: ratio to the baseline's iteration taken just before it (same iteration index, same moment)
        paired = statistics.median(a / b for a, b in zip(v, steps["baseline"]))
        print(f"  {name:24s} {m:12.3f} {m / base:7.3f} {paired:7.3f} {targets.get(name, float('nan')):7.2f}")
    print("  ratio = median / baseline median; paired = median of per-iteration ratios to the baseline")
    if args.rounds <= 0:
        return
    times: dict[str, list[float]] = {k: [] for k in STACKS}
    for r in range(args.rounds):
        for name, (names, params) in STACKS.items():
            times[name] += _train_times(names, params, ds, args.iterations, seed=r)
    base = statistics.median(times["baseline"])
    print(
        f"\nwhole trainings (run_training), demo model (patch 48, batch 2), {args.rounds} interleaved runs x "
        f"{args.iterations - 1} timed iterations each"
    )
    print(f"  {'stack':24s} {'median s/it':>12s} {'ratio':>7s} {'target':>7s}")
    for name, v in times.items():
        m = statistics.median(v)
        print(f"  {name:24s} {m:12.3f} {m / base:7.3f} {targets.get(name, float('nan')):7.2f}")


def effect(args: argparse.Namespace) -> None:
    """Each trick alone on top of the baseline: test Dice per seed, mean, spread over seeds, change from the
    baseline, per region. Same data, budget and seeds for every arm; inference-only tricks reuse the
    baseline's trainings (same training key), model_fusion trains the other folds."""
    from bench.engine.api import predict, train, training_key
    from bench.engine.config import InferenceConfig
    from bench.engine.synthetic import MemoryDataset
    from bench.evaluation.metrics import evaluate_case
    from tricks import parse_set_option, resolve

    ds = MemoryDataset(cases=args.cases, shape=tuple(args.shape), seed=0, folds=args.folds, unlabeled=args.unlabeled)
    sets: dict[str, dict[str, object]] = {}
    for text in args.sets:
        trick, param, value = parse_set_option(text)
        sets.setdefault(trick, {})[param] = value
    arms = [("baseline", [])] + [(t, [t]) for t in args.tricks]
    mcfg = dataclasses.replace(ModelConfig.cpu(), width=args.width)
    print(
        f"effect run: {args.iterations} iterations, patch {args.patch}, batch {args.batch}, seeds {args.seeds}, "
        f"{len(ds.test_ids())} test cases, fold 0 of {ds.n_folds}, {len(ds.unlabeled_ids)} unlabeled cases, "
        f"parameters {sets or 'defaults'}", flush=True,
    )
    results: dict[str, list[float]] = {}
    per_region: dict[str, dict[str, list[float]]] = {}
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        done: dict[str, Path] = {}  # training key -> checkpoint: inference-only tricks reuse trainings
        for seed in args.seeds:
            for name, names in arms:
                stack = resolve(names, {k: v for k, v in sets.items() if k in names})
                t = time.perf_counter()
                ckpts = []
                for f in stack.folds_for(0, ds.n_folds):
                    fcfg = TrainConfig.cpu(iterations=args.iterations, patch=args.patch, batch=args.batch,
                                           seed=seed, fold=f, val_every=0)
                    key = training_key(ds.fingerprint, mcfg, fcfg, stack)
                    if key not in done:
                        done[key] = train(ds, Path(tmp) / key, mcfg, fcfg, stack).checkpoint
                    ckpts.append(done[key])
                icfg = stack.inference_config(InferenceConfig(device="cpu"))
                dices = []
                regions = per_region.setdefault(name, {"ET": [], "TC": [], "WT": []})
                for cid, labels in predict(ckpts, ds, ds.test_ids(), icfg):
                    m = evaluate_case(labels, ds.source_label(cid), (1.0, 1.0, 1.0))
                    dices.append(np.mean([m[r].dice for r in ("ET", "TC", "WT")]))
                    for r in regions:
                        regions[r].append(m[r].dice)
                results.setdefault(name, []).append(float(np.mean(dices)))
                seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t
                print(f"  {name:20s} seed {seed}: mean Dice {results[name][-1]:.3f}  "
                      f"({time.perf_counter() - t:.0f} s)", flush=True)
    base = np.asarray(results["baseline"])
    print("\n| trick | mean Dice (3 regions) | per seed | sd over seeds | change vs baseline | seeds better | "
          "Dice ET | Dice TC | Dice WT | s (all seeds) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, v in results.items():
        r, arr = per_region[name], np.asarray(v)
        better = "" if name == "baseline" else f"{int((arr > base).sum())}/{len(arr)}"
        delta = "" if name == "baseline" else f"{arr.mean() - base.mean():+.3f}"
        print(f"| {name} | {arr.mean():.3f} | {' / '.join(f'{x:.3f}' for x in arr)} | {arr.std(ddof=1) if len(arr) > 1 else 0:.3f} | "
              f"{delta} | {better} | {np.mean(r['ET']):.3f} | {np.mean(r['TC']):.3f} | {np.mean(r['WT']):.3f} | "
              f"{seconds[name]:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    o = sub.add_parser("overhead")
    o.add_argument("--iterations", type=int, default=6)
    o.add_argument("--rounds", type=int, default=0, help="also time whole short trainings (noisier)")
    o.add_argument("--steps", type=int, default=20, help="interleaved iterations per stack")
    e = sub.add_parser("effect")
    # defaults: the baseline's budget and the engine's learning benchmark data (bench_engine.py learn)
    e.add_argument("--iterations", type=int, default=TrainConfig().iterations)
    e.add_argument("--patch", type=int, default=TrainConfig().patch)
    e.add_argument("--batch", type=int, default=TrainConfig().batch)
    e.add_argument("--width", type=int, default=ModelConfig().width)
    e.add_argument("--cases", type=int, default=20)
    e.add_argument("--unlabeled", type=int, default=4, help="unlabeled phantoms (semi_supervised's source)")
    e.add_argument("--folds", type=int, default=2, help="cross-validation folds (= models fused by model_fusion)")
    e.add_argument("--shape", type=int, nargs=3, default=(96, 96, 64))
    e.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    e.add_argument("--set", dest="sets", action="append", default=[], metavar="TRICK.PARAM=VALUE",
                   help="trick parameter, as in bench train (repeatable)")
    e.add_argument("--tricks", nargs="+", default=[
        "dense_blocks", "self_ensemble", "warmup", "heuristic_sampling", "hard_mining", "focal_loss",
        "random_patch_size", "multitask", "patch_fusion", "model_fusion", "semi_supervised"])
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    {"overhead": overhead, "effect": effect}[args.what](args)


if __name__ == "__main__":
    main()
