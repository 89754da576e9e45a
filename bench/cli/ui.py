"""``bench ui``: the MLflow UI over the workspace's MLflow store, on 127.0.0.1, lean (one worker).

Runs ``mlflow server`` in its own process group with the workspace's ``sqlite:///.bench/mlflow.db`` and
``.bench/mlartifacts``, waits until it answers, prints its URL, the direct URL of each experiment's runs view
and the compare URL of the latest launch's cells (the UI's start page is not the runs), and stays in the
foreground; Ctrl-C stops the server (and every process it started) and exits 0. The server's own log goes to
``.bench/mlflow-ui.log``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["register"]

STARTUP_TIMEOUT_S = 180.0  # a cold start on a busy 2-core machine takes ~30 s
LOG_NAME = "mlflow-ui.log"
COMPARE_MAX_RUNS = 100  # the compare page grows slow beyond this


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "ui",
        help="open the MLflow UI over this workspace's runs (127.0.0.1, one worker)",
        description=(
            "Start the MLflow UI over the workspace's MLflow store (.bench/mlflow.db, .bench/mlartifacts),\n"
            "print its URL and keep it running until Ctrl-C. Compare trick combinations in an experiment's\n"
            "chart and compare views (parallel coordinates of trick.* params against dice_*)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--workspace", default=".", metavar="DIR",
                        help="folder that holds .bench/ (default: the current folder)")
    parser.add_argument("--port", type=int, default=5000, metavar="N",
                        help="port to listen on (default: 5000; 0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to bind (default: 127.0.0.1, this machine only)")
    parser.set_defaults(handler=_handler)


def _port_is_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: ignore TIME_WAIT
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    useful = [line.strip() for line in text if line.strip()]
    return " | ".join(useful[-lines:])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server and everything it spawned (uvicorn workers): its whole process group."""
    if proc.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _api(url: str, endpoint: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(f"{url}/api/2.0/mlflow/{endpoint}", data=json.dumps(body).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def runs_url(url: str, experiment_id: str, view_key: str | None = None) -> str:
    """The runs view of one experiment (the UI's own start page shows neither runs nor Dice), opened on the
    stored view ``view_key`` when given."""
    query = f"?viewStateShareKey={urllib.parse.quote(view_key)}" if view_key else ""
    return f"{url}/#/experiments/{experiment_id}/runs{query}"


def compare_url(url: str, experiment_id: str, run_ids: list[str]) -> str:
    """MLflow's compare page for ``run_ids`` (parallel coordinates, contour and scatter plots)."""
    runs = urllib.parse.quote(json.dumps(run_ids, separators=(",", ":")))
    exps = urllib.parse.quote(json.dumps([experiment_id], separators=(",", ":")))
    return f"{url}/#/compare-runs?runs={runs}&experiments={exps}"


def workspace_urls(url: str) -> list[tuple[str, str]]:
    """(what, URL) lines for the server at ``url``: each bench experiment's runs view, then the compare page
    of the cells of the latest launch that ran any (asked over the server's REST API)."""
    from bench.runner.tracking import KIND_TAG, RUNS_VIEW_KEY, RUNS_VIEW_TAG

    exps = _api(url, "experiments/search", {"max_results": 1000}).get("experiments", [])
    ours = [e for e in exps if any(t.get("key") == "bench.spec" for t in e.get("tags", []))]
    ours = ours or [e for e in exps if e.get("name") != "Default"]
    out = []
    for e in ours:
        view = RUNS_VIEW_KEY if any(t.get("key") == RUNS_VIEW_TAG for t in e.get("tags", [])) else None
        out.append((f"runs of {e['name']}", runs_url(url, str(e["experiment_id"]), view)))
    if not ours:
        return out
    launches = _api(url, "runs/search", {
        "experiment_ids": [str(e["experiment_id"]) for e in ours], "filter": f"tags.`{KIND_TAG}` = 'launch'",
        "order_by": ["attributes.start_time DESC"], "max_results": 10}).get("runs", [])
    for launch in launches:
        run_id = launch["info"]["run_id"]
        cells = _api(url, "runs/search", {
            "experiment_ids": [launch["info"]["experiment_id"]], "max_results": COMPARE_MAX_RUNS,
            "filter": f"tags.`mlflow.parentRunId` = '{run_id}'"}).get("runs", [])
        if cells:
            name = launch["info"].get("run_name") or run_id
            out.append((f"compare the {len(cells)} cells of {name}",
                        compare_url(url, launch["info"]["experiment_id"], [r["info"]["run_id"] for r in cells])))
            break
    return out


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _handler(args: argparse.Namespace) -> int:
    from bench.errors import StoreError
    from bench.runner.tracking import MLFLOW_DB, STORE_DIR, default_artifact_root, default_tracking_uri

    workspace = Path(args.workspace).expanduser().resolve()
    if workspace.name == STORE_DIR and (workspace / MLFLOW_DB).is_file():
        workspace = workspace.parent  # `--workspace .bench` means the folder that holds it
    store_dir = workspace / STORE_DIR
    if not (store_dir / MLFLOW_DB).is_file():
        raise StoreError(
            f"no MLflow store in {store_dir} (no {MLFLOW_DB}): run `bench run` first, "
            "or pass --workspace DIR naming the folder that holds .bench/"
        )
    host: str = args.host
    port: int = args.port
    if not 0 <= port <= 65535:
        raise StoreError(f"--port {port} is not a port number (accepted: 1-65535, or 0 for a free port)")
    if port == 0:
        port = _free_port(host)
    elif not _port_is_free(host, port):
        raise StoreError(f"port {port} on {host} is taken: choose another with --port N, or --port 0 for a free one")

    url_host = f"[{host}]" if ":" in host else host
    url = f"http://{url_host}:{port}"
    log_path = store_dir / LOG_NAME
    cmd = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", default_tracking_uri(workspace),
        "--artifacts-destination", default_artifact_root(workspace),
        "--host", host, "--port", str(port), "--workers", "1",
    ]
    env = dict(os.environ)
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")  # else 7 background job consumers start

    # SIGINT explicitly too: a shell starting us in the background would otherwise leave it ignored.
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    print(f"starting the MLflow UI over {store_dir} (log: {log_path}) ...", file=sys.stderr, flush=True)
    with log_path.open("ab") as log:
        # Own process group: Ctrl-C reaches only us, and we stop the server and its children together.
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not _answers(url):
            if proc.poll() is not None:
                raise StoreError(f"the MLflow server exited with status {proc.returncode} before answering on "
                                 f"{url}; see {log_path}: {_log_tail(log_path)}")
            if time.monotonic() > deadline:
                raise StoreError(f"the MLflow server did not answer on {url} within {STARTUP_TIMEOUT_S:.0f} s; "
                                 f"see {log_path}")
            time.sleep(0.25)
        print(f"MLflow UI: {url}  (Ctrl-C to stop)", flush=True)
        try:
            for what, link in workspace_urls(url):
                print(f"  {what}: {link}", flush=True)
        except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
            print(f"bench ui: could not list the experiments ({exc}); open {url}", file=sys.stderr, flush=True)
        while proc.poll() is None:
            time.sleep(0.5)
        raise StoreError(f"the MLflow server stopped unexpectedly (status {proc.returncode}); see {log_path}: "
                         f"{_log_tail(log_path)}")
    except KeyboardInterrupt:
        print("stopping the MLflow UI", file=sys.stderr, flush=True)
        return 0
    finally:
        _stop(proc)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
