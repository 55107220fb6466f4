"""Runs left RUNNING by a process that died (SIGKILL, OOM, power): each run names its host and
process in tags, and a run whose process is gone from this host is stale, not a result."""

from __future__ import annotations

import os
import socket
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

HOST_TAG, PID_TAG = "xferlab.host", "xferlab.pid"  # which process owns a RUNNING run


def owner() -> dict[str, str]:
    """Tags naming this process: a run RUNNING whose process is gone was killed (SIGKILL, OOM,
    power) and is found by `stale_runs`."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


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


def warn_stale(client: MlflowClient, experiment: str) -> None:
    """One warning line when the experiment holds runs whose process died while RUNNING."""
    found = client.get_experiment_by_name(experiment)
    stale = stale_runs(client, [found.experiment_id]) if found else []
    if stale:
        ids = ", ".join(r.info.run_id for r in stale[:3]) + (", …" if len(stale) > 3 else "")
        print(f"xferlab: warning: {len(stale)} run(s) in experiment {experiment!r} are RUNNING "
              f"but their process is gone ({ids}): they are not results; `xferlab runs --stale` "
              "lists them, `xferlab train --resume <run id>` continues one", file=sys.stderr)
