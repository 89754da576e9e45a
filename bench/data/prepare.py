"""The prepared dataset: cropped, normalised, optionally resampled cases in a memory-mapped cache, plus splits.

``prepare(source)`` reads every case once, crops it to the bounding box of the brain (voxels non-zero in any
modality, united with the tumour's box so no label is ever cut), normalises each modality (min-max to [0, 1]
inside the crop, the paper's choice, or z-score inside the brain), optionally resamples to a coarser working
grid (images trilinear, labels nearest), and stores uncompressed ``.npy`` files opened with
``np.load(mmap_mode="r")``.

Cache folder: ``<cache_root>/<fingerprint>/``. The fingerprint hashes the source files (path relative to the
source folder, size and ``st_mtime_ns`` of every file), the preprocessing parameters, the split parameters
and ``PREPROCESS_VERSION``; change any of them and a new folder is built. Building happens in a temporary
folder renamed into place at the end, so a crash never leaves a half-written cache.

Layout of a prepared folder::

    dataset.json               format, parameters, per-case metadata (CaseMeta) and source files
    splits.json                k folds (validation IDs per fold; training IDs too for a fixed split), the
                               held-out test IDs and how they were made (see bench.data.splits)
    images/<ID>.npy            float32 (4, x, y, z), channels T1, T1ce, T2, FLAIR, on the working grid
    labels/<ID>.npy            uint8 (x, y, z) class indices 0..3 on the working grid (labeled cases)
    source_labels/<ID>.npy     uint8 BraTS-2019 labels on the source grid, cropped to the bbox

An engine that reads the source files itself (nnU-Net) needs the case list, the splits, the metadata and the
source-grid labels but no working-grid arrays: ``prepare(..., arrays=False)`` writes that index alone (no
``images/`` or ``labels/``: a few MB a case instead of tens) into ``<cache_root>/<fingerprint>.index/``. Its
fingerprint is the full cache's, so keys made from it do not depend on which of the two was built; a full
cache of the same data, where there is one, serves instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bench.data.formats import CLASS_LABELS
from bench.data.grid import classes_to_source_labels, probs_to_source_labels, resample, to_source_grid
from bench.data.preprocess import (
    NORMALIZATIONS,
    PREPROCESS_VERSION,
    CaseMeta,
    PreparedCase,
    brain_bbox,
    preprocess_case,
    preprocessing_record,
)
from bench.data.readers import (
    UNLABELED_DIR,
    CaseFiles,
    detect_format,
    list_cases,
    read_case,
    require_complete,
)
from bench.data.splits import (
    CLI_OPTIONS,
    SplitOptions,
    fixed_splits,
    make_splits,
    max_folds,
    read_id_list,
    read_splits_file,
)
from bench.errors import DataError, SpecError

__all__ = [
    "PREPROCESS_VERSION", "NORMALIZATIONS", "DEFAULT_CACHE_ROOT", "CaseMeta", "PreparedCase", "PreparedDataset",
    "prepare", "fingerprint_sources", "make_splits", "max_folds", "brain_bbox", "preprocess_case", "resample",
    "to_source_grid", "probs_to_source_labels", "classes_to_source_labels", "preprocessing_record",
]

DEFAULT_CACHE_ROOT = Path(".bench") / "cache"
INDEX_SUFFIX = ".index"  # folder suffix of a cache prepared without arrays

# ---------------------------------------------------------------------------------------------------------
# splits and fingerprint


def fingerprint_sources(source: Path, files: Sequence[Path], params: dict) -> str:
    """Hash of the source files (relative path, size, st_mtime_ns), ``params`` and PREPROCESS_VERSION."""
    h = hashlib.sha256()
    h.update(json.dumps({"version": PREPROCESS_VERSION, "params": params}, sort_keys=True).encode())
    for p in sorted(files):
        st = p.stat()
        try:
            rel = p.relative_to(source).as_posix()
        except ValueError:
            rel = p.as_posix()
        h.update(f"\n{rel}\t{st.st_size}\t{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------------
# the prepared dataset


class PreparedDataset:
    """A prepared cache folder: case IDs, splits, memory-mapped arrays and per-case metadata."""

    def __init__(self, root: Path, info: dict, splits: dict):
        self.root = Path(root)
        self._info = info
        self._splits = splits
        self._metas = {cid: CaseMeta.from_json(c["meta"]) for cid, c in info["cases"].items()}

    @classmethod
    def open(cls, root: Path | str) -> PreparedDataset:
        """Open an existing prepared folder (raises DataError when it is missing or incomplete)."""
        root = Path(root)
        try:
            info = json.loads((root / "dataset.json").read_text())
            splits = json.loads((root / "splits.json").read_text())
        except FileNotFoundError as exc:
            raise DataError(f"{root}: not a prepared dataset (missing {Path(exc.filename).name})") from exc
        except json.JSONDecodeError as exc:
            raise DataError(f"{root}: corrupt prepared dataset metadata ({exc})") from exc
        if info.get("version") != PREPROCESS_VERSION:
            raise DataError(
                f"{root}: prepared with preprocessing version {info.get('version')}, this bench uses "
                f"{PREPROCESS_VERSION}; run `bench data prepare` again"
            )
        return cls(root, info, splits)

    # --- identity
    @property
    def fingerprint(self) -> str:
        return str(self._info["fingerprint"])

    @property
    def source(self) -> Path:
        return Path(self._info["source"])

    @property
    def format(self) -> str:
        return str(self._info["format"])

    @property
    def preprocessing(self) -> dict:
        """The preprocessing record of this cache (see :func:`bench.data.preprocess.preprocessing_record`)."""
        p = self._info["params"]
        return preprocessing_record(p.get("spacing"), p.get("normalization", "minmax"), self._info["version"])

    @property
    def params(self) -> dict:
        """Preprocessing and split parameters ({"spacing", "normalization", "folds", "test_fraction", ...})."""
        return dict(self._info["params"])

    @property
    def case_ids(self) -> list[str]:
        """Labeled case IDs, sorted."""
        return list(self._info["case_ids"])

    @property
    def unlabeled_ids(self) -> list[str]:
        """Unlabeled case IDs (MSD imagesTs, the unlabeled/ sub-folder, cases without segmentation)."""
        return list(self._info["unlabeled_ids"])

    # --- splits
    @property
    def n_folds(self) -> int:
        return int(self._splits["n_folds"])

    def _fold(self, fold: int) -> int:
        if not 0 <= fold < self.n_folds:
            raise SpecError(f"fold {fold} does not exist: {self.root} has folds 0..{self.n_folds - 1}")
        return fold

    def val_ids(self, fold: int) -> list[str]:
        """Validation cases of ``fold`` (empty when n_folds is 1)."""
        return list(self._splits["val"][self._fold(fold)])

    def train_ids(self, fold: int) -> list[str]:
        """Training cases of ``fold``: the fold's training list of a fixed split, else every labeled case
        outside the test split, the fold's validation and the cases a fixed split left unassigned."""
        if "train" in self._splits:
            return list(self._splits["train"][self._fold(fold)])
        drop = set(self.val_ids(fold)) | set(self._splits["test"]) | set(self._splits.get("unassigned", []))
        return [c for c in self.case_ids if c not in drop]

    def unassigned_ids(self) -> list[str]:
        """Labeled cases a fixed split put in no fold and not in the test set (not used)."""
        return list(self._splits.get("unassigned", []))

    @property
    def split_source(self) -> str:
        """How the split was made: "drawn", "test_ids", "nnunet" or "bench"."""
        return str(self._splits.get("source", "drawn"))

    def test_ids(self) -> list[str]:
        """The held-out test cases (never used for training or validation)."""
        return list(self._splits["test"])

    # --- cases
    def _entry(self, case_id: str) -> dict:
        try:
            return self._info["cases"][case_id]
        except KeyError:
            raise DataError(f"{self.root}: no case {case_id!r} in this prepared dataset") from None

    def meta(self, case_id: str) -> CaseMeta:
        self._entry(case_id)
        return self._metas[case_id]

    def has_label(self, case_id: str) -> bool:
        return bool(self._entry(case_id)["labeled"])

    def has_et(self, case_id: str) -> bool:
        return bool(self._entry(case_id).get("has_et", False))

    @property
    def has_arrays(self) -> bool:
        """False for an index prepared with ``arrays=False`` (no working-grid images or labels)."""
        return bool(self._info.get("arrays", True))

    def load(self, case_id: str, *, mmap: bool = True) -> PreparedCase:
        """The prepared case; arrays are memory-mapped read-only unless ``mmap=False``."""
        entry = self._entry(case_id)
        if not self.has_arrays:
            raise DataError(f"{self.root}: an index without image arrays (prepared for an engine that reads the "
                            "source files); bench's own engine needs the full cache (`bench data prepare`)")
        mode: Literal["r"] | None = "r" if mmap else None
        image = np.load(self.root / "images" / f"{case_id}.npy", mmap_mode=mode)
        label = np.load(self.root / "labels" / f"{case_id}.npy", mmap_mode=mode) if entry["labeled"] else None
        return PreparedCase(case_id, image, label, self._metas[case_id])

    def source_label(self, case_id: str) -> np.ndarray:
        """uint8 BraTS-2019 labels on the case's source grid (for evaluation)."""
        entry = self._entry(case_id)
        if not entry["labeled"]:
            raise DataError(f"{self.root}: case {case_id!r} is unlabeled")
        meta = self._metas[case_id]
        out = np.zeros(meta.source_shape, np.uint8)
        out[meta.crop_slices] = np.load(self.root / "source_labels" / f"{case_id}.npy")
        return out

    def case_files(self, case_id: str) -> CaseFiles:
        """The source files of the case (to write predictions next to them or re-read the originals)."""
        e = self._entry(case_id)["files"]
        return CaseFiles(
            case_id, e["format"], {k: Path(v) for k, v in e["files"].items()},
            Path(e["seg"]) if e["seg"] else None, Path(e["folder"]),
        )

    def label_counts(self, case_id: str) -> dict[int, int]:
        """Voxels per BraTS label on the source grid."""
        return {int(k): int(v) for k, v in self._entry(case_id).get("label_counts", {}).items()}

    def __repr__(self) -> str:
        return (
            f"PreparedDataset({self.root}, {len(self.case_ids)} labeled + {len(self.unlabeled_ids)} unlabeled, "
            f"{self.n_folds} folds, {len(self.test_ids())} test)"
        )


def _prepare_one(job: tuple[CaseFiles, Path, float | None, str, bool]) -> tuple[str, dict]:
    """Read, preprocess and save one case into the build folder; returns (case ID, its dataset.json entry).
    Without ``arrays`` (the last item of ``job``) only the source-grid label is saved."""
    cf, tmp, spacing, normalization, arrays = job
    case = read_case(cf)
    image, label, meta, src_crop = preprocess_case(case, spacing=spacing, normalization=normalization)
    if arrays:
        np.save(tmp / "images" / f"{cf.case_id}.npy", np.ascontiguousarray(image))
    entry: dict = {"labeled": label is not None, "meta": meta.to_json(), "files": {
        "format": cf.format, "files": {k: str(v) for k, v in cf.files.items()},
        "seg": str(cf.seg) if cf.seg else None, "folder": str(cf.folder)}}
    if label is not None and src_crop is not None:
        if arrays:
            np.save(tmp / "labels" / f"{cf.case_id}.npy", np.ascontiguousarray(label))
        np.save(tmp / "source_labels" / f"{cf.case_id}.npy", src_crop)
        counts = np.bincount(src_crop.ravel(), minlength=5)
        entry["label_counts"] = {str(k): int(counts[k]) for k in CLASS_LABELS[1:]}
        entry["has_et"] = bool(counts[4] > 0)
    return cf.case_id, entry


def _fit(folds: int, n_cases: int, test_fraction: float, lower: bool) -> int:
    return max(1, min(folds, max_folds(n_cases, test_fraction))) if lower and n_cases else folds


def _fixed_split_inputs(
    test_ids: Sequence[str] | str | Path | None, splits: str | Path | None, names: tuple[str, str]
) -> dict | None:
    """{"test": IDs or None, "folds": read_splits_file(...) or None}, or None when the split is drawn."""
    if test_ids is None and splits is None:
        return None
    tests: list[str] | None = None
    if isinstance(test_ids, (str, Path)):
        tests = read_id_list(test_ids, what=names[0])
    elif test_ids is not None:
        tests = [str(t) for t in test_ids]
    folds = read_splits_file(splits, what=names[1]) if splits is not None else None
    # order within a list does not change the split, so it does not change the fingerprint
    return {"test": sorted(tests) if tests is not None else None, "folds": folds}


def _collect(source: Path, fmt: str | None) -> tuple[str, list[CaseFiles], list[CaseFiles]]:
    fmt = fmt or detect_format(source)
    cases = list_cases(source, fmt)
    udir = source / UNLABELED_DIR
    extra = list_cases(udir) if udir.is_dir() and any(udir.iterdir()) else []
    labeled = [c for c in cases if c.labeled]
    unlabeled = [c for c in cases if not c.labeled] + extra
    seen: dict[str, Path] = {}
    for c in labeled + unlabeled:
        if c.missing or c.duplicates:
            require_complete(c)
        if c.case_id in seen:
            raise DataError(
                f"{c.folder}: duplicate case ID {c.case_id} (also in {seen[c.case_id]}); case IDs must be unique"
            )
        seen[c.case_id] = c.folder
    if not labeled and not unlabeled:
        raise DataError(f"{source}: no cases found")
    return fmt, labeled, unlabeled


def prepare(
    source: Path | str,
    cache_root: Path | str | None = None,
    *,
    spacing: float | None = None,
    normalization: str = "minmax",
    fmt: str | None = None,
    folds: int = 5,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    progress: bool = True,
    workers: int = 1,
    test_ids: Sequence[str] | str | Path | None = None,
    splits: str | Path | None = None,
    lower_folds: bool = False,
    options: SplitOptions = CLI_OPTIONS,
    split_names: tuple[str, str] = ("--test-ids", "--splits"),
    arrays: bool = True,
) -> PreparedDataset:
    """Prepare (or reuse) the cache of the dataset at ``source``; see the module docstring.

    Returns the PreparedDataset at ``<cache_root>/<fingerprint>``; ``cache_root`` defaults to ``./.bench/cache``.
    ``workers`` > 1 prepares cases in that many processes (same result, not part of the fingerprint).

    Splits: ``test_ids`` (IDs, or a text file of one ID a line) fixes the held-out test set; ``splits`` (nnU-Net's
    ``splits_final.json`` or bench's ``splits.json``) fixes the folds (see :mod:`bench.data.splits`). With
    ``lower_folds``, a drawn split on too few cases gets as many folds as the cases allow (down to 1, no
    validation) instead of an error. ``options`` and ``split_names`` name the caller's options in messages.
    The split itself is part of the fingerprint: a changed split is a new cache. ``arrays=False``: the index
    without working-grid arrays (module docstring), or the full cache when one exists.
    """
    if normalization not in NORMALIZATIONS:
        raise SpecError(f"unknown normalization {normalization!r}; accepted: {', '.join(NORMALIZATIONS)}")
    if spacing is not None and not spacing > 0:
        raise SpecError(f"working spacing must be a positive number of mm, got {spacing}")
    src = Path(source).resolve()
    if not src.is_dir():
        raise DataError(f"{source}: not a folder (expected a BraTS or MSD dataset folder)")
    fmt, labeled, unlabeled = _collect(src, fmt)
    params: dict[str, Any] = {
        "spacing": None if spacing is None else float(spacing), "normalization": normalization, "format": fmt,
        "folds": int(folds), "test_fraction": float(test_fraction), "split_seed": int(split_seed),
    }
    label_ids = sorted(c.case_id for c in labeled)
    fixed = _fixed_split_inputs(test_ids, splits, split_names)
    if fixed is not None:
        params["fixed_split"] = fixed
        params.pop("test_fraction")
        if fixed["folds"] is not None:
            params.pop("folds")
            params.pop("split_seed")
        # validate the IDs before the long part (ET strata come later)
        splits_d = fixed_splits(label_ids, test_ids=fixed["test"], folds_file=fixed["folds"],
                                test_where=split_names[0], splits_where=split_names[1],
                                folds=_fit(folds, len(label_ids) - len(fixed["test"] or []), 0.0, lower_folds),
                                seed=split_seed, options=options)
        if fixed["folds"] is None:
            params["folds"] = splits_d["n_folds"]
    else:
        params["folds"] = _fit(folds, len(label_ids), test_fraction, lower_folds)
        # validate split sizes before the long part
        make_splits(label_ids, [True] * len(label_ids), params["folds"], test_fraction, split_seed, options=options)
    files = [p for c in labeled + unlabeled for p in c.all_files()]
    fp = fingerprint_sources(src, files, params)
    croot = (Path(cache_root) if cache_root is not None else DEFAULT_CACHE_ROOT).resolve()
    root = croot / fp
    if (root / "dataset.json").is_file():
        return PreparedDataset.open(root)
    if not arrays:
        root = croot / f"{fp}{INDEX_SUFFIX}"
        if (root / "dataset.json").is_file():
            return PreparedDataset.open(root)

    croot.mkdir(parents=True, exist_ok=True)
    tmp = croot / f".tmp-{fp}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    for sub in ("images", "labels", "source_labels") if arrays else ("source_labels",):
        (tmp / sub).mkdir(parents=True)
    bar = None
    if progress:
        from bench.bars import progress_bar

        verb = "preparing" if arrays else "indexing"
        bar = progress_bar(total=len(labeled) + len(unlabeled), desc=f"{verb} {src.name}", unit="case")
    try:
        entries: dict[str, dict] = {}
        jobs = [(cf, tmp, spacing, normalization, arrays) for cf in labeled + unlabeled]
        if workers > 1 and len(jobs) > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn, not fork: forking a process that already runs OpenMP/BLAS threads can hang
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx) as pool:
                for cid, entry in pool.map(_prepare_one, jobs):
                    entries[cid] = entry
                    if bar is not None:
                        bar.update(1)
        else:
            for job in jobs:
                cid, entry = _prepare_one(job)
                entries[cid] = entry
                if bar is not None:
                    bar.update(1)
        case_ids = sorted(c.case_id for c in labeled)
        has_et = [entries[c]["has_et"] for c in case_ids]
        if fixed is None:
            splits_json = make_splits(case_ids, has_et, params["folds"], test_fraction, split_seed, options=options)
        else:
            splits_json = fixed_splits(case_ids, test_ids=fixed["test"], folds_file=fixed["folds"],
                                       test_where=split_names[0], splits_where=split_names[1],
                                       folds=params.get("folds", 1), seed=split_seed, has_et=has_et,
                                       options=options)
        info = {
            "version": PREPROCESS_VERSION, "fingerprint": fp, "source": str(src), "format": fmt,
            "params": params, "case_ids": case_ids, "unlabeled_ids": sorted(c.case_id for c in unlabeled),
            "cases": entries, "arrays": arrays,
        }
        (tmp / "splits.json").write_text(json.dumps(splits_json, indent=1))
        (tmp / "dataset.json").write_text(json.dumps(info, indent=1))
        try:
            os.rename(tmp, root)
        except OSError:
            if not (root / "dataset.json").is_file():  # not a concurrent builder's finished copy
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    return PreparedDataset.open(root)
