"""MLflow conventions (DESIGN.md §6): store, experiment, run names, params, tags, status."""

from __future__ import annotations

import logging
import os
import platform
import signal
import socket
import subprocess
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
from filelock import FileLock
from mlflow.entities import Metric, Run, RunStatus
from mlflow.tracking import MlflowClient

PARENT_ENV = "XFERLAB_PARENT_RUN_ID"  # set by the CLI for the jobs of a multirun
HOST_TAG, PID_TAG = "xferlab.host", "xferlab.pid"  # which process owns a RUNNING run


def resolve_uri(uri: str | None) -> str:
    """`tracking.uri`, else MLFLOW_TRACKING_URI, else the project's SQLite store under outputs/."""
    if uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{Path('outputs/mlflow.db').resolve()}"


def store_exists(uri: str) -> bool:
    """False for a SQLite store whose file is not there yet (opening it would create it)."""
    return not uri.startswith("sqlite:///") or Path(uri.removeprefix("sqlite:///")).is_file()


def setup(uri: str | None, experiment: str) -> str:
    """Point MLflow at the store and return the experiment id, creating both if needed."""
    uri = resolve_uri(uri)
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # schema-migration chatter
    local = uri.startswith("sqlite:///")
    lock_path = Path(uri.removeprefix("sqlite:///") + ".lock") if local else None
    if lock_path:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    # First use of a SQLite store runs schema migrations; concurrent first users race on them.
    with FileLock(lock_path) if lock_path else nullcontext():
        client = MlflowClient()
        found = client.get_experiment_by_name(experiment)
        if found is not None:
            return found.experiment_id
        artifacts = lock_path.parent / "mlartifacts" if lock_path else None
        return client.create_experiment(
            experiment, artifact_location=artifacts.resolve().as_uri() if artifacts else None
        )


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'optim': {'lr': 1e-3}} -> {'optim.lr': 1e-3}."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


@cache  # read once per process: a long sweep must not tag later jobs with a later HEAD
def git_tags(cwd: Path) -> dict[str, str]:
    """Commit and dirty flag of the checkout the launch started from ({} outside git)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              check=True).stdout.strip()
    try:
        return {"git.commit": git("rev-parse", "HEAD"),
                "git.dirty": str(bool(git("status", "--porcelain", "--untracked-files=no")))}
    except (OSError, subprocess.CalledProcessError):
        return {}


class StopRun(Exception):
    """Raised inside `run` to end it early yet FINISHED, with `tags` saying why (e.g. a pruned
    search trial: `tune.state=pruned`). It still propagates to whoever stopped the run."""

    def __init__(self, reason: str, tags: Mapping[str, str]):
        super().__init__(reason)
        self.tags = dict(tags)


def owner() -> dict[str, str]:
    """Tags naming this process: a run RUNNING whose process is gone was killed (SIGKILL, OOM,
    power) and is found by `stale_runs`."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


@cache
def versions() -> dict[str, str]:
    """The versions a result depends on, as tags: python and the libraries that compute it."""
    tags = {"versions.python": platform.python_version()}
    for package in ("xferlab", "torch", "torchvision", "timm", "mlflow", "numpy"):
        try:
            tags[f"versions.{package}"] = metadata.version(package)
        except metadata.PackageNotFoundError:
            tags[f"versions.{package}"] = "none"
    return tags


def alive(run: Run) -> bool:
    """Whether the run's process may still be running it (runs of other hosts count as alive:
    their processes cannot be seen from here)."""
    tags = run.data.tags
    if tags.get(HOST_TAG) != socket.gethostname() or not tags.get(PID_TAG, "").isdigit():
        return True
    try:
        os.kill(int(tags[PID_TAG]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def stale_runs(client: MlflowClient, experiment_ids: list[str]) -> list[Run]:
    """Runs left RUNNING by a process of this host that no longer exists."""
    running = client.search_runs(experiment_ids, filter_string="attributes.status = 'RUNNING'")
    return [r for r in running if not alive(r)]


@contextmanager
def run(experiment_id: str, *, name: str, tags: dict[str, str],
        parent_run_id: str | None = None, run_id: str | None = None) -> Iterator[mlflow.ActiveRun]:
    """A run that always ends honestly: FINISHED, FAILED (traceback artifact) or KILLED.
    With `run_id`, the existing run continues (a resumed run)."""
    signal.signal(signal.SIGTERM, _interrupt)  # pre-emption and `kill` end the run KILLED too
    active = mlflow.start_run(experiment_id=experiment_id, run_name=name,
                              tags={**tags, **versions(), **owner()},
                              parent_run_id=parent_run_id,
                              run_id=run_id)
    try:
        yield active
    except StopRun as stop:
        mlflow.set_tags(stop.tags)
        mlflow.end_run(RunStatus.to_string(RunStatus.FINISHED))
        raise
    except KeyboardInterrupt:
        mlflow.end_run(RunStatus.to_string(RunStatus.KILLED))
        raise
    except BaseException:
        mlflow.log_text(traceback.format_exc(), "error/traceback.txt")
        mlflow.end_run(RunStatus.to_string(RunStatus.FAILED))
        raise
    else:
        mlflow.end_run(RunStatus.to_string(RunStatus.FINISHED))


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def log_metrics(run_id: str, metrics: Mapping[str, float], step: int) -> None:
    """One batched call per epoch instead of one request per metric."""
    now = int(time.time() * 1000)
    MlflowClient().log_batch(
        run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()]
    )


def log_missing_epochs(run_id: str, epochs: list[Mapping[str, float]]) -> set[int]:
    """Log the epochs (step = index) that the run's `val/acc` history lacks; return the steps
    the run holds now."""
    logged = {m.step for m in MlflowClient().get_metric_history(run_id, "val/acc")}
    for epoch, metrics in enumerate(epochs):
        if epoch not in logged:
            log_metrics(run_id, metrics, step=epoch)
    return logged | set(range(len(epochs)))


def start_parent(uri: str | None, experiment: str, *, name: str, tags: dict[str, str]) -> str:
    """Open the parent run of a sweep; the jobs find it through PARENT_ENV."""
    experiment_id = setup(uri, experiment)
    parent = MlflowClient().create_run(experiment_id, run_name=name, tags={**tags, **owner()})
    os.environ[PARENT_ENV] = parent.info.run_id
    return parent.info.run_id


def end_parent(run_id: str, status: str) -> None:
    MlflowClient().set_terminated(run_id, status)


def log_params(resolved: Mapping[str, Any], extra: Mapping[str, Any]) -> None:
    """The flattened resolved config (dotted keys) plus run facts that are not config."""
    mlflow.log_params({**flatten(resolved), **extra})
