"""BraTS 2024 lesion-wise rules (rachitsaluja/BraTS-2024-Metrics: ``metrics_GLI.py``, ``metrics_MET.py``,
``metrics_MEN_RT.py``), computed on arrays in one pass per region instead of through temporary NIfTI files.

Labels (BraTS 2023+ numbering): GLI post-treatment 1 NETC, 2 SNFH, 3 ET, 4 RC (resection cavity); MET 1 NETC,
2 SNFH, 3 ET; MEN-RT 1 GTV. Regions: GLI WT = {1, 2, 3} (RC left out), TC = {1, 3}, NETC, SNFH, ET, RC; MET WT,
TC, ET; MEN-RT GTV. Per region, with the cohort's dilation ``d`` (GLI 3, MET 1, MEN-RT 1):

- Reference lesions: the 26-connected components of the region dilated ``d`` times with the 18-neighbourhood;
  the reference voxels of one dilated component form one lesion.
- GLI tissues (NETC, SNFH, ET, RC) and MET's ET are then merged across tissues, as the official code's
  ``combine_lesions_*`` do: for each partner tissue in turn (NETC: ET, RC; ET: NETC, RC; RC: ET, NETC; SNFH:
  ET, RC, NETC; MET ET: NETC), the lesions that touch (18-neighbourhood) a partner lesion are relabelled by the
  lowest-numbered partner lesion they touch, so lesions touching the same one merge; nothing changes when
  fewer than two (lesion, partner) pairs touch. Lesions are numbered 1..k in the order of their labels.
- A lesion is matched by every 26-connected predicted component that touches the lesion dilated ``d`` times;
  its Dice and HD95 (DeepMind's robust Hausdorff distance at 95 %, :mod:`bench.evaluation.surface`) compare it
  with the union of those components; a missed lesion scores Dice 0 and HD95 374. Predicted components
  matching no lesion are false positives.
- Lesions of volume <= the threshold (mm^3) drop out: GLI 20, ET 10 and RC 10 (the official loop sets 10 at
  ET and never resets it), MET 2, MEN-RT 50.
- LesionWise_Score_Dice = sum of kept lesion Dice / (kept + FP), HD95 = (sum + 374 FP) / (kept + FP); MEN-RT
  leaves the false positives out of both; 0/0 gives 1 and 0.
- Legacy values over the whole region: Dice (1 when both empty), robust HD95 (0 when both empty, 374 when one
  is). Sensitivity, specificity and GT_Complete_Volume are computed by the official code on the *numbered*
  lesion map, and so are here: TP counts predicted voxels on lesion 1 only, the reference "volume" is the sum
  of lesion numbers times the voxel volume (equal to the plain values when the region has one lesion).

All work happens in the box of the case's labelled voxels grown by ``d + 1``; nothing outside can change a
component, a dilation or a surface.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from bench.data.formats import BRATS2023, from_brats
from bench.evaluation.rules._base import Row, Rules, pandas_stats, spacing3
from bench.evaluation.surface import robust_hd95

__all__ = ["Brats2024", "PENALTY", "COLUMNS"]

PENALTY = 374.0
_TINY = sys.float_info.min
_S18 = ndimage.generate_binary_structure(3, 2)
_S26 = np.ones((3, 3, 3), dtype=bool)
_OFFSETS18 = np.argwhere(_S18) - 1  # the 19 offsets of the 18-neighbourhood and the voxel itself

COLUMNS: tuple[str, ...] = (
    "Labels", "Num_TP", "Num_FP", "Num_FN", "Sensitivity", "Specificity", "Legacy_Dice", "Legacy_HD95",
    "GT_Complete_Volume", "LesionWise_Score_Dice", "LesionWise_Score_HD95",
)
_METRICS = COLUMNS[1:]


@dataclass(frozen=True)
class _Region:
    name: str
    labels: tuple[int, ...]
    threshold: float
    merge_with: tuple[str, ...] = ()  # partner tissues, in the official order


@dataclass(frozen=True)
class _Cohort:
    name: str
    title: str
    labels: tuple[int, ...]
    dilation: int
    regions: tuple[_Region, ...]
    tissues: dict[str, tuple[int, ...]]  # partner tissues for merging
    count_fp: bool = True


_GLI_TISSUES: dict[str, tuple[int, ...]] = {"NETC": (1,), "SNFH": (2,), "ET": (3,), "RC": (4,)}
COHORTS: dict[str, _Cohort] = {
    c.name: c for c in (
        _Cohort("gli", "post-treatment adult glioma", (0, 1, 2, 3, 4), 3, (
            _Region("WT", (1, 2, 3), 20.0), _Region("TC", (1, 3), 20.0),
            _Region("NETC", (1,), 20.0, ("ET", "RC")), _Region("SNFH", (2,), 20.0, ("ET", "RC", "NETC")),
            _Region("ET", (3,), 10.0, ("NETC", "RC")), _Region("RC", (4,), 10.0, ("ET", "NETC")),
        ), _GLI_TISSUES),
        _Cohort("met", "brain metastases", (0, 1, 2, 3), 1, (
            _Region("WT", (1, 2, 3), 2.0), _Region("TC", (1, 3), 2.0), _Region("ET", (3,), 2.0, ("NETC",)),
        ), {"NETC": (1,)}),
        _Cohort("men-rt", "meningioma radiotherapy (GTV)", (0, 1), 1, (_Region("GTV", (1,), 50.0),), {},
                count_fp=False),
    )
}


def _box_of(mask: np.ndarray, margin: int) -> tuple[slice, ...] | None:
    boxes = ndimage.find_objects(mask.view(np.uint8))
    return _grow(boxes[0], margin, mask.shape) if boxes and boxes[0] is not None else None


def _base_lesions(g: np.ndarray, dilation: int) -> np.ndarray:
    """Reference voxels numbered by the dilated 26-component holding them (computed in their own box)."""
    out = np.zeros(g.shape, dtype=np.int32)
    box = _box_of(g, dilation + 1)
    if box is None:
        return out
    dil = ndimage.binary_dilation(g[box], structure=_S18, iterations=dilation)
    lab, _ = ndimage.label(dil, structure=_S26)
    out[box] = np.where(g[box], lab, 0)
    return out


def _touching(cur: np.ndarray, partner: np.ndarray) -> set[tuple[int, int]]:
    """(label of ``cur``, label of ``partner``) pairs that are 18-neighbours (or share a voxel)."""
    pts = np.nonzero(cur)
    if pts[0].size == 0 or not partner.any():
        return set()
    own = cur[pts].astype(np.int64)
    width = int(partner.max()) + 1
    codes: list[np.ndarray] = []
    for off in _OFFSETS18:
        q = [p + o for p, o in zip(pts, off)]
        ok = np.ones(own.size, dtype=bool)
        for axis, n in enumerate(cur.shape):
            ok &= (q[axis] >= 0) & (q[axis] < n)
        other = partner[tuple(a[ok] for a in q)].astype(np.int64)
        hit = other > 0
        codes.append(own[ok][hit] * width + other[hit])
    allc = np.unique(np.concatenate(codes))
    return {(int(c // width), int(c % width)) for c in allc}


def _relabel(cur: np.ndarray, pairs: set[tuple[int, int]]) -> np.ndarray:
    """The official ``relabel_nifti_image``: each touching label takes the new label of its lowest partner."""
    if len(pairs) <= 1:
        return cur
    nxt = int(cur.max()) + 1
    seen: dict[int, int] = {}
    mapping: dict[int, int] = {}
    for _orig, common in sorted(pairs):
        if common not in seen:
            seen[common] = nxt
            nxt += 1
    for orig, common in sorted(pairs):
        mapping.setdefault(orig, seen[common])
    lut = np.arange(nxt, dtype=np.int64)
    for orig, new in mapping.items():
        lut[orig] = new
    return lut[cur]


def _reorder(lab: np.ndarray) -> np.ndarray:
    """Labels renumbered 1..k in increasing order, 0 kept."""
    counts = np.bincount(lab.ravel()) if lab.size else np.zeros(1, np.int64)
    present = np.flatnonzero(counts[1:]) + 1
    lut = np.zeros(counts.size, dtype=np.int64)
    lut[present] = np.arange(1, present.size + 1)
    return lut[lab]


def _grow(box: tuple[slice, ...], margin: int, shape: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(max(0, s.start - margin), min(n, s.stop + margin)) for s, n in zip(box, shape))


def _union(a: tuple[slice, ...], b: tuple[slice, ...]) -> tuple[slice, ...]:
    return tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b))


def _region_row(p: np.ndarray, lab: np.ndarray, spacing: tuple[float, float, float], n_total: int,
                region: _Region, cohort: _Cohort) -> Row:
    """The official values of one region from the prediction mask and the numbered lesion map (box)."""
    sx, sy, sz = spacing
    vox = sx * sy * sz
    g = lab > 0
    n_p, n_g = int(np.count_nonzero(p)), int(np.count_nonzero(g))
    inter = int(np.count_nonzero(p & g))
    both_empty = n_p == 0 and n_g == 0
    legacy_dice = 1.0 if both_empty else 2.0 * inter / (n_p + n_g)
    if both_empty:
        legacy_hd = 0.0
    elif n_p == 0 or n_g == 0:
        legacy_hd = PENALTY
    else:
        legacy_hd = robust_hd95(g, p, spacing)
    # the official code hands the numbered lesion map to GaNDLF's sensitivity / specificity
    r_sum = int(lab.sum(dtype=np.int64))
    tp1 = int(np.count_nonzero(p & (lab == 1)))
    tn = n_total - int(np.count_nonzero(p | (lab == 1)))
    sens = 1.0 * tp1 / (tp1 + (r_sum - tp1) + _TINY)
    spec = 1.0 * tn / (tn + (n_p - tp1) + _TINY)
    if n_p == 0 and r_sum == 0:
        sens = 1.0

    pred_cc, n_comp = ndimage.label(p, structure=_S26)
    comp_sizes = np.bincount(pred_cc.ravel(), minlength=n_comp + 1)
    comp_boxes = ndimage.find_objects(pred_cc, max_label=n_comp) if n_comp else []
    n_les = int(lab.max()) if lab.size else 0
    les_boxes = ndimage.find_objects(lab, max_label=n_les) if n_les else []
    matched = np.zeros(n_comp + 1, dtype=bool)
    dice_sum = hd_sum = 0.0
    kept = tp = fn = 0
    for k in range(1, n_les + 1):
        box = les_boxes[k - 1]
        if box is None:
            continue
        box = _grow(box, cohort.dilation, lab.shape)
        les = lab[box] == k
        reach = ndimage.binary_dilation(les, structure=_S18, iterations=cohort.dilation)
        hits = np.unique(pred_cc[box][reach])
        hits = hits[hits != 0]
        matched[hits] = True
        size = int(np.count_nonzero(les))
        if size * vox <= region.threshold:
            continue
        kept += 1
        if hits.size == 0:
            fn += 1
            hd_sum += PENALTY
            continue
        tp += 1
        hit_voxels = int(np.count_nonzero(les & np.isin(pred_cc[box], hits)))
        dice_sum += 2.0 * hit_voxels / (float(comp_sizes[hits].sum()) + size)
        hbox = box
        for c in hits:
            hbox = _union(hbox, comp_boxes[c - 1])
        hd_sum += robust_hd95(lab[hbox] == k, np.isin(pred_cc[hbox], hits), spacing)
    n_fp = n_comp - int(np.count_nonzero(matched[1:]))
    denom = kept + n_fp if cohort.count_fp else kept
    if denom == 0:
        lw_dice, lw_hd = 1.0, 0.0
    else:
        lw_dice = dice_sum / denom
        lw_hd = (hd_sum + (PENALTY * n_fp if cohort.count_fp else 0.0)) / denom
    return {
        "Labels": region.name, "Num_TP": tp, "Num_FP": n_fp, "Num_FN": fn, "Sensitivity": sens,
        "Specificity": spec, "Legacy_Dice": legacy_dice, "Legacy_HD95": legacy_hd,
        "GT_Complete_Volume": r_sum * vox, "LesionWise_Score_Dice": lw_dice, "LesionWise_Score_HD95": lw_hd,
    }


class Brats2024(Rules):
    """BraTS 2024 lesion-wise rules (GLI post-treatment, MET, MEN-RT)."""

    year = "2024"
    title = "BraTS 2024 lesion-wise"
    layout = "long"
    id_column = "case"

    def cohorts(self) -> tuple[str, ...]:
        return tuple(COHORTS)

    def labels(self, cohort: str) -> tuple[int, ...]:
        return COHORTS[self.cohort(cohort)].labels

    def regions(self, cohort: str) -> tuple[str, ...]:
        return tuple(r.name for r in COHORTS[self.cohort(cohort)].regions)

    def columns(self, cohort: str) -> tuple[str, ...]:
        return ("case", *COLUMNS)

    def describe(self, cohort: str) -> str:
        c = COHORTS[self.cohort(cohort)]
        thr = ", ".join(f"{r.name} {r.threshold:g}" for r in c.regions)
        fp = "" if c.count_fp else "; false positives left out of the scores"
        return (f"BraTS 2024 {c.name.upper()} lesion-wise rules ({c.title}): dilation {c.dilation}, lesions <= "
                f"threshold mm^3 ignored ({thr}), HD95 penalty {PENALTY:g} mm{fp}")

    def numbering_is_glioma(self, cohort: str) -> bool:
        return self.cohort(cohort) in ("gli", "met")

    def from_brats2019(self, label: np.ndarray) -> np.ndarray:
        return from_brats(label, BRATS2023)

    def score(self, pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float] | float | None,
              cohort: str, case_id: str = "") -> list[Row]:
        c = COHORTS[self.cohort(cohort)]
        pred, gt = np.asarray(pred), np.asarray(gt)
        if pred.shape != gt.shape or pred.ndim != 3:
            raise ValueError(f"expected two 3-D label maps of one shape, got {pred.shape} and {gt.shape}")
        s = spacing3(spacing)
        n_total = int(pred.size)
        occupied = (pred != 0) | (gt != 0)
        box = ndimage.find_objects(occupied.view(np.uint8))
        if box and box[0] is not None:
            b = _grow(box[0], c.dilation + 1, pred.shape)
        else:
            b = tuple(slice(0, 1) for _ in pred.shape)
        pb, gb = pred[b], gt[b]
        base: dict[tuple[int, ...], np.ndarray] = {}

        def lesions(labels: tuple[int, ...]) -> np.ndarray:
            if labels not in base:
                base[labels] = _base_lesions(np.isin(gb, labels), c.dilation)
            return base[labels]

        rows: list[Row] = []
        for region in c.regions:
            lab = lesions(region.labels)
            if region.merge_with:
                for partner in region.merge_with:
                    lab = _relabel(lab, _touching(lab, lesions(c.tissues[partner])))
                lab = _reorder(lab)
            p = np.isin(pb, region.labels)
            sub = _box_of(p | (lab > 0), c.dilation + 1) or tuple(slice(0, 1) for _ in p.shape)
            row = _region_row(p[sub], lab[sub], s, n_total, region, c)
            rows.append({"case": case_id, **row})
        return rows

    def values(self, rows: Sequence[Row], cohort: str) -> list[tuple[str, str, float]]:
        return [(str(r["Labels"]), m, float(r[m])) for r in rows for m in _METRICS]

    def summary(self, rows: Sequence[Row], cohort: str) -> list[Row]:
        out: list[Row] = []
        for region in self.regions(cohort):
            mine = [r for r in rows if r["Labels"] == region]
            stats = {m: pandas_stats([float(r[m]) for r in mine]) for m in _METRICS}
            for s in ("mean", "std", "median"):
                out.append({"case": s, "Labels": region, **{m: stats[m][s] for m in _METRICS}})
        return out
