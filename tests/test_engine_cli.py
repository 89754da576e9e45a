"""`bench train`, `bench predict`, `bench tricks`: normal use and one-line errors with exit 2."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

TINY = ["--iterations", "2", "--epoch-length", "1", "--patch", "16", "--batch", "1", "--width", "4", "--depth", "2",
        "--workers", "0"]


@pytest.fixture(scope="module")
def trained(synth_raw: Path, tmp_path_factory) -> tuple[Path, Path]:
    from bench.cli import main

    base = tmp_path_factory.mktemp("cli")
    out, cache = base / "run", base / "cache"
    code = main(["train", "--data", str(synth_raw), "--tricks", "warmup,self_ensemble", "--set", "warmup.epochs=1",
                 "--out", str(out), "--cache", str(cache), *TINY])
    assert code == 0
    return out, cache


@pytest.mark.slow
def test_train_then_predict_writes_source_geometry(trained, synth_raw: Path, run_cli, tmp_path: Path) -> None:
    out, cache = trained
    assert (out / "final.pt").exists() and (out / "curve.json").exists()
    r = run_cli("predict", "--model", f"{out / 'final.pt'},{out / 'final.pt'}", "--data", str(synth_raw),
                "--cache", str(cache), "--out", str(tmp_path / "pred"), "--cases", "test", "--overlap", "0.5",
                "--weights", "gaussian")
    assert r.code == 0, r.err
    files = sorted((tmp_path / "pred").glob("*.nii.gz"))
    assert len(files) == 2 and "wrote 2 predictions" in r.out
    img = nib.load(files[0])
    src = next(synth_raw.glob(f"{files[0].name[:-7]}/*_seg.nii.gz"))
    assert img.shape == nib.load(src).shape
    np.testing.assert_allclose(img.affine, nib.load(src).affine)
    assert set(np.unique(np.asarray(img.dataobj))) <= {0, 1, 2, 4}


@pytest.mark.slow
def test_predict_a_folder_of_unlabeled_scans(trained, synth_raw: Path, run_cli, tmp_path: Path) -> None:
    # a challenge's validation folder: scans without segmentations. The default --cases all predicts them all
    # (before, "all" meant the labeled cases and such a folder gave 0 predictions and exit 0)
    import shutil

    out, cache = trained
    scans = tmp_path / "scans"
    for case in sorted(p for p in synth_raw.iterdir() if p.is_dir() and p.name != "unlabeled")[:2]:
        shutil.copytree(case, scans / case.name, ignore=shutil.ignore_patterns("*_seg.nii.gz"))
    r = run_cli("predict", "--model", str(out / "final.pt"), "--data", str(scans), "--cache", str(cache),
                "--out", str(tmp_path / "pred"))
    assert r.code == 0, r.err
    assert "wrote 2 predictions" in r.out and len(list((tmp_path / "pred").glob("*.nii.gz"))) == 2
    r = run_cli("predict", "--model", str(out / "final.pt"), "--data", str(scans), "--cache", str(cache),
                "--out", str(tmp_path / "pred2"), "--cases", "test")
    assert r.code == 2 and r.err.strip() == f"bench: error: --cases test: no such cases in {scans} (0 labeled, 2 unlabeled)"


@pytest.mark.slow
def test_train_shows_progress_and_summary(synth_raw: Path, run_cli, tmp_path: Path) -> None:
    r = run_cli("train", "--data", str(synth_raw), "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c"),
                "--val-every", "2", *TINY)
    assert r.code == 0, r.err
    assert "trained 2 iterations" in r.out and "validation Dice WT" in r.out
    assert "loss=" in r.err and "lr=" in r.err and "2/2" in r.err  # the progress bar


@pytest.mark.parametrize("args,message", [
    (["--tricks", "warmpu"], "unknown trick 'warmpu'; did you mean 'warmup'"),
    (["--tricks", "warmup", "--set", "warmup.epoks=3"], "has no parameter 'epoks'; did you mean 'epochs'"),
    (["--tricks", "warmup", "--set", "warmup.epochs=abc"], "must be a number"),
    (["--tricks", "warmup", "--set", "warmup=3"], "expected trick.param=value"),
    (["--set", "warmup.epochs=3"], "trick 'warmup' is not in --tricks"),
    (["--tricks", "focal_loss,hard_mining"], "conflict"),
])
def test_train_bad_input_is_one_line_exit_2(args: list[str], message: str, synth_raw: Path, run_cli,
                                            tmp_path: Path) -> None:
    r = run_cli("train", "--data", str(synth_raw), "--out", str(tmp_path), *TINY, *args)
    assert r.code == 2
    assert message in r.err and r.err.count("\n") == 1 and "Traceback" not in r.err


def test_data_folder_failing_check_is_refused(run_cli, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_cli("train", "--data", str(empty), "--out", str(tmp_path / "o"), *TINY)
    assert r.code == 2 and "fails `bench data check`" in r.err and r.err.count("\n") == 1
    r = run_cli("train", "--data", str(tmp_path / "nope"), *TINY)
    assert r.code == 2 and "not a folder" in r.err


@pytest.mark.slow
def test_checkpoint_errors(trained, synth_raw: Path, run_cli, tmp_path: Path) -> None:
    out, cache = trained
    r = run_cli("predict", "--model", str(tmp_path / "missing.pt"), "--data", str(synth_raw), "--out", str(tmp_path))
    assert r.code == 2 and "missing.pt: no such file" in r.err
    bad = tmp_path / "bad.pt"
    bad.write_text("garbage")
    r = run_cli("predict", "--model", str(bad), "--data", str(synth_raw), "--out", str(tmp_path))
    assert r.code == 2 and "cannot be read" in r.err
    # the same output folder with another model shape
    r = run_cli("train", "--data", str(synth_raw), "--cache", str(cache), "--out", str(out), "--resume",
                "--tricks", "warmup,self_ensemble", "--set", "warmup.epochs=1", *TINY, "--width", "6")
    assert r.code == 2 and "another model shape" in r.err and r.err.count("\n") == 1


def test_tricks_table_and_show(run_cli) -> None:
    r = run_cli("tricks")
    assert r.code == 0
    for name in ("dense_blocks", "self_ensemble", "warmup"):
        assert name in r.out
    assert "model.block" in r.out and "schedule (wraps)" in r.out and "epochs=20.0" in r.out
    r = run_cli("tricks", "show", "warmup")
    assert r.code == 0 and "epochs (float) = 20.0" in r.out and "search: float [1.0, 40.0]" in r.out
    r = run_cli("tricks", "show", "warmpu")
    assert r.code == 2 and "did you mean 'warmup'" in r.err


def test_train_progress_written_to_a_file_is_a_few_lines_not_one_per_iteration(synth_raw: Path, run_cli,
                                                                              tmp_path: Path) -> None:
    """stderr is not a terminal here (as `bench train ... >log 2>&1`): bars.py's promise of a line at most every
    30 s holds for the training bar, whose callback sets the postfix and refreshes at every iteration."""
    args = [a if a != "2" else "40" for a in TINY[:2]] + TINY[2:]
    r = run_cli("train", "--data", str(synth_raw), "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c"),
                *args)
    assert r.code == 0, r.err
    bar_lines = [ln for ln in r.err.splitlines() if ln.startswith("train ")]
    assert "\r" not in r.err and 1 <= len(bar_lines) <= 3, bar_lines
    assert "40/40" in bar_lines[-1] and "loss=" in bar_lines[-1]
