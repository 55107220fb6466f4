"""Shared fixtures: every test that writes runs gets its own project folder and MLflow store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from mlflow.entities import Run

REPO = Path(__file__).resolve().parents[1]
# A shell that starts the tests in the background (`make test &`) makes them ignore SIGINT, and
# the processes the tests interrupt would inherit that (exec keeps ignored signals ignored):
# catching it here gives every child the default back.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
# Small and fast: timm's tiny test ResNet on digits, one short epoch.
FAST = ["backbone=resnet_tiny", "data=digits", "trainer.epochs=1", "trainer.batch_size=32",
        "trainer.progress=false"]


@pytest.fixture(autouse=True)
def one_thread():
    """Tests run two at a time on two cores: more intra-op threads only oversubscribe them."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A fresh working folder (outputs/ and mlflow.db land here) with no tracking URI set."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def xferlab(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess, as a user would."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["OMP_NUM_THREADS"] = "1"  # see one_thread
    return subprocess.run([sys.executable, "-m", "xferlab.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def store_uri(folder: Path) -> str:
    return f"sqlite:///{folder / 'outputs' / 'mlflow.db'}"


def experiment_runs(where: Path | str, experiment: str | None = "xferlab",
                    filter_string: str = "") -> list[Run]:
    """Every run of `experiment` (of every experiment when None), deleted ones too, newest first
    as MLflow orders them; [] when the store or the experiment does not exist. `where` is a
    project folder (its store is outputs/mlflow.db, see store_uri) or a tracking URI."""
    from mlflow.entities import ViewType
    from mlflow.store.tracking import SEARCH_MAX_RESULTS_THRESHOLD
    from mlflow.tracking import MlflowClient

    if isinstance(where, Path):
        if not (where / "outputs" / "mlflow.db").exists():  # a client would create it
            return []
        where = store_uri(where)
    client = MlflowClient(where)
    if experiment is None:
        ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    else:
        found = client.get_experiment_by_name(experiment)
        ids = [found.experiment_id] if found else []
    if not ids:
        return []
    return list(client.search_runs(ids, filter_string, run_view_type=ViewType.ALL,
                                   max_results=SEARCH_MAX_RESULTS_THRESHOLD))


def start_train(folder: Path, *args: str) -> subprocess.Popen:
    """`xferlab train` in the background, to be interrupted or killed by the test."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["OMP_NUM_THREADS"] = "1"  # see one_thread
    return subprocess.Popen([sys.executable, "-m", "xferlab.cli", "train", *args], cwd=folder,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
