"""Resumable checkpoints: everything a run needs to continue as if it had never stopped.

A checkpoint holds the model, the optimizer, the best-validation weights, every epoch's
metrics, the step, and the RNG states (the shuffling generator and torch's global one), plus the
resolved config and the MLflow run id. The schedule is a pure function of the step, so it needs
no state. Files are written atomically and read with `weights_only=True` (no pickled code).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from xferlab.files import atomic
from xferlab.tracking import HOST_TAG, PID_TAG, alive

if TYPE_CHECKING:  # MLflow itself is imported by whoever makes the client
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

CHECKPOINT_DIR = Path("outputs/checkpoints")
PATH_TAG = "checkpoint.path"  # where a run's checkpoint is, for `--resume <run id>`
DIGEST_TAG = "config.digest"  # what a run computes, for `trainer.resume=true`


class CheckpointError(ValueError):
    """A run cannot be resumed (no checkpoint, unreadable file): one line for the user."""


def path_for(run_id: str) -> Path:
    return (CHECKPOINT_DIR / f"{run_id}.pt").resolve()


def save(path: Path, state: dict[str, Any]) -> None:
    """Write atomically: a kill mid-write leaves the previous checkpoint intact."""
    with atomic(path) as tmp:
        torch.save(state, tmp)


def load(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise CheckpointError(f"checkpoint {path} does not exist: the run finished (its "
                              "checkpoint is removed then) or was started elsewhere") from e
    except (RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(f"checkpoint {path} cannot be read ({str(e).splitlines()[0]}): "
                              "start the run again") from e


def for_run(client: MlflowClient, run_id: str) -> Path:
    """The checkpoint of a logged run, or CheckpointError saying why there is none."""
    try:
        run = client.get_run(run_id)
    except Exception as e:  # MlflowException for an unknown id, whatever the store
        raise CheckpointError(f"--resume {run_id}: no such run in {client.tracking_uri}: copy "
                              "the id from `xferlab runs --stale` or the MLflow UI") from e
    if run.info.status == "FINISHED":
        raise CheckpointError(f"--resume {run_id}: the run is FINISHED: nothing to resume")
    if run.info.status == "RUNNING" and alive(run):
        raise CheckpointError(f"--resume {run_id}: the run is still RUNNING (pid "
                              f"{run.data.tags.get(PID_TAG)} on {run.data.tags.get(HOST_TAG)}): "
                              "stop it first")
    if PATH_TAG not in run.data.tags:
        raise CheckpointError(f"--resume {run_id}: the run saved no checkpoint (it stopped "
                              "before its first epoch ended, or ran with "
                              "trainer.checkpoint_every=0)")
    return Path(run.data.tags[PATH_TAG])


def resumable(client: MlflowClient, experiment_id: str, digest: str) -> Run | None:
    """The newest unfinished run of this config whose checkpoint is here, and not running."""
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`{DIGEST_TAG}` = '{digest}' and "
        "attributes.status != 'FINISHED'", order_by=["attributes.start_time DESC"])
    for run in runs:
        path = run.data.tags.get(PATH_TAG)
        if path and Path(path).is_file() and not alive(run):
            return run
    return None


def finished(client: MlflowClient, experiment_id: str, digest: str) -> Run | None:
    """The newest FINISHED run of this config, if any: a resumed sweep skips its job."""
    runs = client.search_runs(
        # with a test result: a pruned search trial also ends FINISHED
        [experiment_id], filter_string=f"tags.`{DIGEST_TAG}` = '{digest}' and "
        "attributes.status = 'FINISHED' and metrics.`test/acc` >= 0",
        order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None
