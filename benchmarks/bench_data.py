"""Data-layer speed: phantom synthesis, and a prepared (cached) case against decoding its .nii.gz files.

Run: ``python benchmarks/bench_data.py [--reps N]``. Both contenders of each ratio are timed side by side in
this one process, alternating, and the median is reported; CPU time (process_time) is shown next to wall time
because the machine may be shared.

Targets (issue 2): one 240x240x155 case synthesised (generated and written) in <= 2 s; one 96x96x64 case in
<= 0.3 s; loading a cached case >= 20x faster than decoding its .nii.gz files.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.data.prepare import prepare  # noqa: E402
from bench.data.readers import list_cases, read_case  # noqa: E402
from bench.data.synth import CasePlan, make_phantom, synthesize, write_case  # noqa: E402


def _time(fn: Callable[[], object]) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def _median(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def bench_synthesis(shape: tuple[int, int, int], reps: int, tmp: Path) -> dict[str, tuple[float, float]]:
    gen, write, total = [], [], []
    for i in range(reps):
        holder: dict = {}

        def gen_one(i: int = i, holder: dict = holder) -> None:
            holder["ph"] = make_phantom(shape, np.random.default_rng([i]), CasePlan())

        def write_one(i: int = i, holder: dict = holder) -> None:
            write_case(holder["ph"], f"BraTS19_B_{i}", tmp / f"w{i}", "brats2019")

        def synth_one(i: int = i) -> None:
            synthesize(tmp / f"s{shape[0]}_{i}", cases=1, shape=shape, seed=i)

        gen.append(_time(gen_one))
        write.append(_time(write_one))
        total.append(_time(synth_one))
    return {"generate": _median(gen), "write 5 files": _median(write), "synthesize (total)": _median(total)}


def bench_cache(shape: tuple[int, int, int], reps: int, tmp: Path) -> dict[str, tuple[float, float]]:
    import nibabel as nib

    src = tmp / f"cache_src_{shape[0]}"
    synthesize(src, cases=1, shape=shape, seed=0)
    ds = prepare(src, tmp / "cache", folds=1, test_fraction=0.0, progress=False)
    cf = list_cases(src)[0]
    files = cf.all_files()
    cid = cf.case_id

    def nibabel_decode() -> None:
        for f in files:
            np.asarray(nib.load(str(f)).dataobj)

    def bench_read() -> None:
        read_case(cf)

    def cache_read() -> None:  # read every voxel into private memory (np.load without memory mapping)
        ds.load(cid, mmap=False)

    def cache_touch() -> None:  # memory-map and read every voxel once in place (what a consumer of the map does)
        pc = ds.load(cid)
        float(pc.image.sum(dtype=np.float32))
        int(pc.label.max())

    def cache_open() -> None:  # what a training loop pays up front: memory maps, read lazily
        ds.load(cid)

    res: dict[str, list[tuple[float, float]]] = {k: [] for k in ("nib", "read", "load", "touch", "open")}
    cache_read()  # warm the page cache for both sides
    nibabel_decode()
    for _ in range(reps):
        res["nib"].append(_time(nibabel_decode))
        res["read"].append(_time(bench_read))
        res["load"].append(_time(cache_read))
        res["touch"].append(_time(cache_touch))
        res["open"].append(_time(cache_open))
    return {
        "decode .nii.gz (nibabel, 5 files)": _median(res["nib"]),
        "read_case (.nii.gz -> canonical)": _median(res["read"]),
        "cache load (np.load into memory)": _median(res["load"]),
        "cache mmap + read every voxel": _median(res["touch"]),
        "cache open (mmap only)": _median(res["open"]),
    }


# ---------------------------------------------------------------------------------------------------------
# learnability: can a small 3D U-Net learn the phantoms quickly? (a check of the data, not of a training recipe)


def _tiny_unet(base: int = 16):
    import torch
    from torch import nn

    def block(cin: int, cout: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv3d(cin, cout, 3, padding=1), nn.InstanceNorm3d(cout, affine=True), nn.LeakyReLU(0.01),
            nn.Conv3d(cout, cout, 3, padding=1), nn.InstanceNorm3d(cout, affine=True), nn.LeakyReLU(0.01),
        )

    class UNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            ch = [base, base * 2, base * 4, base * 8]
            self.enc = nn.ModuleList([block(4, ch[0]), block(ch[0], ch[1]), block(ch[1], ch[2]), block(ch[2], ch[3])])
            self.up = nn.ModuleList([nn.ConvTranspose3d(ch[i + 1], ch[i], 2, stride=2) for i in range(3)])
            self.dec = nn.ModuleList([block(ch[i] * 2, ch[i]) for i in range(3)])
            self.head = nn.Conv3d(ch[0], 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            skips = []
            for i, enc in enumerate(self.enc):
                x = enc(x if i == 0 else nn.functional.max_pool3d(x, 2))
                skips.append(x)
            x = skips.pop()
            for i in (2, 1, 0):
                x = self.dec[i](torch.cat([self.up[i](x), skips.pop()], dim=1))
            return self.head(x)

    return UNet()


def _patch(img: np.ndarray, lab: np.ndarray, size: int, rng: np.random.Generator, fg: bool):
    pad = [(0, 0)] + [(0, max(0, size - s)) for s in img.shape[1:]]
    img = np.pad(img, pad)
    lab = np.pad(lab, pad[1:])
    fg_vox = np.argwhere(lab > 0) if fg else None
    if fg_vox is not None and len(fg_vox):
        c = fg_vox[rng.integers(len(fg_vox))]
        lo = [int(np.clip(c[a] - size // 2, 0, lab.shape[a] - size)) for a in range(3)]
    else:
        lo = [int(rng.integers(0, lab.shape[a] - size + 1)) for a in range(3)]
    sl = tuple(slice(a, a + size) for a in lo)
    i, la = img[(slice(None), *sl)], lab[sl]
    if rng.random() < 0.5:  # left-right mirror
        i, la = i[:, ::-1], la[::-1]
    return np.ascontiguousarray(i), np.ascontiguousarray(la)


def learnability(iters: int, shape: tuple[int, int, int], n_train: int, n_test: int, device: str,
                 eval_at: list[int], cpu_iters: int) -> None:
    import torch
    import torch.nn.functional as F

    from bench.data.formats import classes_to_brats, region_masks

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        synthesize(Path(d) / "raw", cases=n_train + n_test, shape=shape, seed=123)
        ds = prepare(Path(d) / "raw", Path(d) / "cache", folds=1, test_fraction=n_test / (n_train + n_test),
                     progress=False)
        print(f"synthesised + prepared {n_train + n_test} cases of {shape} in {time.perf_counter() - t:.1f} s")
        train = [ds.load(c, mmap=False) for c in ds.train_ids(0)]
        test = [ds.load(c, mmap=False) for c in ds.test_ids()]
        size = 64

        def batch(bs: int = 2):
            items = [_patch(np.asarray(pc.image), np.asarray(pc.label), size, rng, fg=rng.random() < 1 / 3)
                     for pc in (train[int(rng.integers(len(train)))] for _ in range(bs))]
            x = torch.from_numpy(np.stack([a for a, _ in items]))
            y = torch.from_numpy(np.stack([b for _, b in items]).astype(np.int64))
            return x, y

        def loss_fn(logits, y):
            ce = F.cross_entropy(logits, y)
            p = logits.softmax(1)
            oh = F.one_hot(y, 4).permute(0, 4, 1, 2, 3).float()
            inter = (p * oh).sum((0, 2, 3, 4))[1:]
            den = (p + oh).sum((0, 2, 3, 4))[1:]
            return ce + 1 - ((2 * inter + 1e-5) / (den + 1e-5)).mean()

        def evaluate(model) -> dict[str, float]:
            model.eval()
            scores: dict[str, list[float]] = {"ET": [], "TC": [], "WT": []}
            with torch.no_grad():
                for pc in test:
                    img = np.asarray(pc.image)
                    pad = [(0, 0)] + [(0, (-s) % 8) for s in img.shape[1:]]
                    x = torch.from_numpy(np.pad(img, pad))[None].to(device)
                    pred = model(x)[0].argmax(0).cpu().numpy()[tuple(slice(0, s) for s in img.shape[1:])]
                    pm = region_masks(classes_to_brats(pred))
                    gm = region_masks(classes_to_brats(np.asarray(pc.label)))
                    for r in scores:
                        a, b = pm[r], gm[r]
                        s = a.sum() + b.sum()
                        scores[r].append(1.0 if s == 0 else 2 * float((a & b).sum()) / float(s))
            model.train()
            return {r: float(np.mean(v)) for r, v in scores.items()}

        model = _tiny_unet().to(device)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.99, nesterov=True, weight_decay=3e-5)
        t = time.perf_counter()
        for it in range(1, iters + 1):
            for g in opt.param_groups:
                g["lr"] = 0.01 * (1 - (it - 1) / iters) ** 0.9
            x, y = batch()
            loss = loss_fn(model(x.to(device)), y.to(device))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 12)
            opt.step()
            if it in eval_at or it == iters:
                sc = evaluate(model)
                print(f"iter {it:5d}  loss {loss.item():.3f}  test Dice ET {sc['ET']:.3f} TC {sc['TC']:.3f} "
                      f"WT {sc['WT']:.3f}  ({time.perf_counter() - t:.0f} s)", flush=True)
        if cpu_iters:
            torch.set_num_threads(2)
            cpu = _tiny_unet()
            copt = torch.optim.SGD(cpu.parameters(), lr=0.01, momentum=0.99, nesterov=True)
            x, y = batch()
            loss_fn(cpu(x), y).backward()  # warm-up
            t = time.perf_counter()
            for _ in range(cpu_iters):
                x, y = batch()
                copt.zero_grad()
                loss_fn(cpu(x), y).backward()
                copt.step()
            print(f"CPU (2 threads): {(time.perf_counter() - t) / cpu_iters:.2f} s per iteration (batch 2, 64^3)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--learnability", type=int, default=0, metavar="ITERS",
                    help="instead: train a small 3D U-Net for ITERS iterations on 96x96x64 phantoms")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--shape", default="96,96,64")
    ap.add_argument("--cases", default="16,6", help="train,test cases for --learnability")
    ap.add_argument("--cpu-iters", type=int, default=0, help="also time this many CPU iterations (2 threads)")
    args = ap.parse_args()
    if args.learnability:
        n_train, n_test = (int(v) for v in args.cases.split(","))
        marks = [m for m in (50, 100, 200, 300, 400, 600, 800, 1200, 1600) if m < args.learnability]
        learnability(args.learnability, tuple(int(v) for v in args.shape.split(",")), n_train, n_test,  # type: ignore[arg-type]
                     args.device, marks, args.cpu_iters)
        return
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} (1 min) at start")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows: list[tuple[str, str, float, float]] = []
        for shape, reps in (((240, 240, 155), max(3, args.reps // 2)), ((96, 96, 64), args.reps)):
            label = "x".join(map(str, shape))
            for k, (w, c) in bench_synthesis(shape, reps, tmp).items():
                rows.append((f"synthesis {label}", k, w, c))
        cache = bench_cache((240, 240, 155), args.reps, tmp)
        for k, (w, c) in cache.items():
            rows.append(("case load 240x240x155", k, w, c))
    print(f"\n{'group':<26} {'measure':<36} {'wall s':>9} {'cpu s':>9}")
    for g, k, w, c in rows:
        print(f"{g:<26} {k:<36} {w:>9.4f} {c:>9.4f}")
    dec_w = cache["decode .nii.gz (nibabel, 5 files)"][0]
    read_w = cache["read_case (.nii.gz -> canonical)"][0]
    load_w = cache["cache load (np.load into memory)"][0]
    touch_w = cache["cache mmap + read every voxel"][0]
    print(f"\nratio nibabel decode / cache load into memory (wall): {dec_w / load_w:.1f}x   (target >= 20x)")
    print(f"ratio nibabel decode / cache mmap + read every voxel:  {dec_w / touch_w:.1f}x")
    print(f"ratio read_case / cache load into memory (wall):       {read_w / load_w:.1f}x")
    s240 = next(r for r in rows if r[0] == "synthesis 240x240x155" and r[1] == "synthesize (total)")
    s96 = next(r for r in rows if r[0] == "synthesis 96x96x64" and r[1] == "synthesize (total)")
    print(f"synthesis 240x240x155: {s240[2]:.2f} s wall, {s240[3]:.2f} s cpu (target <= 2 s)")
    print(f"synthesis 96x96x64:    {s96[2]:.3f} s wall, {s96[3]:.3f} s cpu (target <= 0.3 s)")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
