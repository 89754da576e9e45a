"""Writing NIfTI files: predictions in the source geometry and label convention, and raw volumes.

Every write is atomic (a temporary file in the target folder, then ``os.replace``) and deterministic: the
gzip header carries no time stamp, so the same array gives the same bytes.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from bench.atomic import atomic_write_bytes
from bench.data.formats import BRATS2019, FORMATS, from_brats

__all__ = ["write_prediction", "write_nifti", "atomic_write_bytes"]


def _header_bytes(array: np.ndarray, affine: np.ndarray) -> bytes:
    """NIfTI-1 single-file header, the empty extension flag and padding up to vox_offset (352)."""
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(array.dtype)
    hdr.set_data_shape(array.shape)
    hdr.set_xyzt_units("mm", "sec")
    aff = np.asarray(affine, dtype=np.float64)
    hdr.set_qform(aff, code=1)
    hdr.set_sform(aff, code=1)
    hdr["vox_offset"] = 352
    hdr["scl_slope"] = 1.0
    hdr["scl_inter"] = 0.0
    block = hdr.binaryblock + b"\x00\x00\x00\x00"
    return block


def nifti_bytes(array: np.ndarray, affine: np.ndarray, *, compresslevel: int | None = 1) -> bytes:
    """The bytes of a single-file NIfTI-1 image (gzip-compressed unless ``compresslevel`` is None).

    The data are written in one piece (Fortran order, as NIfTI stores voxels); compression uses zlib's
    run-length strategy, which is faster than the default at level 1 and smaller on images with a zero
    background. No time stamp goes into the gzip header, so equal arrays give equal bytes.
    """
    arr = np.asarray(array)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    head = _header_bytes(arr, affine)
    data = arr.tobytes(order="F")
    if compresslevel is None:
        return head + data
    z = zlib.compressobj(compresslevel, zlib.DEFLATED, 31, 9, zlib.Z_RLE)  # wbits 31: gzip wrapper, mtime 0
    return z.compress(head) + z.compress(data) + z.flush()


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray, *, compresslevel: int = 1) -> Path:
    """Write ``array`` (dtype kept) with ``affine`` to ``path`` (.nii.gz compressed, .nii plain), atomically."""
    path = Path(path)
    level = None if path.name.endswith(".nii") else compresslevel
    atomic_write_bytes(path, nifti_bytes(array, affine, compresslevel=level))
    return path


def write_prediction(
    labels_brats: np.ndarray, case_id: str, affine: np.ndarray, out_dir: Path, fmt: str = "brats2019"
) -> Path:
    """Write a prediction as ``<out_dir>/<case_id>.nii.gz`` (BraTS submission naming).

    ``labels_brats`` is a uint8 (X, Y, Z) map in BraTS 2019 labels {0, 1, 2, 4} on the source grid;
    it is written as uint8 in the label convention of ``fmt`` ("brats2019", "brats2023" or "msd") with the
    source ``affine``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; accepted: {', '.join(FORMATS)}")
    labels = np.asarray(labels_brats)
    if labels.ndim != 3:
        raise ValueError(f"prediction for {case_id} must be 3D (X, Y, Z), got shape {labels.shape}")
    bad = np.setdiff1d(np.unique(labels), BRATS2019.labels)
    if bad.size:
        raise ValueError(f"prediction for {case_id} has labels {bad.tolist()} outside BraTS 2019 {{0,1,2,4}}")
    out = from_brats(labels, FORMATS[fmt]).astype(np.uint8)
    return write_nifti(Path(out_dir) / f"{case_id}.nii.gz", out, affine)
