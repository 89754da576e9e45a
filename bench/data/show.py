"""`bench data show`: one picture of a case (four modalities, segmentation, optional prediction)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from bench.data.formats import FORMATS, MODALITIES, to_brats
from bench.data.readers import UNLABELED_DIR, CaseFiles, detect_format, list_cases, load_nifti, read_case
from bench.data.writers import atomic_write_bytes
from bench.errors import DataError

__all__ = ["find_case", "tumour_slice", "show_case", "LABEL_COLOURS"]

# BraTS 2019 label -> (name, RGB); the usual red / green / yellow.
LABEL_COLOURS: dict[int, tuple[str, tuple[float, float, float]]] = {
    1: ("NCR/NET", (0.9, 0.1, 0.1)),
    2: ("ED", (0.1, 0.8, 0.2)),
    4: ("ET", (1.0, 0.9, 0.0)),
}
_TITLES = {"t1": "T1", "t1ce": "T1ce", "t2": "T2", "flair": "FLAIR"}


def find_case(root: Path | str, case_id: str, fmt: str | None = None) -> CaseFiles:
    """The files of ``case_id`` under ``root`` (its ``unlabeled/`` sub-folder included)."""
    root = Path(root)
    fmt = fmt or detect_format(root)
    cases = list_cases(root, fmt)
    if (root / UNLABELED_DIR).is_dir() and any((root / UNLABELED_DIR).iterdir()):
        cases += list_cases(root / UNLABELED_DIR)
    for cf in cases:
        if cf.case_id == case_id:
            return cf
    known = ", ".join(c.case_id for c in cases[:5]) + (", ..." if len(cases) > 5 else "")
    raise DataError(f"{root}: no case {case_id!r} (cases: {known or 'none'})")


def tumour_slice(label: np.ndarray | None, image: np.ndarray | None = None) -> int:
    """Axial index with the most tumour voxels; without tumour, the one with the most brain."""
    if label is not None and np.any(label):
        return int(np.argmax(np.count_nonzero(label, axis=(0, 1))))
    if image is not None:
        return int(np.argmax(np.count_nonzero(np.any(image != 0, axis=0), axis=(0, 1))))
    return 0


def _overlay(gray: np.ndarray, label: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    for lab, (_, colour) in LABEL_COLOURS.items():
        m = label == lab
        rgb[m] = (1 - alpha) * rgb[m] + alpha * np.asarray(colour)
    return rgb


def _window(img: np.ndarray) -> np.ndarray:
    vals = img[img != 0]
    if vals.size == 0:
        return np.zeros_like(img, dtype=np.float32)
    lo, hi = np.percentile(vals, [0.5, 99.5])
    return np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)


def show_case(
    root: Path | str,
    case_id: str,
    *,
    pred: Path | str | None = None,
    out: Path | str | None = None,
    fmt: str | None = None,
    z: int | None = None,
) -> Path:
    """Draw the case's four modalities and its segmentation (and ``pred``, a prediction file in the dataset's
    label convention) on one axial slice; write a PNG to ``out`` (default ``./<case_id>.png``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    cf = find_case(root, case_id, fmt)
    case = read_case(cf)
    pred_lab = None
    if pred is not None:
        pdata, _, _ = load_nifti(pred)
        if pdata.shape != case.shape:
            raise DataError(f"{pred}: prediction shape {pdata.shape} differs from the case's images {case.shape}")
        conv = FORMATS[case.format]
        pred_lab = to_brats(np.rint(pdata).astype(np.int64), conv)
        if np.any(pred_lab == 255):
            raise DataError(f"{pred}: label values outside the {conv.name} convention {list(conv.labels)}")
    z = tumour_slice(case.label if case.label is not None else pred_lab, case.image) if z is None else int(z)
    if not 0 <= z < case.shape[2]:
        raise DataError(f"slice {z} is outside the case's 0..{case.shape[2] - 1}")

    panels: list[tuple[str, np.ndarray, np.ndarray | None]] = [
        (_TITLES[m], _window(case.image[i, :, :, z]), None) for i, m in enumerate(MODALITIES)
    ]
    flair = panels[3][1]
    if case.label is not None:
        panels.append(("segmentation", flair, case.label[:, :, z]))
    if pred_lab is not None:
        panels.append(("prediction", flair, pred_lab[:, :, z]))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6), squeeze=False)
    for ax, (title, gray, lab) in zip(axes[0], panels):
        # array (x, y): x is the patient's right-to-left, y anterior-to-posterior -> radiological view
        shown = _overlay(gray, lab) if lab is not None else gray
        ax.imshow(np.swapaxes(shown, 0, 1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=11)
        ax.axis("off")
    fig.legend(
        handles=[Patch(color=c, label=f"{FORMATS[case.format].from_brats2019[lab]} {n}")  # file's numbering
                 for lab, (n, c) in LABEL_COLOURS.items()],
        loc="lower center", ncol=3, frameon=False, fontsize=9,
    )
    fig.suptitle(f"{case_id}  (axial slice {z} of {case.shape[2]}, {case.format})", fontsize=12)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    path = Path(out) if out is not None else Path.cwd() / f"{case_id}.png"
    atomic_write_bytes(path, buf.getvalue())
    return path
