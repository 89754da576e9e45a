"""bench's dataset as an nnU-Net dataset: the raw folder written from bench's readers, nnU-Net's fingerprint,
plan and preprocessing through its Python API, and bench's split as ``splits_final.json``.

Layout under the workspace (``<workspace>/.bench/nnunet/<key>/``, ``key`` a hash of bench's prepared data
(sources and split), the planner, its options and the nnunetv2 version)::

    nnUNet_raw/Dataset001_BraTS/dataset.json   channels T1, T1ce, T2, FLAIR; BraTS regions (region-based
                                               training, as nnU-Net's own BraTS conversion); images listed by
                                               absolute path (BraTS layouts: the source files themselves)
    nnUNet_raw/Dataset001_BraTS/labelsTr/      labels in nnU-Net's BraTS numbering (1 edema, 2 NCR, 3 ET)
    nnUNet_raw/Dataset001_BraTS/images/        4D (MSD) sources split into one file per channel
    nnUNet_preprocessed/Dataset001_BraTS/      fingerprint, plans, splits_final.json, preprocessed arrays
    nnunet.log                                 nnU-Net's console output
    .complete

Only the training and validation cases of bench's split go into nnU-Net's training set; the test cases stay
out of the fingerprint and the preprocessing and are predicted from their source files.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from bench.engines.nnunet import _nn

__all__ = ["NnunetData", "PredictionInputs", "prepare", "PLANNERS", "DATASET_ID", "DATASET_NAME", "to_nnunet_labels",
           "from_nnunet_labels", "REGIONS_CLASS_ORDER"]

DATASET_ID = 1
DATASET_NAME = "Dataset001_BraTS"
#: plans identifier -> nnU-Net's planner class that writes it
PLANNERS: dict[str, str] = {
    "nnUNetPlans": "ExperimentPlanner",
    "nnUNetResEncUNetMPlans": "nnUNetPlannerResEncM",
    "nnUNetResEncUNetLPlans": "nnUNetPlannerResEncL",
    "nnUNetResEncUNetXLPlans": "nnUNetPlannerResEncXL",
}
#: bench's nnU-Net dataset layout; bump when the raw dataset or the preprocessing call changes
LAYOUT_VERSION = 1
CHANNELS = {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"}
# nnU-Net's BraTS conversion (Dataset137_BraTS2021): 1 edema, 2 necrosis/non-enhancing core, 3 enhancing
LABELS = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]}
REGIONS_CLASS_ORDER = [1, 2, 3]
_TO_NN = np.zeros(256, np.uint8)
_TO_NN[[0, 1, 2, 4]] = [0, 2, 1, 3]  # BraTS 2019 -> nnU-Net
_FROM_NN = np.array([0, 2, 1, 4], np.uint8)  # nnU-Net -> BraTS 2019


def to_nnunet_labels(brats2019: np.ndarray) -> np.ndarray:
    return _TO_NN[np.asarray(brats2019, np.uint8)]


def from_nnunet_labels(nn: np.ndarray) -> np.ndarray:
    return _FROM_NN[np.asarray(nn, np.uint8)]


class _OnBase:
    """:class:`bench.engines.PreparedData` read from bench's prepared dataset ``self.base`` (one split, one
    truth), and the configuration nnU-Net's predictor reads."""

    base: Any
    options: dict[str, Any]

    @property
    def n_folds(self) -> int:
        return int(self.base.n_folds)

    @property
    def case_ids(self) -> list[str]:
        return list(self.base.case_ids)

    def train_ids(self, fold: int) -> list[str]:
        return list(self.base.train_ids(fold))

    def val_ids(self, fold: int) -> list[str]:
        return list(self.base.val_ids(fold))

    def test_ids(self) -> list[str]:
        return list(self.base.test_ids())

    def meta(self, case_id: str) -> Any:
        return self.base.meta(case_id)

    def source_label(self, case_id: str) -> np.ndarray:
        return self.base.source_label(case_id)

    @property
    def unlabeled_ids(self) -> list[str]:
        return list(self.base.unlabeled_ids)

    @property
    def configuration(self) -> str:
        return str(self.options["configuration"])


class NnunetData(_OnBase):
    """bench's prepared dataset (splits, metadata, source labels: one split, one truth) with its nnU-Net
    folders. Satisfies :class:`bench.engines.PreparedData`."""

    def __init__(self, base: Any, root: Path, key: str, options: dict[str, Any]):
        self.base = base
        self.root = Path(root)
        self.key = key
        self.options = dict(options)

    @property
    def fingerprint(self) -> str:
        return f"nnunet-{self.key}"

    # --- nnU-Net
    @property
    def raw(self) -> Path:
        return self.root / "nnUNet_raw"

    @property
    def preprocessed(self) -> Path:
        return self.root / "nnUNet_preprocessed"

    @property
    def plans_identifier(self) -> str:
        return str(self.options["plans"])

    def plans(self) -> dict[str, Any]:
        return json.loads((self.preprocessed / DATASET_NAME / f"{self.plans_identifier}.json").read_text())

    def dataset_json(self) -> dict[str, Any]:
        return json.loads((self.preprocessed / DATASET_NAME / "dataset.json").read_text())

    def image_files(self, case_id: str) -> list[str]:
        """The case's four channel files in nnU-Net's channel order (T1, T1ce, T2, FLAIR)."""
        listing = json.loads((self.root / "images.json").read_text())
        return list(listing[case_id])

    def __repr__(self) -> str:
        return f"NnunetData({self.root}, {self.plans_identifier} {self.configuration}, {self.base!r})"


class PredictionInputs(_OnBase):
    """The cases of a folder to predict with a trained nnU-Net model, labeled or not: bench's prepared dataset
    (metadata, splits, unlabeled cases) and each case's channel files in nnU-Net's order. Nothing is planned or
    preprocessed: the model's checkpoint carries its plans (spacing, patch, normalisation), and nnU-Net's
    predictor preprocesses each case with them."""

    def __init__(self, base: Any, workspace_root: Path, options: dict[str, Any]):
        self.base = base
        self.root = Path(workspace_root) / "nnunet" / f"inputs-{base.fingerprint}"
        self.options = dict(options)

    @property
    def fingerprint(self) -> str:
        return f"nnunet-inputs-{self.base.fingerprint}"

    def plans(self) -> dict[str, Any]:
        from bench.errors import CheckpointError

        raise CheckpointError("the nnU-Net checkpoint carries no plans (init_args.plans, written by nnU-Net v2's "
                              "trainer): bench predicts a model only with the plans it was trained with")

    def dataset_json(self) -> dict[str, Any]:
        return _dataset_json()

    def image_files(self, case_id: str) -> list[str]:
        """The case's four channel files in nnU-Net's channel order (4D sources split once, under the lock)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return _channel_files(self.base, case_id, self.root / "images")

    def __repr__(self) -> str:
        return f"PredictionInputs({self.root}, {self.base!r})"


def _dataset_json() -> dict[str, Any]:
    """dataset.json's fields that prediction reads: channels, BraTS regions, file type and reader."""
    return {"channel_names": dict(CHANNELS), "labels": dict(LABELS), "regions_class_order": list(REGIONS_CLASS_ORDER),
            "file_ending": ".nii.gz", "overwrite_image_reader_writer": "NibabelIO"}


def _key(base: Any, options: dict[str, Any]) -> str:
    planning = {k: options.get(k) for k in ("plans", "configuration", "spacing", "gpu_memory_gb")}
    payload = {"data": base.fingerprint, "planning": planning, "nnunetv2": _nn.version(), "layout": LAYOUT_VERSION}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def prepare(base: Any, workspace_root: Path, options: dict[str, Any], *, progress: bool = False) -> NnunetData:
    """The nnU-Net dataset of bench's prepared ``base`` under ``workspace_root/nnunet/<key>`` (built once,
    under a file lock, in a temporary folder renamed into place)."""
    _nn.require()
    key = _key(base, options)
    top = Path(workspace_root) / "nnunet"
    root = top / key
    if (root / ".complete").exists():
        return NnunetData(base, root, key, options)
    top.mkdir(parents=True, exist_ok=True)
    with open(top / f"{key}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / ".complete").exists():
            if progress:
                print(f"nnU-Net: writing the raw dataset, fingerprint, plan ({options['plans']}) and preprocessing "
                      f"({options['configuration']}) into {root}", flush=True)
            tmp = top / f".tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            try:
                _build(base, tmp, options)
                (tmp / ".complete").write_text(json.dumps({"key": key, "options": options}, sort_keys=True))
                if root.exists():
                    shutil.rmtree(root)
                os.replace(tmp, root)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    return NnunetData(base, root, key, options)


def _build(base: Any, root: Path, options: dict[str, Any]) -> None:
    raw = root / "nnUNet_raw" / DATASET_NAME
    (raw / "labelsTr").mkdir(parents=True)
    test = set(base.test_ids())
    train_ids = [c for c in base.case_ids if c not in test]
    images: dict[str, list[str]] = {}
    for cid in [*train_ids, *sorted(test)]:
        images[cid] = _channel_files(base, cid, raw / "images")
    for cid in train_ids:
        _write_label(base, cid, raw / "labelsTr" / f"{cid}.nii.gz")
    dataset = {
        **_dataset_json(), "numTraining": len(train_ids),
        "dataset": {cid: {"images": images[cid], "label": f"labelsTr/{cid}.nii.gz"} for cid in train_ids},
        "name": "BraTS (bench)", "description": f"written by bench from {base.source}",
    }
    (raw / "dataset.json").write_text(json.dumps(dataset, indent=1))
    (root / "images.json").write_text(json.dumps(images, indent=1))
    pre = root / "nnUNet_preprocessed" / DATASET_NAME
    pre.mkdir(parents=True)
    splits = []
    for f in range(base.n_folds):
        tr, val = base.train_ids(f), base.val_ids(f)
        # one fold (no validation cases): nnU-Net validates on the training cases, as its fold "all" does
        splits.append({"train": tr, "val": val or tr})
    (pre / "splits_final.json").write_text(json.dumps(splits, indent=1))
    _plan_and_preprocess(root, options)


def _channel_files(base: Any, cid: str, out: Path) -> list[str]:
    """Absolute paths of the case's channels in T1, T1ce, T2, FLAIR order: BraTS layouts' own files; 4D
    sources (MSD) split into one compressed file per channel."""
    from bench.data.formats import MODALITIES

    cf = base.case_files(cid)
    if all(r in cf.files for r in MODALITIES) and all(str(cf.files[r]).endswith(".nii.gz") for r in MODALITIES):
        return [str(Path(cf.files[r]).resolve()) for r in MODALITIES]
    import nibabel as nib

    from bench.data.readers import read_case

    files = [out / f"{cid}_{i:04d}.nii.gz" for i in range(len(MODALITIES))]
    if all(p.is_file() for p in files):
        return [str(p.resolve()) for p in files]
    case = read_case(cf)
    out.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(files):
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp.nii.gz")
        nib.save(nib.Nifti1Image(np.asarray(case.image[i], np.float32), case.affine), str(tmp))
        os.replace(tmp, p)
    return [str(p.resolve()) for p in files]


def _write_label(base: Any, cid: str, path: Path) -> None:
    import nibabel as nib

    label = to_nnunet_labels(base.source_label(cid))
    nib.save(nib.Nifti1Image(label, np.asarray(base.meta(cid).affine, np.float64)), str(path))


def _plan_and_preprocess(root: Path, options: dict[str, Any]) -> None:
    import nnunetv2
    from nnunetv2.experiment_planning import plan_and_preprocess_api as api
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    procs = max(1, min(int(options.get("processes", 2)), os.cpu_count() or 1))
    # the planner sizes with torch.set_num_threads(nnUNet_n_proc_DA), which must be >= 1 there
    with _nn.folders(root / "nnUNet_raw", root / "nnUNet_preprocessed", None), _nn.quiet(root / "nnunet.log"), \
            _nn.environment(nnUNet_n_proc_DA=str(procs)):
        api.extract_fingerprint_dataset(DATASET_ID, num_processes=procs, check_dataset_integrity=False, clean=True,
                                        verbose=False, show_progress_bar=False)
        planner = recursive_find_python_class(os.path.join(nnunetv2.__path__[0], "experiment_planning"),
                                              PLANNERS[options["plans"]],
                                              current_module="nnunetv2.experiment_planning")
        spacing = options.get("spacing")
        api.plan_experiment_dataset(DATASET_ID, planner, gpu_memory_target_in_gb=options.get("gpu_memory_gb"),
                                    overwrite_target_spacing=None if spacing is None else
                                    tuple(float(s) for s in reversed(spacing)))
        api.preprocess_dataset(DATASET_ID, options["plans"], configurations=(options["configuration"],),
                               num_processes=[procs], verbose=False, show_progress_bar=False)
