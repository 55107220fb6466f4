"""Honest run states and concurrent writers on one SQLite store (part of the reliability issue)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import FAST, experiment_runs, start_train, store_uri


def _start(folder, *overrides: str) -> subprocess.Popen:
    return start_train(folder, *FAST, *overrides)


def test_four_concurrent_runs_on_a_fresh_store_all_finish_with_their_metrics(tmp_path):
    procs = [_start(tmp_path, f"seed={seed}", "trainer.epochs=2") for seed in range(4)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    client, runs = MlflowClient(store_uri(tmp_path)), experiment_runs(tmp_path)
    assert sorted(r.data.params["seed"] for r in runs) == ["0", "1", "2", "3"]
    for run in runs:
        assert run.info.status == "FINISHED"
        assert len(client.get_metric_history(run.info.run_id, "val/acc")) == 2
        assert "test/acc" in run.data.metrics


def _wait_for_a_running_run(db, seconds: float = 300) -> bool:
    """Poll with plain sqlite3: an MLflow client would race the schema creation it watches."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(db) as con:
                if con.execute("select count(*) from runs where status='RUNNING'").fetchone()[0]:
                    return True
        except sqlite3.Error:  # not created yet, or mid-migration
            pass
        time.sleep(1)
    return False


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, "KILLED"),
                                             (signal.SIGTERM, "KILLED")])
def test_an_interrupted_run_ends_killed_not_running(tmp_path, sig, status):
    proc = _start(tmp_path, "trainer.epochs=200")
    try:
        assert _wait_for_a_running_run(tmp_path / "outputs" / "mlflow.db"), "never started"
        time.sleep(2)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:  # never leave a 200-epoch run behind when an assertion fails
        proc.kill()
        proc.wait()
    # one line, as a shell reports an interrupted command (128 + SIGINT), never a traceback
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("xferlab: interrupted"), err
    [run] = experiment_runs(tmp_path)
    assert run.info.status == status
