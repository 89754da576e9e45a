"""Reading BraTS 2018-2021, BraTS 2023 and MSD Task01 datasets into the canonical form.

Layouts (see BRATS.md):

- ``brats2019`` (BraTS 2018-2021): one folder per case, ``<ID>/<ID>_{flair,t1,t1ce,t2,seg}.nii.gz``; folders
  may be nested (e.g. ``HGG/`` and ``LGG/``). IDs like ``BraTS19_2013_10_1``, ``Brats18_CBICA_AME_1``,
  ``BraTS20_Training_001``, ``BraTS2021_00000``. Labels {0,1,2,4}.
- ``brats2023``: ``BraTS-GLI-00000-000/BraTS-GLI-00000-000-{t1n,t1c,t2w,t2f,seg}.nii.gz``. Labels {0,1,2,3}.
- ``msd``: ``imagesTr/<ID>.nii.gz`` (4D, channels FLAIR, T1w, T1gd, T2w), ``labelsTr/<ID>.nii.gz``,
  ``imagesTs/`` (unlabeled), ``dataset.json``. Labels 1 edema, 2 non-enhancing, 3 enhancing.

A dataset folder may hold an ``unlabeled/`` sub-folder (MSD layout) with extra unlabeled cases; it is not part
of the dataset itself and is listed with ``list_cases(root / "unlabeled")``.
"""

from __future__ import annotations

import errno
import gzip
import io
import os
import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from bench.data.formats import FORMATS, MODALITIES, Case
from bench.errors import DataError

__all__ = [
    "CaseFiles", "DATASET_FORMATS", "detect_format", "list_cases", "read_case", "read_label", "load_nifti",
    "UNLABELED_DIR", "MSD_CHANNELS", "require_complete", "walk_tree",
]

DATASET_FORMATS: tuple[str, ...] = ("brats2019", "brats2023", "msd")
UNLABELED_DIR = "unlabeled"

_NII = r"\.nii(?:\.gz)?"
_RE_2019 = re.compile(rf"^(?P<id>.+)_(?P<role>flair|t1ce|t1|t2|seg|segm){_NII}$", re.IGNORECASE)
_RE_2023 = re.compile(rf"^(?P<id>.+)-(?P<role>t1n|t1c|t2w|t2f|seg){_NII}$", re.IGNORECASE)
_RE_NII = re.compile(rf"^(?P<id>.+?){_NII}$", re.IGNORECASE)
_ROLES = {
    "brats2019": {"flair": "flair", "t1": "t1", "t1ce": "t1ce", "t2": "t2", "seg": "seg", "segm": "seg"},
    "brats2023": {"t1n": "t1", "t1c": "t1ce", "t2w": "t2", "t2f": "flair", "seg": "seg"},
}
_SUFFIX = {
    "brats2019": {"t1": "_t1", "t1ce": "_t1ce", "t2": "_t2", "flair": "_flair", "seg": "_seg"},
    "brats2023": {"t1": "-t1n", "t1ce": "-t1c", "t2": "-t2w", "flair": "-t2f", "seg": "-seg"},
}
# MSD 4D channel order is FLAIR, T1w, T1gd, T2w; canonical order is T1, T1ce, T2, FLAIR.
MSD_CHANNELS: tuple[str, ...] = ("flair", "t1", "t1ce", "t2")
_MSD_TO_CANONICAL = [MSD_CHANNELS.index(m) for m in MODALITIES]


@dataclass(frozen=True)
class CaseFiles:
    """The files of one case as found on disk (nothing read yet).

    ``files`` maps a role to its path: "t1", "t1ce", "t2", "flair" for BraTS layouts, "image" (4D) for MSD.
    ``missing`` lists expected image roles that were not found; ``duplicates`` extra files for a role.
    """

    case_id: str
    format: str
    files: dict[str, Path]
    seg: Path | None
    folder: Path
    missing: tuple[str, ...] = ()
    duplicates: tuple[Path, ...] = ()
    expected: dict[str, Path] = field(default_factory=dict)  # role -> the path a missing file would have

    @property
    def labeled(self) -> bool:
        return self.seg is not None

    def all_files(self) -> list[Path]:
        """Every file of the case (images, then the segmentation)."""
        return [*self.files.values(), *([self.seg] if self.seg else [])]


def _is_nifti_name(name: str) -> bool:
    return not name.startswith(".") and (name.lower().endswith(".nii.gz") or name.lower().endswith(".nii"))


def _within(path: str, ancestor: str) -> bool:
    return path == ancestor or path.startswith(ancestor.rstrip(os.sep) + os.sep)


def walk_tree(root: Path, *, skip_unlabeled: bool = True, problems: list[tuple[Path, str]] | None = None):
    """Yield (folder, sub-folder names, file names) below ``root``, following symbolic links, skipping hidden folders and (with
    ``skip_unlabeled``) the top-level unlabeled/.

    Datasets built from symlinks (subsets, splits) are walked like real folders. A folder link that points at
    one of its own ancestors (a loop) is not entered, and a link whose target is missing or loops is left out
    of the file names; each is appended to ``problems`` as (link, message) when a list is given.
    """
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = os.path.realpath(dirpath)
        keep = []
        for d in sorted(dirnames):
            if d.startswith(".") or (skip_unlabeled and Path(dirpath) == root and d == UNLABELED_DIR):
                continue
            full = os.path.join(dirpath, d)
            if os.path.islink(full) and _within(here, os.path.realpath(full)):
                if problems is not None:
                    problems.append((Path(full), f"symbolic link loop: points to {os.path.realpath(full)}, "
                                                 "a folder that contains the link; not followed"))
                continue
            keep.append(d)
        dirnames[:] = keep
        names = []
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            if os.path.islink(full) and not os.path.exists(full):
                if problems is not None and not name.startswith("."):
                    problems.append((Path(full), _broken_link(full)))
                continue
            names.append(name)
        yield Path(dirpath), list(keep), names


def _broken_link(path: str) -> str:
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop (the link resolves to itself); point it at a case file or folder"
    return f"dangling symbolic link: its target {os.readlink(path)} does not exist"


def _walk(root: Path):
    for folder, _, names in walk_tree(root):
        yield folder, names


def detect_format(root: Path | str) -> str:
    """Which layout ``root`` holds: "brats2019" (BraTS 2018-2021), "brats2023" or "msd".

    Raises DataError when ``root`` is not a folder or holds no recognisable case.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (expected a BraTS or MSD dataset folder)")
    if any((root / d).is_dir() for d in ("imagesTr", "imagesTs", "labelsTr")) or (root / "dataset.json").is_file():
        return "msd"
    n19 = n23 = 0
    for _, names in _walk(root):
        for name in names:
            if not _is_nifti_name(name):
                continue
            if _RE_2023.match(name):
                n23 += 1
            elif _RE_2019.match(name):
                n19 += 1
        if n19 + n23 >= 50:
            break
    if n19 == n23 == 0:
        raise DataError(
            f"{root}: no BraTS or MSD cases found (expected <ID>/<ID>_t1.nii.gz ... for BraTS 2018-2021, "
            "<ID>/<ID>-t1n.nii.gz ... for BraTS 2023, or imagesTr/ + labelsTr/ for MSD Task01)"
        )
    return "brats2023" if n23 > n19 else "brats2019"


def _check_fmt(fmt: str) -> str:
    if fmt not in DATASET_FORMATS:
        raise DataError(f"unknown dataset format {fmt!r}; accepted: {', '.join(DATASET_FORMATS)}")
    return fmt


def list_cases(root: Path | str, fmt: str | None = None) -> list[CaseFiles]:
    """Every case under ``root``, sorted by case ID (unlabeled MSD ``imagesTs`` cases have ``seg=None``).

    The listing is lenient: a case with a missing modality or a duplicate file is still listed (see
    ``CaseFiles.missing`` / ``duplicates``) so ``bench data check`` can report it; ``read_case`` refuses it.
    """
    root = Path(root)
    fmt = _check_fmt(fmt) if fmt else detect_format(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    cases = _list_msd(root) if fmt == "msd" else _list_brats(root, fmt)
    return sorted(cases, key=lambda c: (c.case_id, str(c.folder)))


def _list_brats(root: Path, fmt: str) -> list[CaseFiles]:
    pattern = _RE_2023 if fmt == "brats2023" else _RE_2019
    roles = _ROLES[fmt]
    out = []
    for folder, names in _walk(root):
        groups: dict[str, dict[str, list[Path]]] = {}
        for name in names:
            if not _is_nifti_name(name):
                continue
            m = pattern.match(name)
            if m is None:
                continue
            role = roles[m.group("role").lower()]
            groups.setdefault(m.group("id"), {}).setdefault(role, []).append(folder / name)
        # A segmentation named differently from its case (BraTS 2020 case 355 ships "W39_1998.09.19_Segm.nii")
        # belongs to the folder's only case that has images but no segmentation.
        seg_only = [c for c, f in groups.items() if set(f) == {"seg"}]
        no_seg = [c for c, f in groups.items() if "seg" not in f]
        if len(seg_only) == 1 and len(no_seg) == 1:
            groups[no_seg[0]]["seg"] = groups.pop(seg_only[0])["seg"]
        for cid, found in groups.items():
            files = {r: found[r][0] for r in MODALITIES if r in found}
            seg = found["seg"][0] if "seg" in found else None
            dups = tuple(p for paths in found.values() for p in paths[1:])
            missing = tuple(r for r in MODALITIES if r not in found)
            expected = {r: folder / f"{cid}{_SUFFIX[fmt][r]}.nii.gz" for r in missing}
            out.append(CaseFiles(cid, fmt, files, seg, folder, missing, dups, expected))
    return out


def _nifti_stems(folder: Path) -> dict[str, list[Path]]:
    stems: dict[str, list[Path]] = {}
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            if p.is_file() and _is_nifti_name(p.name):
                m = _RE_NII.match(p.name)
                assert m is not None
                stems.setdefault(m.group("id"), []).append(p)
    return stems


def _list_msd(root: Path) -> list[CaseFiles]:
    images = _nifti_stems(root / "imagesTr")
    labels = _nifti_stems(root / "labelsTr")
    tests = _nifti_stems(root / "imagesTs")
    out = []
    for cid in sorted(set(images) | set(labels)):
        imgs, labs = images.get(cid, []), labels.get(cid, [])
        files = {"image": imgs[0]} if imgs else {}
        missing = () if imgs else ("image",)
        expected = {} if imgs else {"image": root / "imagesTr" / f"{cid}.nii.gz"}
        dups = tuple(imgs[1:] + labs[1:])
        out.append(CaseFiles(cid, "msd", files, labs[0] if labs else None, root, missing, dups, expected))
    for cid, imgs in tests.items():
        out.append(CaseFiles(cid, "msd", {"image": imgs[0]}, None, root, (), tuple(imgs[1:])))
    return out


# ---------------------------------------------------------------------------------------------------------
# loading


def _header_version(head: bytes) -> int | None:
    """1 or 2 when ``head`` starts with a NIfTI-1 / NIfTI-2 header, else None."""
    if len(head) >= 348:
        for order in "<>":
            size = struct.unpack(order + "i", head[:4])[0]
            if size == 348 and head[344:347] in (b"n+1", b"ni1"):
                return 1
            if size == 540 and head[4:7] in (b"n+2", b"ni2"):
                return 2
    return None


_NOT_GZIP = "is not a gzip-compressed NIfTI file (no gzip signature); expected a .nii.gz NIfTI image"
_NOT_NIFTI = "is not a NIfTI file (no NIfTI-1/2 header); expected a NIfTI image (.nii or .nii.gz)"


def load_nifti(path: Path | str, *, ndim: int = 3) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Read one NIfTI file: (data in its stored dtype, affine, voxel sizes). ``ndim`` is the expected number
    of dimensions (a trailing axis of length 1 is dropped). Raises DataError naming the file.

    A .nii.gz file is decompressed whole, so a truncated or corrupt stream (bad CRC included) is caught
    even where the damage lies beyond the voxel data. The returned array may be a read-only view.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    if path.name.lower().endswith(".gz"):
        if raw[:2] != b"\x1f\x8b":
            raise DataError(f"{path}: {_NOT_GZIP}")
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: is a truncated or corrupt .nii.gz file ({exc})") from exc
    version = _header_version(raw[:352])
    if version is None:
        raise DataError(f"{path}: {_NOT_NIFTI}")
    try:
        # parse the header with nibabel, then view the voxels in place (no copy of the decompressed bytes)
        hdr_cls = nib.Nifti1Header if version == 1 else nib.Nifti2Header
        hdr = hdr_cls.from_fileobj(io.BytesIO(raw[: 348 if version == 1 else 540]), check=False)
        shape = tuple(int(v) for v in hdr.get_data_shape())
        dtype = hdr.get_data_dtype()
        offset = int(hdr.get_data_offset())
        count = int(np.prod(shape))
        if len(raw) < offset + count * dtype.itemsize:
            raise ValueError(f"{len(raw) - offset} bytes of voxel data, {count * dtype.itemsize} expected")
        data = np.frombuffer(raw, dtype=dtype, count=count, offset=offset).reshape(shape, order="F")
        slope, inter = hdr.get_slope_inter()
        if slope is not None and (slope != 1 or (inter or 0) != 0):
            data = data * np.float32(slope) + np.float32(inter or 0)
        affine = np.asarray(hdr.get_best_affine(), dtype=np.float64)
        zooms = tuple(float(z) for z in hdr.get_zooms()[:3])
    except Exception as exc:  # nibabel raises many kinds (HeaderDataError, ValueError, ...)
        raise DataError(f"{path}: is a truncated or corrupt NIfTI file ({exc})") from exc
    while data.ndim > ndim and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != ndim:
        what = "3D image (X, Y, Z)" if ndim == 3 else "4D image (X, Y, Z, 4)"
        raise DataError(f"{path}: is {data.ndim}D with shape {tuple(data.shape)}; expected a {what}")
    return data, affine, zooms


def require_complete(cf: CaseFiles) -> None:
    """Raise DataError when the case lacks an image file or has two files for one role."""
    if cf.missing:
        role = cf.missing[0]
        raise DataError(
            f"{cf.expected.get(role, cf.folder)}: case {cf.case_id} is missing its {role} "
            f"{'image' if role == 'image' else 'modality'} (found: {', '.join(sorted(cf.files)) or 'nothing'})"
        )
    if cf.duplicates:
        raise DataError(f"{cf.duplicates[0]}: a second file for the same role of case {cf.case_id}")


def _same_geometry(path: Path, shape, affine, ref_path: Path, ref_shape, ref_affine, what: str) -> None:
    if tuple(shape) != tuple(ref_shape):
        raise DataError(f"{path}: {what} shape {tuple(shape)} differs from {ref_path.name} {tuple(ref_shape)}")
    if not np.allclose(affine, ref_affine, atol=1e-3):
        raise DataError(f"{path}: {what} affine differs from the affine of {ref_path.name}")


def _read_images(cf: CaseFiles) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float], Path]:
    """(float32 (4, X, Y, Z) canonical image, affine, spacing, reference file)."""
    require_complete(cf)
    if cf.format == "msd":
        path = cf.files["image"]
        data, affine, zooms = load_nifti(path, ndim=4)
        if data.shape[3] != 4:
            raise DataError(
                f"{path}: 4D image has {data.shape[3]} channels; expected 4 (FLAIR, T1w, T1gd, T2w)"
            )
        image = np.empty((4, *data.shape[:3]), np.float32)
        for i, ch in enumerate(_MSD_TO_CANONICAL):
            image[i] = data[..., ch]
        return image, affine, zooms[:3], path  # type: ignore[return-value]
    ref = cf.files[MODALITIES[0]]
    data, affine, zooms = load_nifti(ref)
    image = np.empty((4, *data.shape), np.float32)
    image[0] = data
    for i, role in enumerate(MODALITIES[1:], start=1):
        path = cf.files[role]
        data, aff, _ = load_nifti(path)
        _same_geometry(path, data.shape, aff, ref, image.shape[1:], affine, "image")
        image[i] = data
    return image, affine, zooms, ref  # type: ignore[return-value]


def label_values(raw: np.ndarray) -> np.ndarray:
    """Sorted distinct values of an integer label map (a histogram when they fit in 0..255: no sort)."""
    lo, hi = int(raw.min()), int(raw.max())
    if 0 <= lo and hi <= 255:
        counts = np.bincount(raw.reshape(-1).astype(np.uint8, copy=False), minlength=256)
        return np.flatnonzero(counts)
    return np.unique(raw)


def labels_to_brats(path: Path, raw: np.ndarray, fmt: str, *, what: str = "label map", hint: str = "") -> np.ndarray:
    """Check that ``raw`` holds integer labels of ``fmt``'s convention and return them as BraTS 2019 labels.

    ``what`` names the array in messages ("label map", "prediction"); ``hint`` is appended to the message
    about values outside the convention. Raises :class:`DataError` naming ``path``.
    """
    conv = FORMATS[fmt]
    if raw.dtype.kind == "f":
        if not np.all(np.isfinite(raw)):
            raise DataError(f"{path}: {what} has NaN or Inf voxels; expected labels {list(conv.labels)}")
        rounded = np.rint(raw)
        if not np.array_equal(rounded, raw):
            raise DataError(f"{path}: {what} has non-integer values; expected labels {list(conv.labels)}")
        raw = rounded.astype(np.int64)
    elif raw.dtype.kind not in "biu":
        raise DataError(f"{path}: {what} has data type {raw.dtype}; expected integer labels")
    bad = np.setdiff1d(label_values(raw), conv.labels)
    if bad.size:
        raise DataError(
            f"{path}: label values {bad.tolist()} are outside the {conv.name} convention {list(conv.labels)}{hint}"
        )
    lut = np.zeros(256, np.uint8)
    for k, v in conv.to_brats2019.items():
        lut[k] = v
    return lut[raw.astype(np.uint8, copy=False)]  # values checked to be in 0..255 above


def read_label(case_files: CaseFiles) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """The case's segmentation as (uint8 BraTS-2019 labels (X, Y, Z), affine, spacing).

    Raises DataError when the case has no segmentation or the file is unreadable or holds foreign labels.
    """
    cf = case_files
    if cf.seg is None:
        raise DataError(f"{cf.folder}: case {cf.case_id} has no segmentation file")
    raw, affine, zooms = load_nifti(cf.seg)
    return labels_to_brats(cf.seg, raw, cf.format), affine, zooms  # type: ignore[return-value]


def read_case(case_files: CaseFiles) -> Case:
    """Read a case into the canonical form: float32 (4, X, Y, Z) image in order T1, T1ce, T2, FLAIR, and
    a uint8 BraTS-2019 label map (None when unlabeled). Raises DataError naming the offending file."""
    cf = case_files
    image, affine, spacing, ref = _read_images(cf)
    label = None
    if cf.seg is not None:
        label, laff, _ = read_label(cf)
        _same_geometry(cf.seg, label.shape, laff, ref, image.shape[1:], affine, "label map")
    files = dict(cf.files)
    if cf.seg is not None:
        files["seg"] = cf.seg
    return Case(cf.case_id, image, label, affine, tuple(spacing), cf.format, files)  # type: ignore[arg-type]
