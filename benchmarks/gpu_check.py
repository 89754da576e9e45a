"""One-shot CUDA check and measurements of the engine (run by the lead on a lent GPU, ~5 minutes).

    PYTHONPATH=. python3 benchmarks/gpu_check.py            # on the GPU box, from the repo root
    PYTHONPATH=. python3 benchmarks/gpu_check.py --cpu-smoke  # the same script, tiny sizes, on the CPU

Needs only torch, numpy, scipy (and nibabel, imported by bench.data); no optuna/mlflow/pandas, no pip install.

1. correctness: a few training iterations on synthetic phantoms with finite loss, model/batch/logits on the
   GPU, bf16 autocast active in the forward pass, fp32 master weights, a checkpoint written and loaded back
   with weights_only=True, predict() returning source-grid BraTS labels;
2. speed: fp32 vs bf16 training step at patch 128 with the paper-size model (goal: bf16 >= 2x), with and
   without channels_last_3d;
3. voxels/s and peak memory at the paper's largest (patch, batch) pairs (128,1) (144,1) (112,2) (64,15);
4. whole-case inference time on a 240x240x155 phantom (window 128, overlap 0.5, Gaussian weights).

Prints a Markdown report and writes it to $OUT/gpu.md when OUT is set. Exit code 1 if a correctness check
failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.engine.config import InferenceConfig, ModelConfig, TrainConfig  # noqa: E402
from bench.engine.losses import CEDiceLoss, MeanCrossEntropy  # noqa: E402
from bench.engine.model import build_model, count_parameters  # noqa: E402
from bench.engine.recipe import StepState, TrainContext, baseline_recipe  # noqa: E402

LINES: list[str] = []
FAILURES: list[str] = []
STRICT_FP32: list[float] = []  # the strict fp32 step time measured by speed(), reused by compiled()


def say(line: str = "") -> None:
    LINES.append(line)
    print(line, flush=True)


def check(name: str, ok: bool, detail: str = "") -> None:
    say(f"| {name} | {'ok' if ok else '**FAILED**'} | {detail} |")
    if not ok:
        FAILURES.append(name)


def flush_report() -> None:
    """Write what was said so far to $OUT/gpu.md (after every section: a timeout keeps the finished ones)."""
    out = os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "gpu.md").write_text("\n".join(LINES) + "\n")


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def correctness(dev: torch.device, smoke: bool) -> None:
    from bench.engine import api
    from bench.engine.checkpoint import load_checkpoint
    from bench.engine.infer import autocast
    from bench.engine.synthetic import MemoryDataset
    from bench.engine.train import run_training

    say("## Correctness\n")
    say("| check | result | detail |")
    say("|---|---|---|")
    ds = MemoryDataset(cases=6, shape=(48, 48, 40) if smoke else (96, 96, 64), seed=0, folds=2)
    mc = ModelConfig(width=4, depth=2) if smoke else ModelConfig.paper()
    tc = TrainConfig(iterations=6, epoch_length=3, patch=16 if smoke else 64, batch=2, device=str(dev),
                     num_workers=0 if smoke else 2, val_every=1, val_cases=1)
    recipe = baseline_recipe(tc)
    seen: dict[str, object] = {}
    inner = recipe.loss

    def spy(logits, target, state: StepState):  # records what the loss sees
        seen.update(dtype=logits.dtype, device=logits.device, target_device=target.device,
                    weight_device=state.sample_weight.device if state.sample_weight is not None else None)
        return inner(logits, target, state)

    recipe.loss = spy
    losses: list[float] = []
    out = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    ctx = TrainContext(ds, out, mc, tc, recipe, progress=lambda i: losses.append(i["loss"]))
    t = time.perf_counter()
    res = run_training(ctx)
    check("training iterations, finite loss", len(losses) == 6 and all(np.isfinite(losses)),
          f"losses {', '.join(f'{v:.3f}' for v in losses)} in {time.perf_counter() - t:.1f} s")
    want_dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    check("bf16 autocast in the forward pass", seen.get("dtype") == want_dtype, f"logits dtype {seen.get('dtype')}")
    on_dev = all(getattr(seen.get(k), "type", None) == dev.type for k in ("device", "target_device", "weight_device"))
    check("batch, target, weights, logits on the device", on_dev,
          f"{seen.get('device')}, {seen.get('target_device')}, {seen.get('weight_device')}")
    ck = torch.load(res.checkpoint, map_location="cpu", weights_only=True)
    masters = [v.dtype for k, v in ck["model"].items() if v.is_floating_point()]
    check("checkpoint loads with weights_only=True, fp32 weights", set(masters) == {torch.float32},
          f"{len(ck['model'])} tensors, iteration {ck['iteration']}")
    check("validation Dice recorded", "val_dice_WT" in res.curve[-1], str({k: round(v, 3) for k, v in
                                                                           res.curve[-1].items() if "dice" in k}))
    load_checkpoint(res.checkpoint)
    t = time.perf_counter()
    preds = list(api.predict([res.checkpoint, res.checkpoint], ds, ds.test_ids(),
                             InferenceConfig(overlap=0.5, weights="gaussian", device=str(dev))))
    cid, labels = preds[0]
    check("predict (2 models fused) -> source-grid labels",
          labels.shape == tuple(ds.load(cid).meta.source_shape) and set(np.unique(labels)) <= {0, 1, 2, 4},
          f"{len(preds)} case(s), shape {labels.shape}, {time.perf_counter() - t:.1f} s")
    model = build_model(mc).to(dev)
    with autocast(dev, True):
        y = model(torch.rand(1, 4, 32, 32, 32, device=dev))
    check("model output device", y.device.type == dev.type, str(y.device))
    say()


def make_step(dev: torch.device, mc: ModelConfig, patch: int, batch: int, *, amp: bool,
              channels_last: bool = False, compile_model: bool = False) -> Callable[[], None]:
    """One SGD step (CE + Dice, grad clipping) of a fresh ``mc`` model on a fixed random batch, as a closure."""
    from bench.engine.infer import autocast

    torch.manual_seed(0)
    model = build_model(mc).to(dev)
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.99, nesterov=True)
    forward = model
    if compile_model:
        from torch import _dynamo

        _dynamo.reset()  # earlier sections' graphs would push this one to dynamic shapes
        forward = torch.compile(model, dynamic=False)
    x = torch.rand(batch, 4, patch, patch, patch, device=dev).contiguous(memory_format=fmt)
    y = torch.randint(0, 4, (batch, patch, patch, patch), device=dev)
    loss_fn = CEDiceLoss()
    st = StepState(0, 1, 0, 1, 0.01, (patch,) * 3, batch, MeanCrossEntropy())

    def step() -> None:
        with autocast(dev, amp):
            logits = forward(x)
        loss = loss_fn(logits, y, st).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 12)
        opt.step()

    return step


def step_time(dev: torch.device, mc: ModelConfig, patch: int, batch: int, *, amp: bool, channels_last: bool,
              steps: int, warm: int, compile_model: bool = False) -> tuple[float, float]:
    """Median seconds of one SGD step (CE + Dice) and peak memory in GiB."""
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    step = make_step(dev, mc, patch, batch, amp=amp, channels_last=channels_last, compile_model=compile_model)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for i in range(warm + steps):
        sync(dev)
        t = time.perf_counter()
        step()
        sync(dev)
        if i >= warm:
            times.append(time.perf_counter() - t)
    peak = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else float("nan")
    del step
    return float(np.median(times)), peak


def speed(dev: torch.device, smoke: bool) -> None:
    mc = ModelConfig(width=4, depth=2) if smoke else ModelConfig.paper()
    steps, warm = (2, 1) if smoke else (6, 3)
    p128 = 16 if smoke else 128
    say(f"## Training step (model: depth {mc.depth}, width {mc.width}, {count_parameters(build_model(mc)) / 1e6:.1f} M "
        f"parameters; SGD-Nesterov, CE + soft Dice, grad clipping)\n")
    say("| precision | layout | patch | batch | step s (median) | voxels/s | peak GiB | vs strict fp32 | vs TF32 |")
    say("|---|---|---|---|---|---|---|---|---|")
    tf32_default = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        t32s, m32s = step_time(dev, mc, p128, 1, amp=False, channels_last=False, steps=steps, warm=warm)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32_default
    STRICT_FP32[:] = [t32s]
    torch.backends.cudnn.allow_tf32 = True
    t32, m32 = step_time(dev, mc, p128, 1, amp=False, channels_last=False, steps=steps, warm=warm)
    say(f"| fp32, TF32 off (strict) | NCDHW | {p128} | 1 | {t32s:.4f} | {p128**3 / t32s:,.0f} | {m32s:.2f} | 1.00 | "
        f"{t32 / t32s:.2f}x |")
    say(f"| fp32, TF32 on (cuDNN default) | NCDHW | {p128} | 1 | {t32:.4f} | {p128**3 / t32:,.0f} | {m32:.2f} | "
        f"{t32s / t32:.2f}x | 1.00 |")
    for cl in (False, True):
        tb, mb = step_time(dev, mc, p128, 1, amp=True, channels_last=cl, steps=steps, warm=warm)
        say(f"| bf16 autocast | {'channels_last_3d' if cl else 'NCDHW'} | {p128} | 1 | {tb:.4f} | "
            f"{p128**3 / tb:,.0f} | {mb:.2f} | {t32s / tb:.2f}x | {t32 / tb:.2f}x |")
    say()
    pairs = [(16, 1), (16, 2)] if smoke else [(128, 1), (144, 1), (112, 2), (64, 15)]
    say("## Paper's largest (patch, batch) pairs, bf16 + channels_last_3d\n")
    say("| patch | batch | step s | voxels/s | peak GiB |")
    say("|---|---|---|---|---|")
    for patch, batch in pairs:
        try:
            t, m = step_time(dev, mc, patch, batch, amp=True, channels_last=True, steps=steps, warm=warm)
            say(f"| {patch} | {batch} | {t:.4f} | {batch * patch**3 / t:,.0f} | {m:.2f} |")
        except torch.cuda.OutOfMemoryError:
            say(f"| {patch} | {batch} | out of memory | | |")
            torch.cuda.empty_cache()
    say()


def trainer(dev: torch.device, smoke: bool) -> None:
    """The engine's own training loop, eager against torch.compile (the GPU default), on the paper's BL stack
    (+ multitask, + random_patch_size: one compiled graph per patch size)."""
    from bench.engine import api
    from bench.engine.synthetic import MemoryDataset
    from tricks import resolve

    ds = MemoryDataset(cases=4, shape=(48, 48, 40) if smoke else (96, 96, 64), seed=0, folds=2)
    mc = ModelConfig(width=4, depth=2) if smoke else ModelConfig.paper()
    n = 6 if smoke else 60
    say(f"## Engine training loop, eager vs torch.compile ({n} iterations, patch {16 if smoke else 96}, "
        "batch 2, bf16)\n")
    say("| stack | compile | finite | s to first iteration | median s / iteration (2nd half) | checkpoint keys |")
    say("|---|---|---|---|---|---|")
    keys: dict[str, list[str]] = {}
    pool = [[16, 2], [24, 1]] if smoke else [[64, 4], [96, 2]]
    for names, sets in ((["dense_blocks", "self_ensemble", "warmup"], {}),
                        (["dense_blocks", "self_ensemble", "warmup", "multitask", "random_patch_size"],
                         {"random_patch_size": {"pool": pool}})):
        for comp in (False, True):
            tc = TrainConfig(iterations=n, epoch_length=n, patch=16 if smoke else 96, batch=2, device=str(dev),
                             num_workers=0 if smoke else 4, val_every=0, compile=comp)
            stamps: list[float] = []
            losses: list[float] = []
            t0 = time.perf_counter()

            def progress(info, stamps=stamps, losses=losses) -> None:  # type: ignore[no-untyped-def]
                sync(dev)
                stamps.append(time.perf_counter())
                losses.append(info["loss"])

            out = Path(tempfile.mkdtemp(prefix="gpu-compile-"))
            try:
                res = api.train(ds, out, mc, tc, resolve(names, sets), progress=progress)
            except Exception as exc:
                say(f"| {'+'.join(names)} | {comp} | **failed**: {type(exc).__name__}: {str(exc)[:200]} | | | |")
                FAILURES.append(f"trainer compile={comp}")
                continue
            steps = np.diff(stamps)[n // 2:]
            ck = torch.load(res.checkpoint, map_location="cpu", weights_only=True)
            keys[str(comp)] = sorted(ck["model"])
            same = "same as eager" if comp and keys.get("False") == keys[str(comp)] else f"{len(ck['model'])}"
            ok = len(losses) == n and all(np.isfinite(losses))
            if not ok:
                FAILURES.append(f"trainer compile={comp} losses")
            say(f"| {'+'.join(names)} | {comp} | {ok} | {stamps[0] - t0:.1f} | {np.median(steps):.4f} | {same} |")
    say()


def profile(dev: torch.device, smoke: bool) -> None:
    """Where the time of one bf16 step goes: CUDA kernel time grouped by kind, top kernels."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    mc = ModelConfig(width=4, depth=2) if smoke else ModelConfig.paper()
    patch = 16 if smoke else 128
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    for amp in (True, False):
        step = make_step(dev, mc, patch, 1, amp=amp)
        for _ in range(3):
            step()
        sync(dev)
        with tprofile(activities=acts) as prof:
            for _ in range(3):
                step()
            sync(dev)
        attr = "device_time_total" if dev.type == "cuda" else "cpu_time_total"
        events = [e for e in prof.key_averages() if getattr(e, attr, 0) > 0]
        kinds: dict[str, float] = {}
        for e in events:
            if dev.type == "cuda" and getattr(e, "device_type", None) is not None and \
                    str(e.device_type).endswith("CPU"):
                continue
            n = e.key.lower()
            kind = ("convolution" if any(k in n for k in ("conv", "cudnn", "wgrad", "dgrad", "fprop", "sm90", "sm80",
                                                          "implicit", "gemm", "xmma", "cutlass"))
                    else "normalisation" if any(k in n for k in ("norm", "welford", "bn_")) else
                    "softmax/loss" if any(k in n for k in ("softmax", "nll", "log", "cross")) else
                    "copy/cast" if any(k in n for k in ("copy", "cast", "convert", "fill")) else "other elementwise")
            kinds[kind] = kinds.get(kind, 0.0) + getattr(e, "self_device_time_total" if dev.type == "cuda"
                                                          else "self_cpu_time_total", 0.0)
        total = sum(kinds.values()) or 1.0
        say(f"## Profile of one training step, {'bf16 autocast' if amp else 'fp32 (TF32 on)'}, patch {patch}, "
            f"batch 1 (kernel time per step, by kind)\n")
        say("| kind | ms per step | share |")
        say("|---|---|---|")
        for kind, us in sorted(kinds.items(), key=lambda kv: -kv[1]):
            say(f"| {kind} | {us / 3 / 1000:.2f} | {us / total:.0%} |")
        say()
        say("Top kernels:\n")
        say("| kernel | ms per step | calls per step |")
        say("|---|---|---|")
        key = "self_device_time_total" if dev.type == "cuda" else "self_cpu_time_total"
        for e in sorted(events, key=lambda e: -getattr(e, key, 0.0))[:12]:
            say(f"| `{e.key[:90]}` | {getattr(e, key, 0.0) / 3 / 1000:.2f} | {e.count // 3} |")
        say()
        del step
        if dev.type == "cuda":
            torch.cuda.empty_cache()


def compiled(dev: torch.device, smoke: bool) -> None:
    """The same step under torch.compile (fuses the norm/activation elementwise work that bf16 cannot speed up)."""
    mc = ModelConfig(width=4, depth=2) if smoke else ModelConfig.paper()
    patch = 16 if smoke else 128
    steps, warm = (2, 1) if smoke else (6, 3)
    say(f"## torch.compile (default mode, static shapes), patch {patch}, batch 1\n")
    say("| precision | first step s (compile) | step s (median) | vs strict fp32 row above |")
    say("|---|---|---|---|")
    for amp in (False, True):
        t0 = time.perf_counter()
        t, _ = step_time(dev, mc, patch, 1, amp=amp, channels_last=False, steps=steps, warm=warm, compile_model=True)
        say(f"| {'bf16 autocast' if amp else 'fp32, TF32 on'} | {time.perf_counter() - t0 - t * steps:.1f} | "
            f"{t:.4f} | {STRICT_FP32[0] / t:.2f}x |" if STRICT_FP32 else f"| {amp} | | {t:.4f} | |")
    say()


def inference(dev: torch.device, smoke: bool) -> None:
    from bench.data.formats import MODALITIES
    from bench.data.synth import make_phantom
    from bench.engine.infer import predict_probabilities, to_source_grid
    from bench.engine.synthetic import preprocess

    shape = (48, 48, 40) if smoke else (240, 240, 155)
    window = 16 if smoke else 128
    mc = ModelConfig(width=4, depth=2) if smoke else ModelConfig.paper()
    t = time.perf_counter()
    ph = make_phantom(shape, np.random.default_rng(0))
    image = np.stack([ph.images[m] for m in MODALITIES]).astype(np.float32)
    case, _ = preprocess("big", image, np.asarray(ph.label, np.uint8))
    gen_s = time.perf_counter() - t
    torch.manual_seed(0)
    model = build_model(mc).to(dev).to(memory_format=torch.channels_last_3d).eval()
    say(f"## Whole-case inference ({'x'.join(map(str, shape))}, brain box "
        f"{'x'.join(str(b - a) for a, b in case.meta.bbox)}; phantom made in {gen_s:.0f} s)\n")
    say("| setting | seconds |")
    say("|---|---|")
    for label, cfg in ((f"window {window}, overlap 0.5, gaussian, bf16",
                        InferenceConfig(window=window, overlap=0.5, weights="gaussian", window_batch=2)),
                       (f"window {window}, tiles (overlap 0), bf16", InferenceConfig(window=window, window_batch=2)),
                       (f"window {window}, overlap 0.5, gaussian, + mirror, bf16",
                        InferenceConfig(window=window, overlap=0.5, weights="gaussian", window_batch=2, mirror=True))):
        predict_probabilities([model], case.image, window, cfg, dev)  # warm-up
        sync(dev)
        t = time.perf_counter()
        probs = predict_probabilities([model], case.image, window, cfg, dev)
        labels = to_source_grid(probs, case.meta)
        sync(dev)
        say(f"| {label} | {time.perf_counter() - t:.2f} |")
        assert labels.shape == shape
    say()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU (checks the script itself)")
    p.add_argument("--skip", default="", help="comma-separated sections to skip: correctness,speed,trainer,profile,inference,compile")
    args = p.parse_args()
    if args.cpu_smoke:
        dev = torch.device("cpu")
    else:
        if not torch.cuda.is_available():
            print("gpu_check: no CUDA GPU (torch.cuda.is_available() is False); use --cpu-smoke", file=sys.stderr)
            return 2
        dev = torch.device("cuda")
        torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    say(f"# Engine GPU check: {name}, torch {torch.__version__}, "
        f"{'CUDA ' + str(torch.version.cuda) if dev.type == 'cuda' else 'cpu-smoke'}\n")
    t0 = time.perf_counter()
    skip = set(s.strip() for s in args.skip.split(",") if s.strip())
    for section, fn in (("correctness", correctness), ("speed", speed), ("trainer", trainer), ("profile", profile),
                        ("inference", inference),
                        ("compile", compiled)):
        if section in skip:
            continue
        try:
            fn(dev, args.cpu_smoke)
        except Exception:  # report and go on: one broken section must not hide the others
            FAILURES.append(section)
            say(f"\n**{section} crashed:**\n\n```\n{traceback.format_exc()}```\n")
        flush_report()
    say(f"total {time.perf_counter() - t0:.0f} s; failures: {', '.join(FAILURES) or 'none'}")
    flush_report()
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
