"""The BraTS 2024 lesion-wise algorithm (rachitsaluja/BraTS-2024-Metrics, ``metrics_GLI.py``, ``metrics_MET.py``,
``metrics_MEN_RT.py``) step by step on arrays instead of temporary NIfTI files, for the tests: full-volume work,
``cc3d`` components, per-label dilations for touching, DeepMind's ``surface_distance``. Shares no code with
``bench.evaluation``.

Where the official code hands integer arrays to ``surface_distance`` (which accepts boolean masks only) the
masks are passed as booleans; the numbered lesion map goes to the sensitivity / specificity and volume
exactly as in the official code.
"""

from __future__ import annotations

import math
import sys

import cc3d
import numpy as np
import surface_distance
from scipy import ndimage

PENALTY = 374.0
STRUCT = ndimage.generate_binary_structure(3, 2)
GLI_TISSUE = {"WT": (1, 2, 3), "TC": (1, 3), "NETC": (1,), "SNFH": (2,), "ET": (3,), "RC": (4,)}
COHORTS = {
    # name: (dilation, threshold, regions scored, tissue masks, combine steps {tissue: partners}, fp counted)
    "gli": (3, 20.0, ["WT", "TC", "NETC", "SNFH", "ET", "RC"], GLI_TISSUE,
            {"NETC": ["ET", "RC"], "ET": ["NETC", "RC"], "RC": ["ET", "NETC"], "SNFH": ["ET", "RC", "NETC"]}, True),
    "met": (1, 2.0, ["WT", "TC", "ET"], {"WT": (1, 2, 3), "TC": (1, 3), "NETC": (1,), "ET": (3,)},
            {"ET": ["NETC"]}, True),
    "men-rt": (1, 50.0, ["GTV"], {"GTV": (1,)}, {}, False),
}


def _hd95(gt: np.ndarray, pred: np.ndarray, spacing) -> float:
    if not gt.any() or not pred.any():
        return math.inf
    sd = surface_distance.compute_surface_distances(gt.astype(bool), pred.astype(bool), tuple(spacing))
    return float(surface_distance.compute_robust_hausdorff(sd, 95))


def _dice(a, b) -> float:
    a, b = np.asarray(a).astype(bool), np.asarray(b).astype(bool)
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def _sens_spec(result, target):
    iC, rC = np.sum(result), np.sum(target)
    overlap = np.where(result == target, 1, 0)
    TP = overlap[result == 1].sum()
    FP, FN = iC - TP, rC - TP
    TN = np.count_nonzero((result != 1) & (target != 1))
    sens = 1.0 * TP / (TP + FN + sys.float_info.min)
    spec = 1.0 * TN / (TN + FP + sys.float_info.min)
    if iC == 0 and rC == 0:
        sens = 1.0
    return float(sens), float(spec)


def _combined_by_dilation(gt_mask: np.ndarray, dil: int) -> np.ndarray:
    gt_cc = cc3d.connected_components(gt_mask.astype(np.uint8), connectivity=26)
    dil_cc = cc3d.connected_components(
        ndimage.binary_dilation(gt_mask, structure=STRUCT, iterations=dil).astype(np.uint8), connectivity=26)
    out = np.zeros_like(dil_cc)
    for comp in range(1, int(dil_cc.max()) + 1):
        tmp = gt_cc * (dil_cc == comp)
        np.place(tmp, tmp > 0, comp)
        out += tmp.astype(out.dtype)
    return out


def _touching(d1: np.ndarray, d2: np.ndarray) -> set:
    pairs = set()
    for l1 in np.unique(d1)[1:]:
        m1 = d1 == l1
        for l2 in np.unique(d2)[1:]:
            m2 = d2 == l2
            if np.any(ndimage.binary_dilation(m1, STRUCT) & m2) or np.any(ndimage.binary_dilation(m2, STRUCT) & m1):
                pairs.add((l1, l2))
    return pairs


def _relabel(pairs, data: np.ndarray) -> np.ndarray:
    current = int(np.max(data)) + 1
    seen, mapping = {}, {}
    for _orig, common in sorted(pairs):
        if common not in seen:
            seen[common] = current
            current += 1
    for orig, common in sorted(pairs):
        if orig not in mapping:
            mapping[orig] = seen[common]
    out = np.copy(data)
    for orig, new in mapping.items():
        out[data == orig] = new
    return out.astype(np.int32)


def _reorder(data: np.ndarray) -> np.ndarray:
    labels = np.unique(data)
    if labels[0] == 0:
        labels = labels[1:]
    start = int(np.max(data)) + 1
    temp = {lab: i + start for i, lab in enumerate(labels)}
    tmp = np.copy(data)
    for orig, t in temp.items():
        tmp[data == orig] = t
    final = {t: i + 1 for i, t in enumerate(sorted(temp.values()))}
    out = np.copy(tmp)
    for t, f in final.items():
        out[tmp == t] = f
    return out.astype(np.int32)


def _lesion_scores(pred_mask: np.ndarray, gt_lab: np.ndarray, spacing, dil: int):
    sx, sy, sz = spacing
    pred_mat = pred_mask.astype(float)
    gt_mat = gt_lab.astype(float)
    both_empty = np.all(gt_mat == 0) and np.all(pred_mat == 0)
    full_dice = 1.0 if both_empty else _dice(pred_mat, gt_mat)
    full_hd = 0.0 if both_empty else _hd95(gt_mat > 0, pred_mat > 0, spacing)
    sens, spec = _sens_spec(pred_mat, gt_mat)
    gt_vol = np.sum(gt_mat) * sx * sy * sz
    pred_cc = cc3d.connected_components(pred_mask.astype(np.uint8), connectivity=26).astype(np.int32)
    gt_cc = gt_mat.astype(np.int32)
    tp, fn, gt_tp, pairs = [], [], [], []
    for comp in range(1, int(np.max(gt_cc)) + 1):
        les = (gt_cc == comp).astype(np.int32)
        les_dil = ndimage.binary_dilation(les, structure=STRUCT, iterations=dil)
        vol = np.sum(les) * sx * sy * sz
        hits = np.unique(pred_cc * les_dil)
        hits = hits[hits != 0]
        tp.extend(hits.tolist())
        ptmp = np.isin(pred_cc, hits).astype(np.int32)
        pairs.append((len(hits), vol, _dice(ptmp, les), _hd95(les > 0, ptmp > 0, spacing)))
        (gt_tp if len(hits) else fn).append(comp)
    fp = np.unique(pred_cc[np.isin(pred_cc, tp + [0], invert=True)])
    return fn, fp, gt_tp, pairs, full_dice, full_hd, gt_vol, sens, spec


def reference_case(pred: np.ndarray, gt: np.ndarray, spacing, cohort: str) -> list[dict]:
    dil, thresh, regions, tissue, combine, count_fp = COHORTS[cohort]
    base = {t: _combined_by_dilation(np.isin(gt, labs), dil) for t, labs in tissue.items()}
    lesions = dict(base)
    for _ in range(2 if cohort == "gli" else 1):
        for t, partners in combine.items():
            cur = base[t]
            for partner in partners:
                pairs = _touching(cur, base[partner])
                if len(pairs) > 1:
                    cur = _relabel(pairs, cur)
            lesions[t] = cur
    for t in combine:
        lesions[t] = _reorder(lesions[t])
    rows = []
    for region in regions:
        if region == "ET" and cohort == "gli":
            thresh = 10.0
        fn, fp, gt_tp, pairs, full_dice, full_hd, gt_vol, sens, spec = _lesion_scores(
            np.isin(pred, tissue[region]), lesions[region], spacing, dil)
        fn_sub = sum(1 for n, v, _, _ in pairs if n == 0 and v <= thresh)
        tp_sub = sum(1 for n, v, _, _ in pairs if n != 0 and v <= thresh)
        kept = [(d, PENALTY if math.isinf(h) else h) for n, v, d, h in pairs if v > thresh]
        n_fp = len(fp)
        denom = len(kept) + (n_fp if count_fp else 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            ld = np.float64(sum(d for d, _ in kept)) / denom
            lh = (np.float64(sum(h for _, h in kept)) + (n_fp * PENALTY if count_fp else 0)) / denom
        rows.append({
            "Labels": region, "Num_TP": len(gt_tp) - tp_sub, "Num_FP": n_fp, "Num_FN": len(fn) - fn_sub,
            "Sensitivity": sens, "Specificity": spec, "Legacy_Dice": full_dice,
            "Legacy_HD95": PENALTY if math.isinf(full_hd) else full_hd, "GT_Complete_Volume": float(gt_vol),
            "LesionWise_Score_Dice": 1.0 if math.isnan(ld) else float(ld),
            "LesionWise_Score_HD95": 0.0 if math.isnan(lh) else float(lh),
        })
    return rows
