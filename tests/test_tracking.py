"""The MLflow mirror against real parts: a real `mlflow server` queried over HTTP, the default SQLite
workspace store, redaction, logging failures that must not fail a cell, and `bench ui` end to end.

Both servers (the plain `mlflow server` and the one `bench ui` starts) are launched by one module fixture
before either is waited for, so their ~20-30 s cold starts overlap.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.runner.tracking import (
    Tracker,
    cell_params,
    cell_run_name,
    default_artifact_root,
    default_tracking_uri,
    redact_url,
)

STARTUP_S = 180.0
SECRET = "hunter2"
FACTORS = ["warmup", "fuse", "focal"]

# Three cells, two labels: (label, enabled tricks, fold, final metrics).
CELLS = [
    ("BL", [], 0, {"dice_et": 0.61, "dice_tc": 0.72, "dice_wt": 0.83, "hd95_et": 9.5, "hd95_tc": 8.25, "hd95_wt": 6.0}),
    ("BL+warmup", ["warmup"], 0,
     {"dice_et": 0.64, "dice_tc": 0.74, "dice_wt": 0.85, "hd95_et": 8.5, "hd95_tc": 7.25, "hd95_wt": 5.5}),
    ("BL+warmup", ["warmup"], 1,
     {"dice_et": 0.66, "dice_tc": 0.75, "dice_wt": 0.86, "hd95_et": 7.5, "hd95_tc": 6.75, "hd95_wt": 373.13}),
]


def _curve(offset: float) -> list[dict[str, Any]]:
    """Four epochs of 25 iterations; validation only on epochs 1 and 3 (other rows lack val_*)."""
    rows: list[dict[str, Any]] = []
    for epoch in range(4):
        row: dict[str, Any] = {"epoch": epoch, "iteration": 25 * (epoch + 1), "train_loss": 1.0 / (epoch + 1),
                               "lr": 0.01}
        if epoch % 2 == 1:
            row |= {"val_dice_et": offset + 0.1 * epoch, "val_dice_tc": offset + 0.11 * epoch,
                    "val_dice_wt": offset + 0.12 * epoch}
        else:
            row |= {"val_dice_et": None, "val_dice_tc": float("nan")}  # skipped, never logged
        rows.append(row)
    return rows


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env |= {"MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    return env


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop_group(proc: subprocess.Popen[Any]) -> None:
    for sig, wait_s in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
        if not _group_alive(proc.pid):
            break
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
        # the leader is gone; give its children (uvicorn) a moment to follow
        deadline = time.monotonic() + wait_s
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def _post(url: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


class _MlflowServer:
    """A real `mlflow server` on a free loopback port: sqlite backend and proxied artifacts in tmp."""

    def __init__(self, root: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / "server.log"
        cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
               "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1",
               "--port", str(self.port), "--workers", "1"]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_env(),
                                         start_new_session=True)
        self._ready = False

    def wait(self) -> str:
        deadline = time.monotonic() + STARTUP_S
        while not self._ready:
            assert self.proc.poll() is None, f"mlflow server exited: {self.log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "mlflow server did not answer /health in time"
            self._ready = _answers(self.url)
            if not self._ready:
                time.sleep(0.25)
        return self.url


class _BenchUi:
    """`bench ui --port 0` in a subprocess; collects its stdout to find the printed URL."""

    def __init__(self, workspace: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench", "ui", "--workspace", str(workspace), "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
        self.lines: list[str] = []
        self._url_seen = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if "http://" in line:
                self._url_seen.set()
        self._url_seen.set()  # EOF: the process ended

    def url(self) -> str:
        assert self._url_seen.wait(STARTUP_S), "bench ui printed no URL in time"
        found = [m for line in self.lines for m in re.findall(r"http://[\w.\[\]:]+", line)]
        assert found, f"bench ui printed no URL; stdout={self.lines} stderr={self.stderr()}"
        return found[0]

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(running)"
        assert self.proc.stderr is not None
        return self.proc.stderr.read()


def _log_cells(tracker: Tracker, tmp: Path) -> tuple[str, list[str]]:
    parent = tracker.start_parent(
        "launch 1",
        {"spec": "demo", "design": "full", "results": f"postgresql://bench:{SECRET}@db.example:5432/bench"},
        {"git_commit": "0123abc", "storage": f"postgresql://bench:{SECRET}@db.example/optuna"},
    )
    assert parent
    children = []
    for i, (label, enabled, fold, metrics) in enumerate(CELLS):
        csv_path = tmp / f"cases{i}.csv"
        csv_path.write_text(f"case,region,dice\nBraTS19_{i:03d},ET,{metrics['dice_et']}\n")
        params = cell_params(FACTORS, enabled, {"warmup": {"epochs": 5}, "fuse": {"k": 3}},
                             {"iterations": 100, "patch": [32, 32, 32]}, fold=fold, seed=7)
        child = tracker.log_cell(parent, label, params, metrics, _curve(0.1 * i),
                                 {"case_metrics.csv": csv_path}, {"cell": str(i)},
                                 config={"label": label, "tricks": enabled, "fold": fold})
        assert child
        children.append(child)
    assert tracker.end_parent(parent, "FINISHED")
    assert tracker.failures == 0, tracker.last_error
    return parent, children


# Two processes that log three cells each into the workspace store at once (sys.argv: workspace, parent, k).
_CONCURRENT_LOGGER = (
    "import sys; from bench.runner.tracking import Tracker, default_tracking_uri\n"
    "t = Tracker(default_tracking_uri(sys.argv[1]), 'demo')\n"
    "for i in range(3):\n"
    "    assert t.log_cell(sys.argv[2], 'P' + sys.argv[3], {'fold': i, 'seed': 0, 'trick.warmup': True},\n"
    "                      {'dice_et': 0.5}, [], {}, {})\n"
    "assert t.failures == 0, t.last_error\n"
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Start the plain server; fill a default SQLite workspace meanwhile; then start `bench ui` on it and two
    concurrent cell loggers. Tests wait for what they use, so the slow starts overlap."""
    server = _MlflowServer(tmp_path_factory.mktemp("mlflow_server"))
    ui: _BenchUi | None = None
    loggers: list[subprocess.Popen[bytes]] = []
    try:
        workspace = tmp_path_factory.mktemp("workspace")
        tracker = Tracker(default_tracking_uri(workspace), "demo")  # default artifact root
        parent, children = _log_cells(tracker, workspace)
        ui = _BenchUi(workspace)
        loggers = [subprocess.Popen([sys.executable, "-c", _CONCURRENT_LOGGER, str(workspace), parent, str(k)],
                                    env=_env()) for k in range(2)]
        yield {"server": server, "ui": ui, "workspace": workspace, "tracker": tracker, "parent": parent,
               "children": children, "loggers": loggers}
    finally:
        for proc in loggers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        groups: list[Any] = [server.proc]
        if ui is not None:
            groups.append(ui.proc)
        if ui is not None and ui.proc.poll() is None:
            ui.proc.send_signal(signal.SIGINT)
            try:
                ui.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                ui.proc.kill()
        _stop_group(server.proc)
        leftovers = subprocess.run(["pgrep", "-f", "--", f"--port {server.port}"], capture_output=True,
                                   text=True).stdout
        assert not leftovers.strip(), f"mlflow server processes left behind: {leftovers}"
        for proc in groups:
            assert proc.poll() is not None


# ---------------------------------------------------------------- pure helpers (fast)


def test_redact_url_hides_passwords_only() -> None:
    assert redact_url("postgresql://user:pass@host/db") == "postgresql://user:***@host/db"
    assert redact_url("postgresql+psycopg://u:p%40ss@h:5432/db") == "postgresql+psycopg://u:***@h:5432/db"
    assert redact_url("failed: mysql://a:b@c/d and http://x:1@y") == "failed: mysql://a:***@c/d and http://x:***@y"
    assert redact_url("https://h/x?user=a&password=s3cret&x=1") == "https://h/x?user=a&password=***&x=1"
    for same in ("sqlite:////tmp/a.db", "postgresql://user@host/db", "http://127.0.0.1:5000/#/runs"):
        assert redact_url(same) == same
    assert redact_url("postgresql://u:p@ss@h/db") == "postgresql://u:***@h/db"  # an unescaped '@' in it


def test_one_redact_url_for_the_store_and_the_mirror() -> None:
    from bench.store import redact_url as store_redact

    assert store_redact is redact_url


def test_cell_params_and_run_name() -> None:
    p = cell_params(["warmup", "fuse"], ["warmup", "fixed_trick"], {"warmup": {"epochs": 5}, "fuse": {"k": 3}},
                    {"iterations": 50}, fold=2, seed=1)
    assert p == {"trick.warmup": 1, "trick.fuse": 0, "trick.fixed_trick": 1, "trick_param.warmup.epochs": 5,
                 "budget.iterations": 50, "fold": 2, "seed": 1}
    assert cell_run_name("BL+warmup", 2, 1) == "BL+warmup f2 s1"
    assert cell_run_name("BL") == "BL"


# ---------------------------------------------------------------- real mlflow server over HTTP


@pytest.mark.slow
def test_cells_logged_to_a_real_server_are_nested_with_params_metrics_and_artifacts(
        stack: dict[str, Any], tmp_path: Path) -> None:
    url = stack["server"].wait()
    api = url + "/api/2.0/mlflow"
    tracker = Tracker(url, "bench-http")  # artifacts proxied by the server (mlflow-artifacts:/)
    parent, children = _log_cells(tracker, tmp_path)
    plot = tmp_path / "effects.png"
    plot.write_bytes(b"\x89PNG\r\n\x1a\n fake png")
    assert tracker.log_parent_artifacts(parent, [plot], artifact_path="plots")

    exp_id = _get(f"{api}/experiments/get-by-name?experiment_name=bench-http")["experiment"]["experiment_id"]
    everything = _post(f"{api}/runs/search", {"experiment_ids": [exp_id], "max_results": 100})["runs"]
    assert len(everything) == 4  # the parent and one child per cell
    found = _post(f"{api}/runs/search", {"experiment_ids": [exp_id],
                                         "filter": f"tags.mlflow.parentRunId = '{parent}'"})["runs"]
    by_id = {r["info"]["run_id"]: r for r in found}
    assert sorted(by_id) == sorted(children)

    for child, (label, enabled, fold, metrics) in zip(children, CELLS):
        run = by_id[child]
        params = {p["key"]: p["value"] for p in run["data"]["params"]}
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        final = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        assert {k: params[k] for k in params if k.startswith("trick.")} == {
            f"trick.{f}": "1" if f in enabled else "0" for f in FACTORS}
        assert params["fold"] == str(fold) and params["seed"] == "7"
        assert params["budget.iterations"] == "100" and params["budget.patch"] == "[32, 32, 32]"
        assert ("trick_param.warmup.epochs" in params) == ("warmup" in enabled)
        assert "trick_param.fuse.k" not in params  # parameters of a disabled trick are not logged
        assert tags["label"] == label and tags["mlflow.parentRunId"] == parent and tags["cell"] == str(CELLS.index(
            (label, enabled, fold, metrics)))
        assert tags["mlflow.runName"] == run["info"]["run_name"] == f"{label} f{fold} s7"
        assert run["info"]["status"] == "FINISHED"
        for key, value in metrics.items():
            assert final[key] == pytest.approx(value)

        hist = _get(f"{api}/metrics/get-history?run_id={child}&metric_key=val_dice_wt")["metrics"]
        offset = 0.1 * CELLS.index((label, enabled, fold, metrics))
        assert [(m["step"], round(m["value"], 9)) for m in hist] == [
            (50, round(offset + 0.12, 9)), (100, round(offset + 0.36, 9))]
        loss = _get(f"{api}/metrics/get-history?run_id={child}&metric_key=train_loss")["metrics"]
        assert sorted((m["step"], m["value"]) for m in loss) == [(25, 1.0), (50, 0.5), (75, pytest.approx(1 / 3)),
                                                                 (100, 0.25)]
        tc = _get(f"{api}/metrics/get-history?run_id={child}&metric_key=val_dice_tc")["metrics"]
        assert [m["step"] for m in tc] == [50, 100]  # the NaN rows were skipped

        files = _get(f"{api}/artifacts/list?run_id={child}")["files"]
        assert {f["path"] for f in files} == {"case_metrics.csv", "config.json", "learning_curve.png"}
        csv_text = urllib.request.urlopen(
            f"{url}/get-artifact?path=case_metrics.csv&run_uuid={child}", timeout=30).read().decode()
        assert f",ET,{metrics['dice_et']}" in csv_text
        png = urllib.request.urlopen(f"{url}/get-artifact?path=learning_curve.png&run_uuid={child}", timeout=30).read()
        assert png.startswith(b"\x89PNG") and len(png) > 5000
        config = json.loads(urllib.request.urlopen(
            f"{url}/get-artifact?path=config.json&run_uuid={child}", timeout=30).read())
        assert config == {"label": label, "tricks": enabled, "fold": fold}

    parent_run = _get(f"{api}/runs/get?run_id={parent}")["run"]
    assert parent_run["info"]["status"] == "FINISHED"
    assert {t["key"]: t["value"] for t in parent_run["data"]["tags"]}["mlflow.runName"] == "launch 1"
    plots = _get(f"{api}/artifacts/list?run_id={parent}&path=plots")["files"]
    assert [f["path"] for f in plots] == ["plots/effects.png"]
    # The password never reached the server, in params or tags.
    dumped = json.dumps(parent_run)
    assert SECRET not in dumped and "postgresql://bench:***@db.example:5432/bench" in dumped
    assert tracker.latest_parent() == parent


# ---------------------------------------------------------------- default SQLite workspace store


@pytest.mark.slow
def test_default_workspace_store_is_sqlite_with_artifacts_on_disk(stack: dict[str, Any]) -> None:
    from mlflow import MlflowClient

    ws: Path = stack["workspace"]
    assert default_tracking_uri(ws) == f"sqlite:///{ws.resolve()}/.bench/mlflow.db"
    assert (ws / ".bench" / "mlflow.db").is_file()
    client = MlflowClient(default_tracking_uri(ws))
    exp = client.get_experiment_by_name("demo")
    assert exp is not None
    assert exp.artifact_location == (Path(default_artifact_root(ws)) / "demo").as_uri()
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{stack['parent']}'")
    # The concurrent logger processes of `stack` add children labelled P0/P1 at their own pace: leave them out.
    runs = [r for r in runs if not r.data.tags["label"].startswith("P")]
    assert sorted(r.info.run_id for r in runs) == sorted(stack["children"])
    for run in runs:
        label = run.data.tags["label"]
        assert run.data.params["trick.warmup"] == ("1" if label == "BL+warmup" else "0")
        on_disk = Path(default_artifact_root(ws)) / "demo" / run.info.run_id / "artifacts"
        assert sorted(p.name for p in on_disk.iterdir()) == ["case_metrics.csv", "config.json", "learning_curve.png"]
    assert [m.step for m in client.get_metric_history(stack["children"][1], "val_dice_et")] == [50, 100]
    parent = client.get_run(stack["parent"])
    assert parent.data.params["results"] == "postgresql://bench:***@db.example:5432/bench"
    assert parent.data.tags["storage"] == "postgresql://bench:***@db.example/optuna"


@pytest.mark.slow
def test_concurrent_processes_log_cells_into_one_sqlite_store(stack: dict[str, Any]) -> None:
    # The two logger processes started by `stack` ran while `bench ui` was starting on the same store.
    assert [p.wait(timeout=180) for p in stack["loggers"]] == [0, 0]
    tracker: Tracker = stack["tracker"]
    client = tracker._get_client()
    runs = client.search_runs([tracker.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{stack['parent']}' and tags.label LIKE 'P%'")
    assert sorted(r.info.run_name for r in runs) == sorted(f"P{k} f{i} s0" for k in range(2) for i in range(3))


# ---------------------------------------------------------------- failures never fail a cell


@pytest.mark.slow
def test_unreachable_server_warns_once_and_never_raises(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    port = _free_port()  # closed: nothing listens there
    tracker = Tracker(f"http://user:{SECRET}@127.0.0.1:{port}", "nowhere")
    csv_path = tmp_path / "c.csv"
    csv_path.write_text("a\n1\n")
    start = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parent = tracker.start_parent("launch", {"a": 1}, {})
        child = tracker.log_cell(parent, "BL", {"fold": 0}, {"dice_et": 0.5}, _curve(0), {"c.csv": csv_path}, {})
        ended = tracker.end_parent(parent)
        logged = tracker.log_parent_artifacts("some-run-id", [csv_path])
    assert (parent, child, ended, logged) == ("", "", False, False)
    assert time.monotonic() - start < 60
    ours = [w for w in caught if "MLflow logging" in str(w.message)]
    assert len(ours) == 1 and issubclass(ours[0].category, RuntimeWarning)
    message = str(ours[0].message)
    assert f"127.0.0.1:{port}" in message and SECRET not in message and "user:***@" in message
    assert tracker.failures == 1 and "start_parent" in (tracker.last_error or "")


@pytest.mark.slow
def test_missing_artifact_is_reported_but_the_cell_is_still_logged(stack: dict[str, Any], tmp_path: Path) -> None:
    tracker = Tracker(default_tracking_uri(stack["workspace"]), "demo")
    with pytest.warns(RuntimeWarning, match="artifact file"):
        child = tracker.log_cell(stack["parent"], "MISSING", {"fold": 0, "seed": 0}, {"dice_wt": 0.9}, [],
                                 {"case_metrics.csv": tmp_path / "absent.csv"}, {})
    assert child and tracker.failures == 1
    run = tracker._get_client().get_run(child)
    assert run.data.metrics["dice_wt"] == 0.9 and run.info.status == "FINISHED"


# ---------------------------------------------------------------- bench ui


def test_bench_ui_without_store_says_run_first(tmp_path: Path, run_cli: Any) -> None:
    result = run_cli("ui", "--workspace", tmp_path, "--port", "0")
    assert result.code == 2
    assert "run `bench run` first" in result.err and str(tmp_path) in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_bench_ui_port_taken(tmp_path: Path, run_cli: Any) -> None:
    (tmp_path / ".bench").mkdir()
    (tmp_path / ".bench" / "mlflow.db").write_bytes(b"")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("ui", "--workspace", tmp_path, "--port", port)
    assert result.code == 2 and f"port {port}" in result.err and "taken" in result.err


@pytest.mark.slow
def test_bench_ui_serves_the_workspace_and_stops_on_ctrl_c(stack: dict[str, Any]) -> None:
    ui: _BenchUi = stack["ui"]
    url = ui.url()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
    with urllib.request.urlopen(url + "/", timeout=30) as resp:
        assert resp.status == 200 and b"<html" in resp.read().lower()
    api = url + "/api/2.0/mlflow"
    exp_id = _get(f"{api}/experiments/get-by-name?experiment_name=demo")["experiment"]["experiment_id"]
    runs = _post(f"{api}/runs/search", {"experiment_ids": [exp_id],
                                        "filter": f"tags.mlflow.parentRunId = '{stack['parent']}'",
                                        "max_results": 100})["runs"]
    assert set(stack["children"]) <= {r["info"]["run_id"] for r in runs}
    files = _get(f"{api}/artifacts/list?run_id={stack['children'][0]}")["files"]
    assert {f["path"] for f in files} == {"case_metrics.csv", "config.json", "learning_curve.png"}
    port = urllib.parse.urlparse(url).port
    ui.proc.send_signal(signal.SIGINT)
    assert ui.proc.wait(timeout=60) == 0
    assert not subprocess.run(["pgrep", "-f", "--", f"--port {port}"], capture_output=True, text=True).stdout.strip()
