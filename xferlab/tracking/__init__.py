"""MLflow conventions (DESIGN.md §6): store, experiment, run names, params, tags, status.

MLflow is imported where it is used, not here: importing it and opening its store is a run's
largest fixed cost (~2 s on a laptop core), and `run` pays it on a thread while training starts.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import subprocess
import time
import traceback
from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from xferlab.tracking._launch import Launch as Launch  # run names and tags
from xferlab.tracking._links import EXPERIMENT_KIND, links, ui_url
from xferlab.tracking._links import run_link as run_link  # links into the UI
from xferlab.tracking._links import runs_link as runs_link
from xferlab.tracking._signals import interrupt_pending as interrupt_pending
from xferlab.tracking._signals import pending
from xferlab.tracking._signals import sigterm_interrupts as sigterm_interrupts
from xferlab.tracking._stale import HOST_TAG as HOST_TAG  # which process owns a RUNNING run
from xferlab.tracking._stale import PID_TAG as PID_TAG
from xferlab.tracking._stale import alive as alive
from xferlab.tracking._stale import owner, warn_stale
from xferlab.tracking._stale import stale_runs as stale_runs

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

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
    import mlflow
    from mlflow.tracking import MlflowClient

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
            if EXPERIMENT_KIND[0] not in found.tags:  # made by hand, or by an older xferlab
                client.set_experiment_tag(found.experiment_id, *EXPERIMENT_KIND)
            return found.experiment_id
        artifacts = lock_path.parent / "mlartifacts" if lock_path else None
        # marked as model training: MLflow 3's UI shows its runs, not a GenAI overview
        return client.create_experiment(
            experiment, artifact_location=artifacts.resolve().as_uri() if artifacts else None,
            tags=dict([EXPERIMENT_KIND]),
        )


def ui_links(uri: str | None, run_id: str) -> dict[str, str]:
    """Links that open the run, its sweep's parent (if any) and its experiment's runs in the
    UI's model-training mode: of the tracking server, else of `xferlab ui` at its defaults."""
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    run = _client().get_run(run_id)
    return links(ui_url(resolve_uri(uri)), run.info.experiment_id, run_id,
                 run.data.tags.get(MLFLOW_PARENT_RUN_ID))


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


class OpenRun:
    """A run being opened on a thread; `run_id` waits until it is open (or raises why not)."""

    def __init__(self, opening: Future[str]):
        self._opening = opening

    @property
    def run_id(self) -> str:
        return self._opening.result()

    def run_id_if_open(self) -> str | None:
        """The run id; None when opening failed (its error is raised where it was asked for,
        or by the caller's own error, which must not be replaced by it)."""
        try:
            return self._opening.result()
        except Exception:  # noqa: BLE001 - see above
            return None


@contextmanager
def run(uri: str | None, experiment: str, *, name: str, tags: dict[str, str],
        parent_run_id: str | None = None, run_id: str | None = None,
        on_open: Callable[[str], None] | None = None) -> Iterator[OpenRun]:
    """A run that always ends honestly: FINISHED, FAILED (traceback artifact) or KILLED.

    It opens on a thread while the body goes on, so importing MLflow and opening the store
    overlap the first epoch instead of delaying the first step; `on_open(run_id)` logs there
    what the run starts with (params, inputs). With `run_id`, that run continues (resume)."""
    with sigterm_interrupts():  # pre-emption and `kill` end the run KILLED too
        pool = ThreadPoolExecutor(1, thread_name_prefix="xferlab-tracking")
        # the run starts now, not when the thread gets the store open: its duration and the
        # times of its metrics then count from the start of training
        started = int(time.time() * 1000)
        opened = OpenRun(pool.submit(_open, uri, experiment, name, tags, parent_run_id, run_id,
                                     on_open, started))
        pool.shutdown(wait=False)
        try:
            yield opened
        except StopRun as stop:
            if (open_id := opened.run_id_if_open()) is not None:
                set_tags(open_id, stop.tags)
                _end(open_id, "FINISHED")
            raise
        except KeyboardInterrupt:
            if (open_id := opened.run_id_if_open()) is not None:
                _end(open_id, "KILLED")
            raise
        except BaseException:
            if (open_id := opened.run_id_if_open()) is not None:
                _fail(open_id)
            raise
        else:
            if (swallowed := pending()) is not None:  # a Ctrl-C or SIGTERM Python swallowed
                _end(opened.run_id, "KILLED")
                raise KeyboardInterrupt(swallowed)
            _end(opened.run_id, "FINISHED")


_warned: set[str] = set()  # experiments checked for stale runs by this process


def _open(uri: str | None, experiment: str, name: str, tags: dict[str, str],
          parent_run_id: str | None, run_id: str | None,
          on_open: Callable[[str], None] | None, started: int | None = None) -> str:
    from mlflow.tracking.context import registry
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    experiment_id = setup(uri, experiment)
    # once per process; for a sweep's jobs (children) the sweep's launcher warns
    if run_id is None and parent_run_id is None and experiment not in _warned:
        _warned.add(experiment)
        warn_stale(_client(), experiment)
    tags = {**tags, **versions(), **owner()}
    resumed = run_id is not None
    if run_id is None:  # not resumed (`resumed` says the same, but mypy cannot see it)
        if parent_run_id is not None:
            tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
        # resolve_tags adds MLflow's own (user, source, git), as mlflow.start_run does
        run_id = _client().create_run(experiment_id, run_name=name, start_time=started,
                                      tags=registry.resolve_tags(tags)).info.run_id
    else:  # resumed: RUNNING again
        _client().update_run(run_id, status="RUNNING")
    try:  # the run exists: a failure from here on ends it here (the body never gets its id)
        if resumed:
            set_tags(run_id, tags)  # owned by this process now
        if on_open is not None:
            on_open(run_id)
    except BaseException:
        _fail(run_id)
        raise
    return run_id


def _end(run_id: str, status: str) -> None:
    _client().set_terminated(run_id, status)


def _fail(run_id: str) -> None:
    """End the run FAILED with the exception being handled as its traceback artifact."""
    _client().log_text(run_id, traceback.format_exc(), "error/traceback.txt")
    _end(run_id, "FAILED")


def _client() -> MlflowClient:
    from mlflow.tracking import MlflowClient

    return MlflowClient()


def set_tags(run_id: str, tags: Mapping[str, str]) -> None:
    from mlflow.entities import RunTag

    _client().log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def log_metrics(run_id: str, metrics: Mapping[str, float], step: int) -> None:
    """One batched call per epoch instead of one request per metric; a Ctrl-C lost in an
    epoch (see `sigterm_interrupts`) stops the run here."""
    interrupt_pending()
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    _client().log_batch(
        run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()]
    )


def log_missing_epochs(run_id: str, epochs: list[Mapping[str, float]]) -> set[int]:
    """Log the epochs (step = epoch, counted from 1 as the console counts them) that the run's
    `val/acc` history lacks; return the steps the run holds now."""
    logged = {m.step for m in _client().get_metric_history(run_id, "val/acc")}
    for epoch, metrics in enumerate(epochs, start=1):
        if epoch not in logged:
            log_metrics(run_id, metrics, step=epoch)
    return logged | set(range(1, len(epochs) + 1))


def start_parent(uri: str | None, experiment: str, *, name: str, tags: dict[str, str],
                 params: Mapping[str, str] | None = None) -> str:
    """Open the parent run of a sweep, with `params` (its swept keys and their values); its id
    is handed to the jobs (launch.jobs.Sweep)."""
    from mlflow.entities import Param

    experiment_id = setup(uri, experiment)
    parent = _client().create_run(experiment_id, run_name=name, tags={**tags, **owner()})
    if params:
        _client().log_batch(parent.info.run_id,
                            params=[Param(k, masked(str(v))) for k, v in params.items()])
    return parent.info.run_id


def end_parent(run_id: str, status: str) -> None:
    _end(run_id, status)


def masked(text: str) -> str:
    """`text` with the password of every URL in it replaced by ***: tracking and storage URLs
    (postgresql://user:secret@host/db) are logged, tagged and printed, their secrets never."""
    return _PASSWORD.sub(r"//\1:***@", text)


_PASSWORD = re.compile(r"//([^/:@\s]+):[^/@\s]+@")


def log_params(run_id: str, resolved: Mapping[str, Any], extra: Mapping[str, Any],
               leave_out: Collection[str] = ()) -> None:
    """The flattened resolved config (dotted keys) less `leave_out`, plus run facts that are not
    config, with passwords in URLs masked."""
    from mlflow.entities import Param

    params = {**{k: v for k, v in flatten(resolved).items() if k not in leave_out}, **extra}
    _client().log_batch(run_id, params=[Param(k, masked(str(v))) for k, v in params.items()])
