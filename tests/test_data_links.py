"""Datasets made of symbolic links (subsets, splits) are read like real folders; loops and dangling links are
one clear problem each in `bench data check`, never a hang."""

from __future__ import annotations

import os
from pathlib import Path

from bench.data.check import check_dataset
from bench.data.prepare import prepare
from bench.data.readers import detect_format, list_cases

IDS = ("BraTS19_SYN_001", "BraTS19_SYN_002", "BraTS19_SYN_003", "BraTS19_SYN_004")


def _linked_folders(synth_raw: Path, root: Path) -> Path:
    """Case folders that are links to the shared dataset's folders."""
    root.mkdir()
    for cid in IDS:
        os.symlink(synth_raw / cid, root / cid)
    return root


def _linked_files(synth_raw: Path, root: Path) -> Path:
    """Real case folders whose files are links."""
    for cid in IDS:
        (root / cid).mkdir(parents=True)
        for f in (synth_raw / cid).iterdir():
            os.symlink(f, root / cid / f.name)
    return root


def test_folder_of_linked_case_folders_checks_lists_and_prepares(synth_raw: Path, tmp_path: Path) -> None:
    root = _linked_folders(synth_raw, tmp_path / "subset")
    assert detect_format(root) == "brats2019"
    assert [c.case_id for c in list_cases(root)] == list(IDS)
    report = check_dataset(root)
    assert report.ok, report.problems
    assert report.summary.n_labeled == 4
    ds = prepare(root, tmp_path / "cache", folds=2, test_fraction=0.25, progress=False)
    assert sorted(ds.case_ids) == list(IDS)


def test_linked_files_prepare_to_the_same_arrays_as_the_originals(synth_raw: Path, tmp_path: Path) -> None:
    import numpy as np

    root = _linked_files(synth_raw, tmp_path / "files")
    assert check_dataset(root).ok
    ds = prepare(root, tmp_path / "cache", folds=2, test_fraction=0.25, progress=False)
    assert len(ds.case_ids) == 4
    orig = prepare(synth_raw, tmp_path / "cache0", folds=3, test_fraction=0.2, progress=False)
    np.testing.assert_array_equal(ds.load(IDS[0]).image, orig.load(IDS[0]).image)


def test_link_target_change_is_a_new_cache(synth_raw: Path, tmp_path: Path) -> None:
    root = _linked_folders(synth_raw, tmp_path / "subset")
    a = prepare(root, tmp_path / "cache", folds=2, test_fraction=0.25, progress=False)
    os.unlink(root / IDS[3])
    os.symlink(synth_raw / "BraTS19_SYN_005", root / "BraTS19_SYN_005")
    b = prepare(root, tmp_path / "cache", folds=2, test_fraction=0.25, progress=False)
    assert a.fingerprint != b.fingerprint


def test_link_loop_is_one_problem_naming_the_link(run_cli, synth_raw: Path, tmp_path: Path) -> None:
    root = _linked_folders(synth_raw, tmp_path / "loop")
    os.symlink(root, root / "again")  # a folder link back to the dataset itself
    report = check_dataset(root)
    msgs = [str(p) for p in report.problems]
    assert len(msgs) == 1, msgs
    assert msgs[0].startswith(f"{root / 'again'}: symbolic link loop"), msgs
    res = run_cli("data", "check", root)
    assert res.code == 2 and "symbolic link loop" in res.out


def test_self_link_and_dangling_link_are_reported(synth_raw: Path, tmp_path: Path) -> None:
    root = _linked_files(synth_raw, tmp_path / "broken")
    os.symlink("self.nii.gz", root / IDS[0] / "self.nii.gz")
    t1 = root / IDS[1] / f"{IDS[1]}_t1.nii.gz"
    os.unlink(t1)
    os.symlink(tmp_path / "gone.nii.gz", t1)
    probs = [(str(p.file), p.message) for p in check_dataset(root).problems]
    assert [m for f, m in probs if f == str(root / IDS[0] / "self.nii.gz")] == [
        "symbolic link loop (the link resolves to itself); point it at a case file or folder"]
    at_t1 = sorted(m for f, m in probs if f == str(t1))
    assert at_t1 == [f"case {IDS[1]} is missing its t1 modality",
                     f"dangling symbolic link: its target {tmp_path / 'gone.nii.gz'} does not exist"], probs
    assert len(probs) == 3, probs
