"""`xferlab ui`: the MLflow UI on the project's store, on loopback, lean, and stopped whole."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import psutil  # with pytest-xdist (dev extras)
from mlflow.tracking import MlflowClient

from tests._servers import free_port
from tests.conftest import store_uri
from xferlab import cli


def _api(url: str, endpoint: str, body: dict | None = None) -> dict:
    """MLflow's REST API: GET without a body, POST with one."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{url}/api/2.0/mlflow/{endpoint}", data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def _wait_until_it_answers(url: str, ui: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            assert ui.poll() is None, f"xferlab ui exited {ui.returncode}"
            assert time.monotonic() < deadline, "xferlab ui did not answer"
            time.sleep(0.25)


def test_ui_serves_the_project_store_and_ctrl_c_stops_every_process(project):
    (project / "outputs").mkdir()
    client = MlflowClient(store_uri(project))
    experiment = client.create_experiment(
        "study", artifact_location=(project / "outputs" / "mlartifacts").as_uri())
    # the last val/acc is not the best: only best/val_acc sorts the runs right in the UI
    begun = int(time.time() * 1000)
    for i, (name, accs) in enumerate((("r0", [0.7, 0.6]), ("r1", [0.9, 0.5]), ("r2", [0.8, 0.7]))):
        run = client.create_run(experiment, run_name=name, start_time=begun + i).info.run_id
        for epoch, acc in enumerate(accs, start=1):
            client.log_metric(run, "val/acc", acc, step=epoch)
        client.log_metric(run, "best/val_acc", max(accs))
        client.set_terminated(run)
    newest = run  # r2, started last

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    log = project / "ui.log"
    with log.open("w") as out:  # a file, not a pipe: request logs can never block the server
        ui = subprocess.Popen([sys.executable, "-m", "xferlab.cli", "ui", "--port", str(port)],
                              cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT)
    started = []
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_until_it_answers(url, ui)
        assert url in log.read_text().splitlines()[0]  # the URL comes first
        found = _api(url, "experiments/get-by-name?experiment_name=study")
        runs = _api(url, "runs/search", {
            "experiment_ids": [found["experiment"]["experiment_id"]],
            "order_by": ["metrics.`best/val_acc` DESC"]})["runs"]
        assert [r["info"]["run_name"] for r in runs] == ["r1", "r2", "r0"]
        # links that open in the model-training mode: the experiment's runs, the newest run
        mode = "?workflowType=machine_learning"
        deadline = time.monotonic() + 60
        while f"/runs/{newest}{mode}" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.25)
        assert f"{url}/#/experiments/{experiment}/runs{mode}" in log.read_text()
        assert f"{url}/#/experiments/{experiment}/runs/{newest}{mode}" in log.read_text()

        started = psutil.Process(ui.pid).children(recursive=True)
        commands = [" ".join(p.cmdline()) for p in started]
        servers = [p for p in started if p.cmdline()[1:3] == ["-m", "uvicorn"]]
        assert len(servers) == 1 and "--workers 1" in " ".join(servers[0].cmdline())
        assert not any("huey" in c for c in commands), commands  # no job runner
        listening = {c.laddr.ip for c in servers[0].net_connections("tcp")
                     if c.status == psutil.CONN_LISTEN}
        assert listening == {"127.0.0.1"}
    finally:
        started = started or psutil.Process(ui.pid).children(recursive=True)
        ui.send_signal(signal.SIGINT)  # what Ctrl-C in its terminal sends
        code = ui.wait(timeout=60)
        _, alive = psutil.wait_procs(started, timeout=10)
        for process in alive:  # leave nothing behind even when the test fails
            process.kill()
    assert code == 0
    assert started and alive == []
    assert "Traceback" not in log.read_text()  # a graceful stop
    assert " HTTP/1.1\" 200" not in log.read_text()  # no access-log line per request


def test_ui_refuses_a_taken_port_and_a_server_uri(project, capsys):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert cli.main(["ui", "--port", str(port), "--uri", "sqlite:///unused.db"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xferlab: error: cannot listen on 127.0.0.1:") and "--port" in err
    assert cli.main(["ui", "--uri", "http://127.0.0.1:5000"]) == 2
    assert "is a tracking server" in capsys.readouterr().err
