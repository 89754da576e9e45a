"""`bench data check`: read every case of a dataset folder and report every problem, not only the first.

Checked: missing modality; modalities of different shapes or affines; truncated or corrupt .nii.gz; files that
are not NIfTI; 4D images where 3D is expected and MSD 4D images without 4 channels; NaN or Inf voxels;
all-zero modalities; label values outside the dataset's convention; label maps whose shape (or affine)
differs from the images; empty folders; duplicate case IDs; symbolic-link loops and dangling links
(links are followed otherwise). Nothing in the input is modified (files are only
opened for reading).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.data.formats import FORMATS, MODALITIES
from bench.data.readers import (
    MSD_CHANNELS,
    UNLABELED_DIR,
    CaseFiles,
    detect_format,
    list_cases,
    load_nifti,
    walk_tree,
)
from bench.errors import DataError

__all__ = ["Problem", "CheckSummary", "CheckReport", "check_dataset"]

_LABEL_NAMES = {1: "NCR/NET", 2: "ED", 4: "ET"}


@dataclass(frozen=True)
class Problem:
    """One problem: the file (or folder) concerned and what is wrong with it."""

    file: Path
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"


@dataclass
class CheckSummary:
    """What was found: counts, geometry and labels (BraTS 2019 numbering) over readable cases."""

    root: Path
    format: str | None
    n_cases: int = 0
    n_labeled: int = 0
    n_unlabeled: int = 0
    shapes: Counter = field(default_factory=Counter)
    spacings: Counter = field(default_factory=Counter)
    image_dtypes: Counter = field(default_factory=Counter)
    label_dtypes: Counter = field(default_factory=Counter)
    label_voxels: Counter = field(default_factory=Counter)  # BraTS label -> voxels over all cases
    label_cases: Counter = field(default_factory=Counter)  # BraTS label -> cases containing it
    no_et_cases: list[str] = field(default_factory=list)


@dataclass
class CheckReport:
    summary: CheckSummary
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not self.problems

    def format_summary(self) -> str:
        s = self.summary
        fmt = lambda c: ", ".join(f"{k} ({v})" for k, v in sorted(c.items(), key=lambda kv: -kv[1])) or "-"  # noqa: E731
        lines = [
            f"dataset: {s.root} ({s.format or 'unknown layout'})",
            f"cases: {s.n_cases} ({s.n_labeled} labeled, {s.n_unlabeled} unlabeled)",
            f"shapes: {fmt(Counter({'x'.join(map(str, k)): v for k, v in s.shapes.items()}))}",
            f"spacings (mm): {fmt(Counter({'x'.join(f'{z:g}' for z in k): v for k, v in s.spacings.items()}))}",
            f"image dtypes: {fmt(s.image_dtypes)}; label dtypes: {fmt(s.label_dtypes)}",
            "labels (BraTS 2019 numbering, voxels in cases): " + "; ".join(
                f"{lab} {name}: {s.label_voxels[lab]} in {s.label_cases[lab]}" for lab, name in _LABEL_NAMES.items()
            ),
            f"cases with no ET: {len(s.no_et_cases)}"
            + (f" ({', '.join(s.no_et_cases[:10])}{', ...' if len(s.no_et_cases) > 10 else ''})"
               if s.no_et_cases else ""),
        ]
        return "\n".join(lines)


def _strip(path: Path, exc: Exception) -> str:
    msg = str(exc)
    prefix = f"{path}: "
    return msg[len(prefix):] if msg.startswith(prefix) else msg


def _empty_dirs(root: Path, links: list[tuple[Path, str]]) -> list[Path]:
    out = []
    for folder, subdirs, names in walk_tree(root, skip_unlabeled=False, problems=links):
        if not subdirs and not [f for f in names if not f.startswith(".")]:
            out.append(folder)
    return out


class _Checker:
    def __init__(self, root: Path, fmt: str | None):
        self.summary = CheckSummary(root=root, format=fmt)
        self.problems: list[Problem] = []

    def add(self, path: Path, message: str) -> None:
        self.problems.append(Problem(path, message))

    def _load(self, path: Path, ndim: int):
        try:
            return load_nifti(path, ndim=ndim)
        except DataError as exc:
            self.add(path, _strip(path, exc))
            return None

    def _image_values(self, path: Path, data: np.ndarray, what: str) -> None:
        if data.dtype.kind == "f":
            bad = int(np.count_nonzero(~np.isfinite(data)))
            if bad:
                self.add(path, f"{what} has {bad} NaN or Inf voxels")
        if not np.any(data):
            self.add(path, f"{what} is all zero")

    def case(self, cf: CaseFiles) -> None:
        s = self.summary
        for role in cf.missing:
            where = cf.expected.get(role, cf.folder)
            self.add(where, f"case {cf.case_id} is missing its {role} {'image' if role == 'image' else 'modality'}")
        for dup in cf.duplicates:
            self.add(dup, f"a second file for the same role of case {cf.case_id}")
        ref = None  # (path, shape, affine)
        if cf.format == "msd":
            if "image" in cf.files:
                path = cf.files["image"]
                got = self._load(path, 4)
                if got is not None:
                    data, affine, zooms = got
                    if data.shape[3] != 4:
                        self.add(path, f"4D image has {data.shape[3]} channels; expected 4 "
                                       "(FLAIR, T1w, T1gd, T2w)")
                    else:
                        for ch, name in enumerate(MSD_CHANNELS):
                            self._image_values(path, data[..., ch], f"channel {ch} ({name})")
                    ref = (path, data.shape[:3], affine)
                    s.image_dtypes[str(data.dtype)] += 1
                    s.spacings[tuple(round(z, 4) for z in zooms)] += 1
        else:
            for role in MODALITIES:
                if role not in cf.files:
                    continue
                path = cf.files[role]
                got = self._load(path, 3)
                if got is None:
                    continue
                data, affine, zooms = got
                self._image_values(path, data, f"{role} image")
                s.image_dtypes[str(data.dtype)] += 1
                if ref is None:
                    ref = (path, data.shape, affine)
                    s.spacings[tuple(round(z, 4) for z in zooms)] += 1
                else:
                    if data.shape != ref[1]:
                        self.add(path, f"{role} image shape {data.shape} differs from {ref[0].name} {ref[1]}")
                    elif not np.allclose(affine, ref[2], atol=1e-3):
                        self.add(path, f"{role} image affine differs from the affine of {ref[0].name}")
        if ref is not None:
            s.shapes[tuple(int(v) for v in ref[1])] += 1
        if cf.seg is not None:
            self._label(cf, ref)
        elif cf.format == "msd" and "image" in cf.files and cf.files["image"].parent.name == "imagesTr":
            self.add(cf.files["image"], f"training case {cf.case_id} has no label map in labelsTr/")

    def _label(self, cf: CaseFiles, ref) -> None:
        s = self.summary
        path = cf.seg
        assert path is not None
        got = self._load(path, 3)
        if got is None:
            return
        data, affine, _ = got
        s.label_dtypes[str(data.dtype)] += 1
        conv = FORMATS[cf.format]
        if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
            self.add(path, "label map has NaN or Inf voxels")
            return
        values, counts = np.unique(data, return_counts=True)
        bad = [v for v in values.tolist() if v not in conv.labels]
        if bad:
            shown = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in bad[:10])
            self.add(path, f"label values [{shown}] are outside the {conv.name} convention {list(conv.labels)}")
        if ref is not None:
            if data.shape != tuple(ref[1]):
                self.add(path, f"label map shape {data.shape} differs from the images {tuple(ref[1])}")
            elif not np.allclose(affine, ref[2], atol=1e-3):
                self.add(path, f"label map affine differs from the affine of {ref[0].name}")
        if not bad:
            found = {conv.to_brats2019[int(v)]: int(c) for v, c in zip(values.tolist(), counts.tolist())}
            for lab in _LABEL_NAMES:
                if found.get(lab):
                    s.label_voxels[lab] += found[lab]
                    s.label_cases[lab] += 1
            if not found.get(4):
                s.no_et_cases.append(cf.case_id)


def check_dataset(root: Path | str, fmt: str | None = None, *, progress: bool = False) -> CheckReport:
    """Check every case under ``root`` (and its ``unlabeled/`` sub-folder); never modifies anything."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (expected a BraTS or MSD dataset folder)")
    checker = _Checker(root, fmt)
    s = checker.summary
    if not any(p for p in root.iterdir() if not p.name.startswith(".")):
        checker.add(root, "empty folder: no cases found")
        return CheckReport(s, checker.problems)
    links: list[tuple[Path, str]] = []
    for d in _empty_dirs(root, links):
        if d != root:
            checker.add(d, "empty folder (expected the files of a case)")
    for link, message in links:
        checker.add(link, message)
    parts: list[tuple[Path, str | None]] = [(root, fmt)]
    udir = root / UNLABELED_DIR
    if udir.is_dir() and any(udir.iterdir()):
        parts.append((udir, None))
    cases: list[CaseFiles] = []
    for i, (folder, f) in enumerate(parts):
        try:
            f = f or detect_format(folder)
            cases += list_cases(folder, f)
        except DataError as exc:
            checker.add(folder, _strip(folder, exc))
            continue
        if i == 0:
            s.format = f
    seen: dict[str, CaseFiles] = {}
    for cf in cases:
        first = seen.setdefault(cf.case_id, cf)
        if first is not cf:
            where = cf.files.get("image") or cf.folder
            checker.add(where, f"duplicate case ID {cf.case_id} (also in {first.files.get('image') or first.folder})")
    bar = None
    if progress and cases:
        from bench.bars import progress_bar

        bar = progress_bar(total=len(cases), desc=f"checking {root.name}", unit="case")
    try:
        for cf in cases:
            s.n_cases += 1
            if cf.seg is not None:
                s.n_labeled += 1
            else:
                s.n_unlabeled += 1
            checker.case(cf)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    if not cases and not checker.problems:
        checker.add(root, "no cases found")
    return CheckReport(s, checker.problems)
