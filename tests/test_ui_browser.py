"""What a user sees first in the MLflow UI, with the real parts: `bench run` (twice: the second launch has
nothing to run) on a tiny grid, `bench ui` over the workspace, its REST API and headless Chromium.

Set ``BENCH_DOCS_SCREENSHOT=1`` to refresh ``docs/mlflow-runs.png`` (the screenshot in docs/mlflow.md).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tiny_spec import TINY_DATA_MODEL

from bench.runner.tracking import (
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    NOTHING_RUN_SUFFIX,
    RUNS_VIEW_TAG,
    Tracker,
    cell_params,
    runs_view_state,
    with_dice_mean,
)

STARTUP_S = 240.0
DOCS_PNG = Path(__file__).resolve().parent.parent / "docs" / "mlflow-runs.png"
SPEC = """
name = "uitiny"
design = "full"
fixed = []
factors = ["warmup", "patch_fusion"]
folds = [0]
seeds = [0]
[params]
warmup = { epochs = 1 }
""" + TINY_DATA_MODEL + """[train]
iterations = 8
epoch_length = 2
patch = 16
batch = 1
num_workers = 0
threads = 1
"""


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _env() -> dict[str, str]:
    return {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1"}


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, env=_env(),
                          timeout=900)


def _api(url: str, endpoint: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{url}/api/2.0/mlflow/{endpoint}", data=data,
                                 method="GET" if body is None else "POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


class _Ui:
    """`bench ui --port 0` in its own session; collects the lines it prints."""

    def __init__(self, workspace: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "bench", "ui", "--workspace", str(workspace),
                                      "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=_env(), start_new_session=True)
        self.lines: list[str] = []
        self.done = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if "compare the" in line:
                self.done.set()
        self.done.set()

    def urls(self) -> dict[str, str]:
        assert self.done.wait(STARTUP_S), f"bench ui printed no compare URL in time: {self.lines}"
        out = {}
        for line in self.lines:
            m = re.match(r"\s*(MLflow UI|runs of \S+|compare the .*?): (http://\S+)", line)
            if m:
                out["compare" if m.group(1).startswith("compare") else m.group(1)] = m.group(2)
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("ui")
    spec = root / "uitiny.toml"
    spec.write_text(SPEC)
    ws = root / "ws"
    for _ in range(2):  # the second launch finds every cell done
        res = _bench("run", str(spec), "--workspace", str(ws))
        assert res.returncode == 0, res.stderr[-3000:]
    ui = _Ui(ws)
    try:
        urls = ui.urls()
        yield {"root": root, "ws": ws, "urls": urls, "url": urls["MLflow UI"], "lines": ui.lines}
    finally:
        ui.stop()


def _experiment(url: str) -> dict[str, Any]:
    return _api(url, "experiments/get-by-name?experiment_name=uitiny")["experiment"]


def _runs(url: str, exp_id: str, flt: str) -> list[dict[str, Any]]:
    return _api(url, "runs/search", {"experiment_ids": [exp_id], "filter": flt, "max_results": 100})["runs"]


def _tags(run: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def _metrics(run: dict[str, Any]) -> dict[str, float]:
    return {m["key"]: m["value"] for m in run["data"].get("metrics", [])}


def _dump(url: str, out: Path, *extra: str) -> str:
    chromium = _chromium()
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("no chromium binary: .ci/run installs Debian's chromium package")
        pytest.skip("no chromium binary (Debian: apt-get install chromium; .ci/run installs it)")
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           f"--user-data-dir={out.parent / ('profile-' + out.stem)}", "--window-size=1600,1000",
           "--virtual-time-budget=20000", *extra, url]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


@pytest.mark.slow
def test_experiment_opens_on_runs_and_the_empty_launch_left_no_parent(finished: dict[str, Any]) -> None:
    url = finished["url"]
    exp = _experiment(url)
    tags = {t["key"]: t["value"] for t in exp["tags"]}
    assert tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    launches = _runs(url, exp["experiment_id"], "tags.`bench.kind` = 'launch'")
    assert len(launches) == 1, [r["info"]["run_name"] for r in launches]  # the second launch ran nothing
    parent = launches[0]
    assert not parent["info"]["run_name"].endswith(NOTHING_RUN_SUFFIX)
    cells = _runs(url, exp["experiment_id"], f"tags.`mlflow.parentRunId` = '{parent['info']['run_id']}'")
    assert len(cells) == 4
    summary = _metrics(parent)
    assert summary["cells_done"] == 4 and summary["cells_failed"] == 0 and summary["cells_run"] == 4
    best = max(cells, key=lambda r: _metrics(r)["dice_mean"])
    assert summary["best_dice_mean"] == pytest.approx(_metrics(best)["dice_mean"])
    assert _tags(parent)["best_cell"] == best["info"]["run_name"]
    for run in cells:
        m = _metrics(run)
        assert m["dice_mean"] == pytest.approx((m["dice_et"] + m["dice_tc"] + m["dice_wt"]) / 3)
    view = json.loads(tags[RUNS_VIEW_TAG])
    assert view == runs_view_state(["trick.patch_fusion", "trick.warmup"])


@pytest.mark.slow
def test_child_runs_last_as_long_as_the_cells(finished: dict[str, Any]) -> None:
    from bench.store import queries as q

    url = finished["url"]
    exp = _experiment(url)
    cells = q.cells(f"sqlite:///{finished['ws'] / '.bench' / 'results.db'}", "uitiny")
    runs = {int(_tags(r)["cell_id"]): r["info"] for r in _runs(url, exp["experiment_id"], "tags.`bench.kind` = 'cell'")}
    assert sorted(runs) == sorted(int(c) for c in cells["cell_id"])
    lengths: dict[str, float] = {}
    trained: dict[str, float] = {}
    for c in cells.itertuples():
        info = runs[int(c.cell_id)]
        start, end = int(info["start_time"]) / 1000, int(info["end_time"]) / 1000

        def epoch(t: Any) -> float:
            t = t.to_pydatetime() if hasattr(t, "to_pydatetime") else t
            return (t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)).timestamp()

        started, ended = epoch(c.started_at), epoch(c.finished_at)
        # The run starts when the cell was claimed and ends when its evaluation ended, just before the cell's
        # results (and the mirror itself, ~0.1-1 s) were stored.
        assert abs(start - started) < 1.0, (c.label, start, started)
        assert ended - 3.0 < end <= ended + 0.05, (c.label, end, ended)
        lengths[str(c.label)] = end - start
        trained[str(c.label)] = float(c.train_seconds or 0.0)
    # A run covers its cell's training: cells that trained last at least their training time and longer than
    # those that reuse the checkpoint and only predict (patch_fusion changes inference only); a mirror-length
    # run (~0.1 s each) would show neither.
    for label in ("BL", "BL+warmup"):
        assert trained[label] > 0.1 and lengths[label] >= trained[label], (lengths, trained)
        assert lengths[label] > lengths[label + "+patch_fusion"], lengths


@pytest.mark.slow
def test_printed_urls_answer_and_open_on_the_cells_and_their_toggles(finished: dict[str, Any]) -> None:
    urls = finished["urls"]
    assert set(urls) == {"MLflow UI", "runs of uitiny", "compare"}, finished["lines"]
    exp_id = _experiment(finished["url"])["experiment_id"]
    assert any(line.startswith("  compare the 4 cells of uitiny 20") for line in finished["lines"])
    assert urls["runs of uitiny"] == f"{finished['url']}/#/experiments/{exp_id}/runs?viewStateShareKey=bench"
    for link in urls.values():
        with urllib.request.urlopen(link, timeout=30) as resp:
            assert resp.status == 200

    shot = finished["root"] / "runs.png"
    dom = _dump(urls["runs of uitiny"], finished["root"] / "runs.html", "--dump-dom")
    for label in ("BL", "BL+warmup", "BL+patch_fusion", "BL+warmup+patch_fusion"):
        assert f">{label} f0 s0<" in dom, label
    assert "uitiny 20" not in dom  # the parent run is filtered out of this view
    for column in ("dice_mean", "dice_et", "trick.warmup", "Duration"):
        assert f">{column}<" in dom, column
    _dump(urls["runs of uitiny"], shot, f"--screenshot={shot}")
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")) == (1600, 1000)
    if os.environ.get("BENCH_DOCS_SCREENSHOT") == "1":
        from PIL import Image

        with Image.open(shot) as img:
            small = img.convert("RGB").resize((1200, 750), Image.Resampling.LANCZOS).quantize(colors=64)
            tmp = DOCS_PNG.with_suffix(".tmp.png")
            small.save(tmp, optimize=True)
            os.replace(tmp, DOCS_PNG)

    # The compare page preselects the first three differing params in code-point order: the toggles first.
    dom = _dump(urls["compare"], finished["root"] / "compare.html", "--dump-dom")
    axes = re.findall(r'class="axis-title"[^>]*>([^<]+)<', dom)
    assert axes[:2] == ["trick.patch_fusion", "trick.warmup"] and axes[-1] == "dice_et", axes


def test_cell_params_put_toggles_before_trick_parameters() -> None:
    params = cell_params(["warmup", "patch_fusion", "focal_loss"], ["warmup", "patch_fusion"],
                         {"warmup": {"epochs": 2}, "patch_fusion": {"overlap": 0.5}}, {"iterations": 10}, 0, 1)
    differing = sorted(k for k in params if k.startswith("trick"))
    assert differing[:3] == ["trick.focal_loss", "trick.patch_fusion", "trick.warmup"]
    assert params["trick_param.warmup.epochs"] == 2 and params["trick_param.patch_fusion.overlap"] == 0.5
    assert with_dice_mean({"dice_et": 0.5, "dice_tc": 0.6, "dice_wt": 0.7})["dice_mean"] == pytest.approx(0.6)
    assert "dice_mean" not in with_dice_mean({"dice_et": 0.5, "dice_tc": float("nan"), "dice_wt": 0.7})


def test_a_launch_without_cells_says_so_and_old_experiments_get_the_kind_tag(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    old = client.create_experiment("old", artifact_location=(tmp_path / "art").as_uri())  # made without the tag
    tracker = Tracker(uri, "old")
    parent = tracker.start_parent("old 2026-01-01 00:00:00", {"design": "optuna"}, {})
    assert tracker.finish_launch(parent, "FINISHED", {"done": 3, "failed": 1, "queued": 2})
    run = client.get_run(parent)
    assert run.data.tags["mlflow.runName"] == "old 2026-01-01 00:00:00" + NOTHING_RUN_SUFFIX
    assert run.info.status == "FINISHED"
    assert run.data.metrics == {"cells_done": 3, "cells_failed": 1, "cells_skipped": 0, "cells_pruned": 0,
                                "cells_not_finished": 2, "cells_run": 0}
    assert client.get_experiment(old).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    with pytest.raises(ValueError, match="status must be one of"):
        tracker.finish_launch(parent, "DONE", {})
    assert tracker.failures == 0, tracker.last_error
