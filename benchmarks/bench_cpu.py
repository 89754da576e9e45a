"""CPU training speed: this tree against a base commit, side by side in one run, and a profile of the step.

    python benchmarks/bench_cpu.py compare [--base c0fc977] [--iterations 14] [--repeats 2] [--variants 0,1,4]
    python benchmarks/bench_cpu.py profile [--steps 3]
    python benchmarks/bench_cpu.py recipe [--iterations 6] [--repeats 2]

``compare`` extracts the base commit with ``git archive`` into a temporary folder, writes synthetic cases of
the real BraTS geometry (240x240x155, 1 mm), prepares them once on the 2 mm grid, and runs the brats-cpu
model (depth 4, width 16, dense blocks + self-ensemble, 64^3 patches, batch 2, one loader worker) as
``bench train`` processes, interleaved: base, this tree, this tree with the allocator tuning off (through
``BENCH_MALLOC_TUNING=0``), that again with glibc's environment variables set instead, and this tree with the
channels-last layout off (``BENCH_CPU_CHANNELS_LAST=0``). For each run it
reports the wall time, the training loop's time (printed by ``bench train``) and the process's user and
kernel CPU time (rusage of the finished child: the training process and its loader worker).

``recipe`` times, in this tree and interleaved, the model of the former ``runs/brats-cpu.toml`` (above) and
the one it ships now (depth 3, width 16, instance norm, no dense blocks or self-ensemble), to size its
iteration budget.

``profile`` times one training step's parts in this process with ``torch.profiler`` (the same model and batch).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
TRAIN = ["--tricks", "dense_blocks,self_ensemble", "--depth", "4", "--width", "16", "--patch", "64",
         "--batch", "2", "--val-every", "0", "--workers", "1", "--device", "cpu", "--lr", "0.01"]
ENV_ROUTE = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "68719476736"}


def _extract(commit: str, dest: Path) -> Path:
    if not (dest / "bench").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(HERE), "archive", commit], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def _data(work: Path, cases: int) -> Path:
    sys.path.insert(0, str(HERE))
    from bench.data.prepare import prepare
    from bench.data.synth import synthesize

    raw = work / "raw"
    if not raw.is_dir():
        synthesize(raw, cases=cases, shape=(240, 240, 155), seed=0, progress=False)
    ds = prepare(raw, work / "cache", spacing=2.0, folds=2, test_fraction=0.25, progress=False)
    return ds.root


RECIPE_NOW = ["--depth", "3", "--width", "16", "--norm", "instance", "--patch", "64",
              "--batch", "2",
              "--val-every", "0", "--workers", "1", "--device", "cpu", "--lr", "0.01"]


def _run(tree: Path, data: Path, out: Path, iterations: int, env_extra: dict[str, str],
         train: list[str] = TRAIN) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "BENCH_MALLOC_TUNING"}
    env.update(env_extra, PYTHONPATH=str(tree))
    cmd = [sys.executable, "-m", "bench", "train", "--data", str(data), "--out", str(out),
           "--iterations", str(iterations), "--epoch-length", str(iterations), *train]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(out.parent))
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{tree}: bench train failed:\n{stderr.decode()[-2000:]}")
    m = re.search(r"trained (\d+) iterations in (\d+) s", stdout.decode())
    return {"wall": wall, "train": float(m.group(2)) if m else float("nan")}


def _timed(tree: Path, data: Path, out: Path, iterations: int, env_extra: dict[str, str],
           train: list[str] = TRAIN) -> dict[str, float]:
    """One ``bench train`` process with its CPU times (RUSAGE_CHILDREN difference around it)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    res = _run(tree, data, out, iterations, env_extra, train)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    res["user"] = after.ru_utime - before.ru_utime
    res["sys"] = after.ru_stime - before.ru_stime
    res["minflt"] = after.ru_minflt - before.ru_minflt
    return res


def compare(args: argparse.Namespace) -> None:
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-cpu-"))
    base = _extract(args.base, work / "base")
    data = _data(work, args.cases)
    variants = {
        f"base {args.base}": (base, {}),
        "this tree": (HERE, {}),
        "this tree, tuning off": (HERE, {"BENCH_MALLOC_TUNING": "0"}),
        "this tree, tuning off + glibc env": (HERE, {"BENCH_MALLOC_TUNING": "0", **ENV_ROUTE}),
        "this tree, channels-last off": (HERE, {"BENCH_CPU_CHANNELS_LAST": "0"}),
    }
    names = [n for i, n in enumerate(variants) if str(i) in args.variants.split(",")]
    print(f"cores {os.cpu_count()}, load {os.getloadavg()[0]:.2f}; {args.iterations} iterations a run; data {data}")
    rows: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for rep in range(args.repeats):
        for n in names:
            tree, env = variants[n]
            out = work / f"out-{len(rows[n])}-{names.index(n)}"
            subprocess.run(["rm", "-rf", str(out)], check=True)
            r = _timed(tree, data, out, args.iterations, env)
            rows[n].append(r)
            print(f"  rep {rep} {n:36s} wall {r['wall']:6.1f} s  train {r['train']:5.0f} s  user {r['user']:6.1f} s  "
                  f"sys {r['sys']:5.1f} s ({100 * r['sys'] / (r['user'] + r['sys']):4.1f}%)  "
                  f"minor faults {r['minflt'] / 1e6:.2f} M  load {os.getloadavg()[0]:.2f}", flush=True)
    print("\n| variant | wall s | train s | s / iteration | user s | sys s | sys share |")
    print("|---|---|---|---|---|---|---|")
    for n in names:
        rs = rows[n]
        mean = {k: sum(r[k] for r in rs) / len(rs) for k in ("wall", "train", "user", "sys")}
        print(f"| {n} | {mean['wall']:.1f} | {mean['train']:.1f} | {mean['train'] / args.iterations:.2f} | "
              f"{mean['user']:.1f} | {mean['sys']:.1f} | {100 * mean['sys'] / (mean['user'] + mean['sys']):.1f}% |")
    if len(names) >= 2:
        a, b = rows[names[0]], rows[names[1]]
        print(f"\nspeed-up of the training loop ({names[1]} over {names[0]}): "
              f"{sum(r['train'] for r in a) / sum(r['train'] for r in b):.2f}x")


def recipe(args: argparse.Namespace) -> None:
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-cpu-"))
    data = _data(work, args.cases)
    variants = {"former brats-cpu model (depth 4, dense + self-ensemble, batch norm)": TRAIN,
                "brats-cpu model now (depth 3, plain, instance norm)": RECIPE_NOW}
    print(f"cores {os.cpu_count()}, load {os.getloadavg()[0]:.2f}; {args.iterations} iterations a run")
    for rep in range(args.repeats):
        for i, (name, train) in enumerate(variants.items()):
            out = work / f"recipe-{rep}-{i}"
            subprocess.run(["rm", "-rf", str(out)], check=True)
            r = _timed(HERE, data, out, args.iterations, {}, train)
            print(f"  rep {rep} {name}: train {r['train']:.0f} s = {r['train'] / args.iterations:.2f} s/iteration, "
                  f"sys {100 * r['sys'] / (r['user'] + r['sys']):.1f}%, load {os.getloadavg()[0]:.2f}", flush=True)


def profile(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(HERE))
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    import tricks
    from bench.engine.config import ModelConfig, TrainConfig
    from bench.engine.cpu import tune_allocator
    from bench.engine.losses import CEDiceLoss, MeanCrossEntropy
    from bench.engine.model import build_model
    from bench.engine.recipe import StepState, baseline_recipe

    if args.tune:
        tune_allocator()
    torch.set_num_threads(os.cpu_count() or 1)
    tc = TrainConfig.cpu(patch=64, batch=2)
    recipe = tricks.resolve(["dense_blocks", "self_ensemble"]).build(baseline_recipe(tc))
    mc = dataclasses.replace(ModelConfig.cpu(), depth=4, width=16)
    model = build_model(mc, block=recipe.block, head=recipe.head, block_options=recipe.block_options)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.99, nesterov=True)
    x = torch.rand(2, 4, 64, 64, 64)
    y = torch.randint(0, 4, (2, 64, 64, 64))
    loss_fn = CEDiceLoss()
    st = StepState(0, 10, 0, 1, 0.01, (64,) * 3, 2, MeanCrossEntropy())

    def step() -> None:
        loss = loss_fn(model(x), y, st).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    t = time.perf_counter()
    with tprofile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step()
    per = (time.perf_counter() - t) / args.steps
    print(f"{per:.2f} s a step (profiled), {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.2f}")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compare")
    c.add_argument("--base", default="c0fc977")
    c.add_argument("--iterations", type=int, default=14)
    c.add_argument("--repeats", type=int, default=2)
    c.add_argument("--cases", type=int, default=4)
    c.add_argument("--work", default=None, help="work folder (kept; reused data and base tree)")
    c.add_argument("--variants", default="0,1,4",
                   help="which variants, by index: 0 base, 1 this tree, 2 allocator tuning off, 3 tuning off with "
                        "glibc's environment variables, 4 channels-last off (default 0,1,4)")
    c.set_defaults(fn=compare)
    r = sub.add_parser("recipe")
    r.add_argument("--iterations", type=int, default=6)
    r.add_argument("--repeats", type=int, default=2)
    r.add_argument("--cases", type=int, default=4)
    r.add_argument("--work", default=None)
    r.set_defaults(fn=recipe)
    p = sub.add_parser("profile")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--rows", type=int, default=25)
    p.add_argument("--tune", action="store_true", help="tune the allocator first")
    p.set_defaults(fn=profile)
    args = ap.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
