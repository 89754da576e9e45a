"""Synthetic BraTS-like phantoms: the embedded default dataset.

A phantom is a skull-stripped "brain": a deformed ellipsoid with a folded cortical grey-matter ribbon, sulci
and an interhemispheric fissure filled with CSF, lateral ventricles, deep grey nuclei and cortical vessels,
a smooth multiplicative bias field per modality and Gaussian noise. Background is exactly 0. One or two
lesions are placed in the white matter: an irregular edema (ED, label 2) around a tumour core which is either
an enhancing rim (ET, label 4) around a necrotic core (NCR, label 1), or, for low-grade-like cases, a
non-enhancing core (label 1) and no ET at all.

The regions nest and rank as in real BraTS cases, where WT is the easiest region, then TC, then ET. The core
takes 55-80% of the lesion's radius (TC about a quarter to a third of WT, as in high-grade cases); the
enhancing rim is thin (12-25% of the core radius in large lesions, at least 1.3 voxels so the necrosis stays
enclosed) and unevenly enhancing, so ET is a small, thin region whose Dice suffers most from boundary errors;
about 18% of the cases are low-grade-like, without ET, where any false-positive enhancement scores ET 0 (the
BraTS empty-reference rule), as on real low-grade cases. Their non-enhancing core is bright on T2 but darker
than the edema on FLAIR (the T2-FLAIR mismatch of many low-grade gliomas) and dark on T1, so it is visible as
a core: a model that learns it scores TC without the 373 mm penalty. Measured on the demo (BENCHMARKS.md):
the baseline ranks WT > TC > ET on the test cases.

Contrasts follow real scans (values relative to white matter): edema bright on FLAIR and T2; the ET rim bright
on T1ce around a core dark on T1ce; the tumour dark on T1; CSF bright on T2 and dark on FLAIR; vessels bright
on T1ce (so the ET rim is not a plain T1ce threshold). Smooth fields are drawn on a coarse knot grid and
interpolated with separable cubic B-spline matrices, so a 240x240x155 case takes well under a second before
writing. Files are written like real BraTS files: int16 images (one low-grade-like case reaches 32767), labels
uint8 in half the cases and int16 in the others, ``brats_affine(shape)``, 1 mm spacing.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.data.fields import box as _box
from bench.data.fields import coords as _coords
from bench.data.fields import radius as _radius
from bench.data.fields import ramp as _ramp
from bench.data.fields import smooth as _smooth
from bench.data.formats import BRATS2023, MODALITIES, MSD, brats_affine, from_brats
from bench.data.writers import atomic_write_bytes, write_nifti

__all__ = ["PHANTOM_VERSION", "SYNTH_FORMATS", "DEFAULT_SHAPE", "CasePlan", "Phantom", "plan_cases", "make_phantom", "synthesize"]

# Changes with anything that changes the phantoms a seed draws; part of the workspace's synthetic-data key, so
# a workspace made by another version generates its data anew instead of reusing the old phantoms.
PHANTOM_VERSION = 2
SYNTH_FORMATS: tuple[str, ...] = ("brats2019", "brats2023", "msd")
DEFAULT_SHAPE: tuple[int, int, int] = (240, 240, 155)
_REF = np.array(DEFAULT_SHAPE, dtype=np.float64)

# Mean intensity of each tissue relative to white matter, per modality in MODALITIES order (t1, t1ce, t2, flair).
_T = {
    "wm": (1.00, 1.00, 0.42, 0.62),
    "gm": (0.72, 0.74, 0.62, 0.80),
    "csf": (0.28, 0.30, 1.55, 0.22),
    "deep": (0.82, 0.84, 0.52, 0.72),
    "vessel": (0.80, 1.70, 0.30, 0.45),
    "plexus": (0.60, 1.60, 1.00, 0.60),
    "wmh": (0.86, 0.88, 0.95, 1.16),  # white-matter hyperintensities: bright on FLAIR/T2, not tumour
    "ed": (0.66, 0.68, 1.10, 1.32),
    "ncr": (0.38, 0.36, 1.38, 0.92),
    "et": (0.74, 1.72, 0.88, 1.08),
    # non-enhancing core of low-grade-like cases: bright on T2 but darker than edema on FLAIR (the T2-FLAIR
    # mismatch of many low-grade gliomas), dark on T1: distinguishable from edema, as raters distinguish it
    "net": (0.50, 0.55, 1.50, 1.02),
}
_TISSUE = {k: np.array(v, dtype=np.float32) for k, v in _T.items()}


@dataclass(frozen=True)
class CasePlan:
    """What one phantom will contain (decided per dataset so every kind occurs)."""

    low_grade: bool = False  # no enhancing tumour: empty ET
    lesions: int = 1
    full_range: bool = False  # intensities scaled so the brightest voxel is 32767
    label_dtype: str = "uint8"  # "uint8" | "int16", as real BraTS files vary
    trap_seed: int | None = None  # post-processing traps (bench.data.traps) drawn from this seed; None: none


@dataclass
class Phantom:
    """One synthetic case: int16 images by modality name and a uint8 BraTS-2019 label map."""

    images: dict[str, np.ndarray]
    label: np.ndarray
    plan: CasePlan


def plan_cases(n: int, rng: np.random.Generator) -> list[CasePlan]:
    """Kinds of ``n`` cases: about 18% low-grade (no ET, the first at full int16 range), about 25% with two
    lesions, label dtype alternating uint8 / int16."""
    if n <= 0:
        return []
    n_low = int(round(0.18 * n)) if n >= 3 else 0
    n_low = max(n_low, 1) if n >= 3 else n_low
    n_two = int(round(0.25 * n))
    order = rng.permutation(n)
    low = set(order[:n_low].tolist())
    two = set(rng.permutation(n)[:n_two].tolist())
    first_low = min(low) if low else -1
    return [
        CasePlan(
            low_grade=i in low,
            lesions=2 if i in two else 1,
            full_range=i == first_low,
            label_dtype="uint8" if i % 2 == 0 else "int16",
        )
        for i in range(n)
    ]


# ---------------------------------------------------------------------------------------------------------
# smooth random fields


# ---------------------------------------------------------------------------------------------------------
# the phantom


class _Sparse:
    """Maps sub-boxes of the brain box to positions in the 1D array of brain voxels."""

    def __init__(self, mask: np.ndarray):
        self.shape = mask.shape
        self.idx = np.flatnonzero(mask)
        inv = np.full(mask.size, -1, np.int32)
        inv[self.idx] = np.arange(self.idx.size, dtype=np.int32)
        self.inv: np.ndarray = inv.reshape(mask.shape)

    def gather(self, box_field: np.ndarray) -> np.ndarray:
        return box_field.reshape(-1)[self.idx]

    def positions(self, sl: tuple[slice, ...]) -> tuple[np.ndarray, np.ndarray]:
        """(selector of brain voxels inside the sub-box, their positions in the 1D arrays)."""
        pos = self.inv[sl]
        sel = pos >= 0
        return sel, pos[sel]


def make_phantom(shape: Sequence[int], rng: np.random.Generator, plan: CasePlan | None = None) -> Phantom:
    """Draw one phantom of ``shape`` (X, Y, Z) from ``rng``."""
    plan = plan or CasePlan()
    S = np.array(shape, dtype=np.float64)
    if np.any(S < 16):
        raise ValueError(f"phantom shape {tuple(shape)} is too small (each side must be at least 16)")
    sc = S / _REF
    scm = float(sc.mean())

    # --- head geometry: the box around the brain, then only the brain's voxels (1D arrays) ---
    margin = 1.14
    R = np.array([68.0, 84.0, 62.0]) * sc * rng.uniform(0.9, 1.04)
    R = np.minimum(R, (S / 2 - 1.5) / margin)
    C = S / 2 - 0.5 + rng.uniform(-0.02, 0.02, 3) * S
    C = np.clip(C, R * margin + 0.5, S - 1.5 - R * margin)
    lo, hi = _box(C, R * margin, shape)
    bshape = tuple(int(v) for v in hi - lo)
    ref_extent = np.array(bshape) / sc  # box size in reference millimetres
    rv = float(R.mean())

    u = _coords(lo, hi, C, R)
    u[2] = np.where(u[2] < 0, u[2] * 1.15, u[2]).astype(np.float32)  # flatter inferior surface
    deform_box = _smooth(rng, bshape, (5, 5, 4))[0]
    np.clip(deform_box, -1.6, 1.6, out=deform_box)
    rho_box = _radius(u)
    rho_box *= 1 + 0.07 * deform_box
    mask = rho_box < 1.0
    sp = _Sparse(mask)
    rho = sp.gather(rho_box)
    del rho_box
    d_surf = (1.0 - rho) * rv  # approximate depth below the brain surface, voxels

    # sulci: zero sets of a folding field, only in the outer shell; plus the interhemispheric fissure
    hk = 9.0  # gyral period in reference mm
    fold = sp.gather(_smooth(rng, bshape, np.maximum(4, np.round(ref_extent / hk)))[0])
    h_vox = hk * scm
    depth = 17.0 * scm
    d = np.abs(fold, out=fold)
    d *= h_vox / 2.2
    d += 2.0 * np.maximum(d_surf - depth, 0.0)
    fiss2 = (
        np.abs(u[0] * np.float32(R[0]))
        + np.float32(3.0 * rv) * np.maximum(-u[2] - 0.15, 0.0)
        + np.zeros((1, 1, 1), np.float32)
    )  # (bx, 1, bz)
    yz = bshape[1] * bshape[2]
    fiss = fiss2.reshape(-1)[(sp.idx // yz) * bshape[2] + sp.idx % bshape[2]]
    fiss += 3.0 * np.maximum(d_surf - 0.42 * rv, 0.0)  # the fissure stops above the corpus callosum
    np.minimum(d, fiss, out=d)
    np.minimum(d, d_surf, out=d)
    csf_w = max(0.5, 1.1 * scm)
    gm_w = 3.4 * scm
    csf = _ramp(csf_w - d)
    gm = _ramp(csf_w + gm_w - d)
    gm -= csf

    # lateral ventricles, deep grey nuclei, choroid plexus (each in its own small box)
    plex = np.zeros_like(csf)
    for side in (-1.0, 1.0):
        vc = C + np.array([side * 0.11, 0.02, 0.12]) * R + rng.normal(0, 0.015, 3) * R
        vr = np.array([0.065, 0.34, 0.13]) * R * rng.uniform(0.8, 1.25)
        vlo, vhi = _box(vc - lo, vr * 1.3, bshape)
        sl = tuple(slice(a, b) for a, b in zip(vlo, vhi))
        vu = _coords(vlo, vhi, vc - lo, vr)
        vu[0] = vu[0] - 0.35 * vu[1] ** 2 * side  # banana-shaped
        rv_ = _radius(vu)
        rv_ *= 1 + 0.15 * deform_box[sl]
        vf = _ramp((1.0 - rv_) * float(vr.min()))
        sel, p = sp.positions(sl)
        csf[p] = np.maximum(csf[p], vf[sel])
        pc = vc - lo + np.array([0.0, 0.55, -0.2]) * vr
        pr = np.array([0.6, 0.18, 0.5]) * vr
        plo, phi = _box(pc, pr * 1.2, bshape)
        sel, p = sp.positions(tuple(slice(a, b) for a, b in zip(plo, phi)))
        pf = _ramp((1.0 - _radius(_coords(plo, phi, pc, pr))) * float(pr.min()))
        plex[p] = np.maximum(plex[p], pf[sel])
        gc = C + np.array([side * 0.28, 0.05, -0.05]) * R
        gr = np.array([0.12, 0.2, 0.15]) * R * rng.uniform(0.85, 1.15)
        glo, ghi = _box(gc - lo, gr * 1.2, bshape)
        sel, p = sp.positions(tuple(slice(a, b) for a, b in zip(glo, ghi)))
        gf = _ramp((1.0 - _radius(_coords(glo, ghi, gc - lo, gr))) * float(gr.min()) * 0.5)
        gf *= 0.8
        gm[p] = np.maximum(gm[p], gf[sel])
    np.minimum(gm, 1.0 - csf, out=gm)
    plex *= csf

    # cortical vessels: thin tubes where two medium-frequency fields cross zero, in the outer shell
    vk = np.maximum(4, np.round(ref_extent / 14.0))
    g2 = _smooth(rng, bshape, vk, n=2)
    vessel = sp.gather(g2[0])
    # scattered white-matter hyperintensities (small-vessel disease) where the same field peaks, deep only
    wmh = _ramp((vessel - 2.3) * (4.0 * scm + 1.0))
    wmh *= d_surf > depth
    wmh *= 1.0 - csf
    vessel *= vessel
    g1 = sp.gather(g2[1])
    del g2
    g1 *= g1
    vessel += g1
    vessel *= -1.0 / 0.03
    vessel += 1.0
    np.clip(vessel, 0.0, 1.0, out=vessel)
    vessel *= d_surf < depth * 1.3

    # --- lesions: labels on the box, tissue fractions on brain voxels ---
    label = np.zeros(bshape, np.uint8)
    layers = []  # (positions, edema weight, core fraction, ncr fraction or None)
    taken: list[tuple[np.ndarray, float]] = []
    for k in range(plan.lesions):
        if k == 0:
            r_wt = rng.uniform(19.0, 36.0) if plan.lesions == 1 else rng.uniform(16.0, 27.0)
        else:
            r_wt = rng.uniform(11.0, 18.0)
        rw = r_wt * rng.uniform(0.82, 1.2, 3) * sc  # voxels per axis
        reach = 1.45 * float(rw.max())  # about the edema's farthest extent
        lim = max(0.18, 0.72 - float(np.max(rw / R)))
        best, center = -np.inf, C
        for _ in range(60):  # lesions stay apart: the best-separated of a few candidates
            direc = rng.normal(size=3)
            direc /= np.linalg.norm(direc)
            cand = C + direc * rng.uniform(0.12, lim) * R
            gap = min((float(np.linalg.norm(cand - c0)) - reach - r0 for c0, r0 in taken), default=np.inf)
            if gap > best:
                best, center = gap, cand
            if gap > 3.0:
                break
        taken.append((center, reach))
        llo, lhi = _box(center - lo, rw * 1.7, bshape)
        sl = tuple(slice(a, b) for a, b in zip(llo, lhi))
        sel, p = sp.positions(sl)
        lshape = tuple(int(v) for v in lhi - llo)
        f = _smooth(rng, lshape, (6, 6, 5), n=3)
        np.clip(f, -2.0, 2.0, out=f)
        # edema: irregular, stays out of CSF; contrast fades towards its border
        te = _radius(_coords(llo, lhi, center - lo, rw))
        te *= np.maximum(1 + 0.22 * f[0] + 0.1 * f[1], 0.62)  # irregular, but inside the box (1/0.62 < 1.7)
        edf = _ramp((1.0 - te) * float(rw.mean()))[sel]
        edf *= 1.0 - csf[p]
        edf *= 1.0 - 0.75 * gm[p]  # edema spreads in white matter and mostly spares the cortex
        strength = np.clip((1.0 - te[sel]) * 2.0, 0.0, 1.0)
        strength *= 0.6
        strength += 0.4
        # tumour core, off-centre inside the edema
        r_core = rw * rng.uniform(0.55, 0.8)
        cc = center - lo + rng.uniform(-0.25, 0.25, 3) * (rw - r_core)
        tc = _radius(_coords(llo, lhi, cc, r_core))
        tc *= 1 + 0.12 * f[2]
        tc = tc[sel]
        core = _ramp((1.0 - tc) * float(r_core.mean()))
        lab = np.where(edf >= 0.5, np.uint8(2), np.uint8(0))
        lab[core >= 0.5] = 1
        ncr = None
        if not plan.low_grade:
            rim = rng.uniform(0.12, 0.25) if r_wt > 16 else rng.uniform(0.25, 0.45)
            # uneven rim, at least 1.3 voxels thick so the necrosis stays enclosed by enhancement
            rc = float(r_core.mean())
            tn = np.maximum(tc * (1 + 0.18 * f[1][sel]), tc)
            ncr = np.minimum(_ramp((1.0 - tn) * rc - max(rim * rc, 1.3)), core)
            lab[(core >= 0.5) & (ncr < 0.5)] = 4
        sub = label[sl]
        cur = sub[sel]
        sub[sel] = np.where(lab > 0, lab, cur)
        het = 1.0 + 0.22 * f[0][sel]  # uneven enhancement
        layers.append((p, edf * strength, core, ncr, het))

    spur = spots = None
    if plan.trap_seed is not None:
        from bench.data.traps import FAINT_T1CE, trap_fields

        spur, spots = trap_fields(plan, label, mask, sp.idx, scm)

    # --- intensities per modality, on brain voxels ---
    tex_k = np.maximum(4, np.round(ref_extent / 5.0))
    tex = sp.gather(_smooth(rng, bshape, tex_k)[0])
    tex *= 0.035
    tex += 1.0
    bias = _smooth(rng, bshape, (3, 3, 3), n=4)
    bias_amp = rng.uniform(0.06, 0.15, 4).astype(np.float32)
    noise_sd = float(rng.uniform(0.025, 0.045))
    n_vox = int(sp.idx.size)
    stride = 7919
    pool = rng.standard_normal(n_vox + 3 * stride, dtype=np.float32)
    levels = rng.uniform(250.0, 1400.0, 4)
    box_sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    images = {}
    for m, name in enumerate(MODALITIES):
        t = {k: float(v[m]) for k, v in _TISSUE.items()}
        img = gm * (t["gm"] - t["wm"])
        img += csf * (t["csf"] - t["wm"])
        img += t["wm"]
        if name in ("t1ce", "t2"):
            img += vessel * (t["vessel"] - img)
        img += plex * (t["plexus"] - img)
        img += wmh * (t["wmh"] - img)
        if spots is not None:
            img += spots * (t["ed"] - img)
        for p, edw, core, ncr, het in layers:
            reg = img[p]
            reg += edw * (t["ed"] - reg)
            if ncr is None:
                reg += core * (t["net"] - reg)
            else:
                reg += (core - ncr) * (t["et"] * het - reg)
                reg += ncr * (t["ncr"] - reg)
            img[p] = reg
        if spur is not None and name == "t1ce":
            img += spur * (FAINT_T1CE - img)
        img *= tex
        b = sp.gather(bias[m])
        b *= bias_amp[m]
        b += 1.0
        img *= b
        img += noise_sd * pool[m * stride : m * stride + n_vox]
        np.maximum(img, 0.02, out=img)
        scale = float(levels[m])
        if plan.full_range:
            scale = 32767.0 / float(img.max())
        img *= np.float32(scale)
        np.rint(img, out=img)
        np.clip(img, 1, 32767, out=img)
        box = np.zeros(bshape, np.int16)
        box.reshape(-1)[sp.idx] = img
        vol = np.zeros(tuple(int(s) for s in shape), np.int16)
        vol[box_sl] = box
        images[name] = vol
    full_label = np.zeros(tuple(int(s) for s in shape), np.uint8)
    label *= mask
    full_label[box_sl] = label
    return Phantom(images=images, label=full_label, plan=plan)


# ---------------------------------------------------------------------------------------------------------
# writing datasets


def _case_ids(fmt: str, n: int) -> list[str]:
    width = max(3, len(str(n)))
    if fmt == "brats2019":
        return [f"BraTS19_SYN_{i:0{width}d}" for i in range(1, n + 1)]
    if fmt == "brats2023":
        return [f"BraTS-GLI-{i:05d}-000" for i in range(1, n + 1)]
    return [f"BRATS_{i:0{width}d}" for i in range(1, n + 1)]


def _msd_json(training: list[str], test: list[str]) -> dict:
    return {
        "name": "BRATS",
        "description": "Synthetic BraTS-like phantoms written in the MSD Task01_BrainTumour layout (bench)",
        "tensorImageSize": "4D",
        "modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"},
        "labels": {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"},
        "numTraining": len(training),
        "numTest": len(test),
        "training": [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in training],
        "test": [f"./imagesTs/{c}.nii.gz" for c in test],
    }


def _msd_stack(images: dict[str, np.ndarray]) -> np.ndarray:
    return np.stack([images["flair"], images["t1"], images["t1ce"], images["t2"]], axis=-1)


def write_case(phantom: Phantom, case_id: str, out_dir: Path, fmt: str) -> list[Path]:
    """Write one labeled phantom in the layout of ``fmt`` under ``out_dir``; returns the files written."""
    shape = phantom.label.shape
    affine = brats_affine(shape)
    dtype = np.int16 if phantom.plan.label_dtype == "int16" else np.uint8
    written = []
    if fmt == "brats2019":
        folder = out_dir / case_id
        for name in ("flair", "t1", "t1ce", "t2"):
            written.append(write_nifti(folder / f"{case_id}_{name}.nii.gz", phantom.images[name], affine))
        written.append(write_nifti(folder / f"{case_id}_seg.nii.gz", phantom.label.astype(dtype), affine))
    elif fmt == "brats2023":
        folder = out_dir / case_id
        for suffix, name in (("t1n", "t1"), ("t1c", "t1ce"), ("t2w", "t2"), ("t2f", "flair")):
            written.append(write_nifti(folder / f"{case_id}-{suffix}.nii.gz", phantom.images[name], affine))
        seg = from_brats(phantom.label, BRATS2023).astype(dtype)
        written.append(write_nifti(folder / f"{case_id}-seg.nii.gz", seg, affine))
    elif fmt == "msd":
        written.append(write_nifti(out_dir / "imagesTr" / f"{case_id}.nii.gz", _msd_stack(phantom.images), affine))
        seg = from_brats(phantom.label, MSD).astype(np.uint8)
        written.append(write_nifti(out_dir / "labelsTr" / f"{case_id}.nii.gz", seg, affine))
    else:
        raise ValueError(f"unknown format {fmt!r}; accepted: {', '.join(SYNTH_FORMATS)}")
    return written


def synthesize(
    out_dir: Path | str,
    cases: int = 10,
    unlabeled: int = 0,
    shape: Sequence[int] = DEFAULT_SHAPE,
    fmt: str = "brats2019",
    seed: int = 0,
    *,
    progress: bool = False,
    traps: bool = False,
) -> list[str]:
    """Write ``cases`` labeled phantoms in the layout of ``fmt`` under ``out_dir``, and ``unlabeled`` more in
    MSD 4D layout under ``out_dir/unlabeled/imagesTs``. Same arguments, same bytes. Returns the case IDs.
    ``traps``: add the post-processing traps of :mod:`bench.data.traps` (the rest of each phantom unchanged)."""
    if fmt not in SYNTH_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; accepted: {', '.join(SYNTH_FORMATS)}")
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 16:
        raise ValueError(f"shape must be three sizes of at least 16 voxels, got {shape}")
    if cases < 0 or unlabeled < 0:
        raise ValueError("--cases and --unlabeled must be >= 0")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plans = plan_cases(cases, np.random.default_rng([seed, 7]))
    ids = _case_ids(fmt, cases)
    width = max(3, len(str(unlabeled)))
    uids = [f"BRATS_U{i:0{width}d}" for i in range(1, unlabeled + 1)]
    uplans = plan_cases(unlabeled, np.random.default_rng([seed, 8]))
    if traps:
        plans = [dataclasses.replace(p, trap_seed=seed * 100_003 + i) for i, p in enumerate(plans)]
        uplans = [dataclasses.replace(p, trap_seed=seed * 100_003 + 50_000 + i) for i, p in enumerate(uplans)]
    total = cases + unlabeled
    bar = None
    if progress:
        from bench.bars import progress_bar

        bar = progress_bar(total=total, desc="synthesising", unit="case")
    try:
        for i, (cid, plan) in enumerate(zip(ids, plans)):
            ph = make_phantom(shape, np.random.default_rng([seed, 1, i]), plan)
            write_case(ph, cid, out, fmt)
            if bar is not None:
                bar.update(1)
        if fmt == "msd":
            atomic_write_bytes(out / "dataset.json", json.dumps(_msd_json(ids, []), indent=2).encode())
        if unlabeled:
            udir = out / "unlabeled"
            for i, (cid, plan) in enumerate(zip(uids, uplans)):
                ph = make_phantom(shape, np.random.default_rng([seed, 2, i]), plan)
                write_nifti(udir / "imagesTs" / f"{cid}.nii.gz", _msd_stack(ph.images), brats_affine(shape))
                if bar is not None:
                    bar.update(1)
            atomic_write_bytes(udir / "dataset.json", json.dumps(_msd_json([], uids), indent=2).encode())
    finally:
        if bar is not None:
            bar.close()
    return ids
