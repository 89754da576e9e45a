"""`bench data show`: a PNG of the slice with the most tumour, with the prediction beside when given."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.data.readers import list_cases, read_label
from bench.data.show import tumour_slice
from bench.data.writers import write_prediction

PNG = b"\x89PNG\r\n\x1a\n"


def _png_size(path: Path) -> tuple[int, int]:
    raw = path.read_bytes()
    assert raw[:8] == PNG
    return int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")


def test_tumour_slice_picks_the_most_tumour() -> None:
    lab = np.zeros((10, 10, 8), np.uint8)
    lab[2:4, 2:4, 1] = 2
    lab[2:6, 2:6, 5] = 4
    assert tumour_slice(lab) == 5
    img = np.zeros((4, 10, 10, 8), np.float32)
    img[:, :, :, 3] = 1
    assert tumour_slice(np.zeros_like(lab), img) == 3


def test_show_writes_a_png_in_the_current_folder(run_cli, synth_raw: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = run_cli("data", "show", synth_raw, "BraTS19_SYN_002")
    assert res.code == 0, res.err
    out = tmp_path / "BraTS19_SYN_002.png"
    w, h = _png_size(out)
    assert w > 4 * h  # five panels side by side


def test_show_with_a_prediction_adds_a_panel(run_cli, synth_raw: Path, tmp_path: Path) -> None:
    cf = list_cases(synth_raw)[2]
    label, affine, _ = read_label(cf)
    pred = write_prediction(label, cf.case_id, affine, tmp_path / "pred", "brats2019")
    plain = run_cli("data", "show", synth_raw, cf.case_id, "--out", tmp_path / "a.png")
    both = run_cli("data", "show", synth_raw, cf.case_id, "--pred", pred, "--out", tmp_path / "b.png")
    assert plain.code == both.code == 0
    (wa, ha), (wb, hb) = _png_size(tmp_path / "a.png"), _png_size(tmp_path / "b.png")
    assert ha == hb and wb > wa * 1.15


def test_show_errors(run_cli, synth_raw: Path, tmp_path: Path) -> None:
    res = run_cli("data", "show", synth_raw, "BraTS19_NOPE", "--out", tmp_path / "x.png")
    assert res.code == 2 and "no case 'BraTS19_NOPE'" in res.err and "Traceback" not in res.err
    wrong = write_prediction(np.zeros((8, 8, 8), np.uint8), "p", np.eye(4), tmp_path, "brats2019")
    res = run_cli("data", "show", synth_raw, "BraTS19_SYN_001", "--pred", wrong, "--out", tmp_path / "x.png")
    assert res.code == 2 and "prediction shape (8, 8, 8) differs" in res.err
    res = run_cli("data", "show", synth_raw, "BRATS_U001", "--out", tmp_path / "u.png")  # unlabeled works too
    assert res.code == 0 and (tmp_path / "u.png").is_file()
