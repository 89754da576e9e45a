"""BraTS 2025+ rules: the official ``BraTS-evaluation`` package (0.0.10) on Panoptica (2.1.7), with its
bundled configs ``gli``, ``mets``, ``ped``, ``MenRT``, ``MenPre`` and ``GoAT`` and the 91 columns (for ``gli``)
of ``brats-parse-metrics seg``. Re-implemented on numpy/scipy (no Panoptica import at run time) and checked
value for value against the package in the tests.

Per region (a config group: one label, or several merged into one mask):

- Instances: 26-connected components of prediction and reference, numbered in raster order.
- Matching: every overlapping (reference, prediction) pair with DSC >= 1e-6 gets the cost 1 - DSC, all other
  pairs 1 + 1e-6; ``scipy.optimize.linear_sum_assignment`` picks the one-to-one assignment and pairs with cost
  < 1 are true positives (TP). FP = prediction instances - TP, FN = reference instances - TP; precision
  TP/(TP+FP), recall TP/(TP+FN) (empty when the denominator is 0), F1 (Panoptica's RQ) TP/(TP + FP/2 + FN/2),
  0 without TP unless there is no instance at all (then empty).
- Lesion-wise values: mean and population std over the TPs of the instance DSC, NSD and HD95 (HD95: medpy's
  pooled 95th percentile of the symmetric surface distances; NSD: the share of both surfaces within the
  smallest voxel size of the other, GaNDLF's formula). Without a TP: DSC 0, NSD 0, HD95 inf (std empty), and
  all empty when neither side has an instance.
- Global values of the region masks: DSC, NSD and HD95 computed, as Panoptica does, *without* the voxel size
  (1 voxel = 1 unit, NSD tolerance 0.5); without overlap DSC 0, NSD 0, HD95 inf (written 373), and empty when
  both masks are empty.

Orientation: the package reads NIfTI files through SimpleITK, whose arrays are (z, y, x) while the spacing
stays (x, y, z); the voxel sizes therefore meet the array axes in reverse. That is reproduced here (it only
matters for anisotropic voxels) so the values equal the package's on the same files. Empty entries are NaN;
a reference case without a prediction gets the parser's row: 373 in every HD95 mean / global column, 0
elsewhere.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from bench.data.formats import BRATS2023, from_brats
from bench.evaluation.metrics import surface_distances
from bench.evaluation.rules._base import Row, Rules, pandas_stats, spacing3

__all__ = ["Brats2025", "CONFIGS", "HD95_FILL", "METRICS"]

HD95_FILL = 373.0  # the parser's "diameter of the cube in SRI space" for inf and for missing cases
MATCH_THRESHOLD = 1e-6
_S26 = np.ones((3, 3, 3), dtype=bool)
_TINY = sys.float_info.min

# per-region leaderboard columns, in the parser's order: f"{metric}_{region}"
METRICS: tuple[str, ...] = (
    "all_instance_tp", "all_instance_fp", "all_instance_fn", "all_instance_prec", "all_instance_rec",
    "all_instance_f1", "global_dsc", "global_nsd", "global_hd95", "lesionwise_dsc_mean", "lesionwise_dsc_std",
    "lesionwise_nsd_mean", "lesionwise_nsd_std", "lesionwise_hd95_mean", "lesionwise_hd95_std",
)


@dataclass(frozen=True)
class _Config:
    name: str
    title: str
    groups: tuple[tuple[str, tuple[int, ...]], ...]  # (region, labels) in the YAML order

    @property
    def labels(self) -> tuple[int, ...]:
        return (0, *sorted({v for _, labs in self.groups for v in labs}))


_MEN = (("et", (3,)), ("tc", (1, 3)), ("wt", (1, 2, 3)))
CONFIGS: dict[str, _Config] = {
    c.name: c for c in (
        _Config("gli", "adult glioma (post-treatment)", (
            ("snfh", (2,)), ("et", (3,)), ("netc", (1,)), ("rc", (4,)), ("tc", (1, 3)), ("wt", (1, 2, 3)))),
        _Config("mets", "brain metastases", (("et", (3,)), ("rc", (4,)), ("tc", (1, 3)), ("wt", (1, 2, 3)))),
        _Config("ped", "paediatric tumours", (
            ("et", (1,)), ("netc", (2,)), ("cc", (3,)), ("ed", (4,)), ("tc", (1, 2, 3)), ("wt", (1, 2, 3, 4)))),
        _Config("MenRT", "meningioma radiotherapy", (("gtv", (1,)),)),
        _Config("MenPre", "pre-operative meningioma", _MEN),
        _Config("GoAT", "generalisability across tumours", _MEN),
    )
}


def _surface_pair(ref: np.ndarray, pred: np.ndarray, spacing: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(reference border -> prediction border, prediction border -> reference border) distances."""
    d_pg, d_gp = surface_distances(pred, ref, spacing)
    return d_gp, d_pg


def _hd95(sd_ref: np.ndarray, sd_pred: np.ndarray) -> float:
    return float(np.percentile(np.hstack((sd_ref, sd_pred)), 95))


def _nsd(sd_ref: np.ndarray, sd_pred: np.ndarray, tolerance: float) -> float:
    na, nb = len(sd_ref), len(sd_pred)
    tp_a = np.sum(sd_ref <= tolerance) / na
    tp_b = np.sum(sd_pred <= tolerance) / nb
    fp = np.sum(sd_ref > tolerance) / na
    fn = np.sum(sd_pred > tolerance) / nb
    return float((tp_a + tp_b) / (tp_a + tp_b + fp + fn + _TINY))


def _zero_tp(n_pred: int, n_ref: int) -> tuple[float, float, float]:
    """(DSC, NSD, HD95) of the configs' edge-case table when there is no TP."""
    if n_pred + n_ref == 0:
        return math.nan, math.nan, math.nan
    return 0.0, 0.0, math.inf


def _crop(mask: np.ndarray) -> tuple[slice, ...] | None:
    boxes = ndimage.find_objects(mask.view(np.uint8))
    return boxes[0] if boxes else None


def _union(a: tuple[slice, ...], b: tuple[slice, ...]) -> tuple[slice, ...]:
    return tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b))


def region_values(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, float, float]) -> dict[str, float]:
    """Panoptica's values of one region (two boolean masks in the package's array orientation)."""
    box = _crop(pred | ref)
    if box is None:
        nan = math.nan
        return {"tp": 0, "fp": 0, "fn": 0, "prec": nan, "rec": nan, "rq": nan, "global_bin_dsc": nan,
                "global_bin_nsd": nan, "global_bin_hd95": nan, "sq_dsc": nan, "sq_dsc_std": nan,
                "sq_nsd": nan, "sq_nsd_std": nan, "sq_hd95": nan, "sq_hd95_std": nan}
    p, g = pred[box], ref[box]
    pl, n_p = ndimage.label(p, structure=_S26)
    gl, n_g = ndimage.label(g, structure=_S26)
    dsc: list[float] = []
    nsd: list[float] = []
    hd: list[float] = []
    tolerance = min(spacing)
    if n_p and n_g:
        width = n_g + 1
        enc = gl.astype(np.int64) + pl.astype(np.int64) * width
        enc[gl == 0] = 0
        values, inter = np.unique(enc, return_counts=True)
        keep = values > width
        values, inter = values[keep], inter[keep].astype(np.float64)
        pair_ref, pair_pred = values % width, values // width
        ref_area = np.bincount(gl.ravel())[pair_ref].astype(np.float64)
        pred_area = np.bincount(pl.ravel())[pair_pred].astype(np.float64)
        scores = 2.0 * inter / (ref_area + pred_area)
        cost = np.full((n_g, n_p), 1.0 + 1e-6)
        ok = scores >= MATCH_THRESHOLD
        cost[pair_ref[ok] - 1, pair_pred[ok] - 1] = 1.0 - scores[ok]
        rows, cols = linear_sum_assignment(cost)
        pairs = sorted((int(r) + 1, int(c) + 1) for r, c in zip(rows, cols) if cost[r, c] < 1.0)
        if pairs:
            rboxes = ndimage.find_objects(gl, max_label=n_g)
            pboxes = ndimage.find_objects(pl, max_label=n_p)
            for r, c in pairs:
                b = _union(rboxes[r - 1], pboxes[c - 1])
                rm, pm = gl[b] == r, pl[b] == c
                n_r, n_c = int(np.count_nonzero(rm)), int(np.count_nonzero(pm))
                dsc.append(2 * int(np.count_nonzero(rm & pm)) / (n_r + n_c))
                sd_ref, sd_pred = _surface_pair(rm, pm, spacing)
                hd.append(_hd95(sd_ref, sd_pred))
                nsd.append(_nsd(sd_ref, sd_pred, tolerance))
    tp = len(dsc)
    fp, fn = n_p - tp, n_g - tp
    out: dict[str, float] = {"tp": tp, "fp": fp, "fn": fn}
    out["prec"] = tp / (tp + fp) if tp + fp else math.nan
    out["rec"] = tp / (tp + fn) if tp + fn else math.nan
    if tp == 0:
        out["rq"] = 0.0 if n_p + n_g > 0 else math.nan
    else:
        out["rq"] = tp / (tp + 0.5 * fp + 0.5 * fn)
    overlap = int(np.count_nonzero(p & g))
    if overlap == 0:
        gd, gn, gh = _zero_tp(n_p, n_g)
    else:
        gd = 2 * overlap / (int(np.count_nonzero(g)) + int(np.count_nonzero(p)))
        sd_ref, sd_pred = _surface_pair(g, p, (1.0, 1.0, 1.0))  # Panoptica passes no spacing here
        gh = _hd95(sd_ref, sd_pred)
        gn = _nsd(sd_ref, sd_pred, 0.5)
    out.update(global_bin_dsc=gd, global_bin_nsd=gn, global_bin_hd95=gh)
    if tp == 0:
        zd, zn, zh = _zero_tp(n_p, n_g)
        out.update(sq_dsc=zd, sq_nsd=zn, sq_hd95=zh, sq_dsc_std=math.nan, sq_nsd_std=math.nan,
                   sq_hd95_std=math.nan)
    else:
        for key, vals in (("dsc", dsc), ("nsd", nsd), ("hd95", hd)):
            out[f"sq_{key}"] = float(np.average(vals))
            out[f"sq_{key}_std"] = float(np.std(vals))
    return out


def parsed_columns(region: str, v: dict[str, float]) -> Row:
    """``brats-parse-metrics seg``'s columns of one region (global HD95 inf written as 373)."""
    ghd = v["global_bin_hd95"]
    if math.isinf(ghd):
        ghd = HD95_FILL
    return {
        f"all_instance_tp_{region}": v["tp"], f"all_instance_fp_{region}": v["fp"],
        f"all_instance_fn_{region}": v["fn"], f"all_instance_prec_{region}": v["prec"],
        f"all_instance_rec_{region}": v["rec"], f"all_instance_f1_{region}": v["rq"],
        f"global_dsc_{region}": v["global_bin_dsc"], f"global_nsd_{region}": v["global_bin_nsd"],
        f"global_hd95_{region}": ghd,
        f"lesionwise_dsc_mean_{region}": v["sq_dsc"], f"lesionwise_dsc_std_{region}": v["sq_dsc_std"],
        f"lesionwise_nsd_mean_{region}": v["sq_nsd"], f"lesionwise_nsd_std_{region}": v["sq_nsd_std"],
        f"lesionwise_hd95_mean_{region}": v["sq_hd95"], f"lesionwise_hd95_std_{region}": v["sq_hd95_std"],
    }


class Brats2025(Rules):
    """BraTS 2025+ (BraTS-evaluation 0.0.10 on Panoptica 2.1.7)."""

    year = "2025"
    title = "BraTS 2025 Panoptica"
    layout = "wide"
    id_column = "subject_id"

    def cohorts(self) -> tuple[str, ...]:
        return tuple(CONFIGS)

    def labels(self, cohort: str) -> tuple[int, ...]:
        return CONFIGS[self.cohort(cohort)].labels

    def regions(self, cohort: str) -> tuple[str, ...]:
        return tuple(name for name, _ in CONFIGS[self.cohort(cohort)].groups)

    def columns(self, cohort: str) -> tuple[str, ...]:
        return ("subject_id", *(f"{m}_{r}" for r in self.regions(cohort) for m in METRICS))

    def describe(self, cohort: str) -> str:
        c = CONFIGS[self.cohort(cohort)]
        return (f"BraTS 2025 rules, config {c.name} ({c.title}): one-to-one matching of connected components "
                f"(DSC >= {MATCH_THRESHOLD:g}), lesion-wise DSC/NSD/HD95 over matched lesions, global values "
                f"in voxel units, HD95 inf written {HD95_FILL:g}")

    def numbering_is_glioma(self, cohort: str) -> bool:
        return self.cohort(cohort) in ("gli", "mets", "MenPre", "GoAT")

    def from_brats2019(self, label: np.ndarray) -> np.ndarray:
        return from_brats(label, BRATS2023)

    def score(self, pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float] | float | None,
              cohort: str, case_id: str = "") -> list[Row]:
        c = CONFIGS[self.cohort(cohort)]
        pred, gt = np.asarray(pred), np.asarray(gt)
        if pred.shape != gt.shape or pred.ndim != 3:
            raise ValueError(f"expected two 3-D label maps of one shape, got {pred.shape} and {gt.shape}")
        s = spacing3(spacing)
        # SimpleITK's (z, y, x) arrays with the (x, y, z) spacing, as the package evaluates files
        pa, ga = pred.transpose(2, 1, 0), gt.transpose(2, 1, 0)
        row: Row = {"subject_id": case_id}
        for region, labels in c.groups:
            row.update(parsed_columns(region, region_values(np.isin(pa, labels), np.isin(ga, labels), s)))
        return [row]

    def missing(self, case_id: str, gt: np.ndarray, spacing: Sequence[float] | float | None,
                cohort: str) -> list[Row]:
        row: Row = {"subject_id": case_id}
        for col in self.columns(cohort)[1:]:
            row[col] = HD95_FILL if "hd95" in col and "std" not in col else 0
        return [row]

    def values(self, rows: Sequence[Row], cohort: str) -> list[tuple[str, str, float]]:
        out = []
        for row in rows:
            for region in self.regions(cohort):
                for m in METRICS:
                    out.append((region.upper(), m, float(row[f"{m}_{region}"])))
        return out

    def summary(self, rows: Sequence[Row], cohort: str) -> list[Row]:
        cols = self.columns(cohort)[1:]
        stats = {col: pandas_stats([float(r[col]) for r in rows]) for col in cols}
        return [{"subject_id": s, **{col: stats[col][s] for col in cols}} for s in ("mean", "std", "median")]
