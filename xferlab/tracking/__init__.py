"""MLflow conventions (DESIGN.md §6): store, experiment, run names, params, tags, status."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from functools import cache
from pathlib import Path
from typing import Any

import mlflow
from filelock import FileLock
from mlflow.entities import Metric, RunStatus
from mlflow.tracking import MlflowClient

PARENT_ENV = "XFERLAB_PARENT_RUN_ID"  # set by the CLI for the jobs of a multirun


def resolve_uri(uri: str | None) -> str:
    """`tracking.uri`, else MLFLOW_TRACKING_URI, else the project's SQLite store under outputs/."""
    if uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{Path('outputs/mlflow.db').resolve()}"


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


@contextmanager
def run(experiment_id: str, *, name: str, tags: dict[str, str],
        parent_run_id: str | None = None) -> Iterator[mlflow.ActiveRun]:
    """A run that always ends honestly: FINISHED, FAILED (traceback artifact) or KILLED."""
    signal.signal(signal.SIGTERM, _interrupt)  # pre-emption and `kill` end the run KILLED too
    active = mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=tags,
                              parent_run_id=parent_run_id)
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


def start_parent(uri: str | None, experiment: str, *, name: str, tags: dict[str, str]) -> str:
    """Open the parent run of a sweep; the jobs find it through PARENT_ENV."""
    experiment_id = setup(uri, experiment)
    parent = MlflowClient().create_run(experiment_id, run_name=name, tags=tags)
    os.environ[PARENT_ENV] = parent.info.run_id
    return parent.info.run_id


def end_parent(run_id: str, status: str) -> None:
    MlflowClient().set_terminated(run_id, status)


def log_params(resolved: Mapping[str, Any], extra: Mapping[str, Any]) -> None:
    """The flattened resolved config (dotted keys) plus run facts that are not config."""
    mlflow.log_params({**flatten(resolved), **extra})
