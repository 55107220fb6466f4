"""Resume after a crash: SIGKILL or Ctrl-C mid-run, then the same run goes on to the same end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from mlflow.tracking import MlflowClient

from tests.conftest import FAST, store_uri, xferlab

# four epochs long enough (~1 s each) that a kill right after the first checkpoint lands in
# epoch 2; `full` so that model, optimizer, BatchNorm statistics and RNG all matter
RUN = [*FAST, "trainer.epochs=4", "trainer.steps_per_epoch=80", "data.fraction=0.5", "seed=4"]


def _start(folder, *overrides: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen([sys.executable, "-m", "xferlab.cli", "train", *overrides],
                            cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _after_first_checkpoint(folder, proc: subprocess.Popen, sig: int) -> None:
    """Send `sig` as soon as the first epoch's checkpoint exists."""
    deadline = time.monotonic() + 180
    try:
        while not list((folder / "outputs" / "checkpoints").glob("*.pt")):
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no checkpoint was written"
            time.sleep(0.02)
        proc.send_signal(sig)
        proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()


def _only_run(folder):
    client = MlflowClient(store_uri(folder))
    [run] = client.search_runs([client.get_experiment_by_name("xferlab").experiment_id])
    return client, run


def _steps(client, run, key="val/acc") -> list[int]:
    return [m.step for m in client.get_metric_history(run.info.run_id, key)]


def test_sigkill_in_epoch_2_then_resume_ends_as_an_uninterrupted_run(tmp_path):
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    killed.mkdir()
    whole.mkdir()
    _after_first_checkpoint(killed, _start(killed, *RUN), signal.SIGKILL)
    client, run = _only_run(killed)
    assert run.info.status == "RUNNING" and _steps(client, run) in ([], [0])

    # the next commands that touch the store find it, and no report counts it
    stale = xferlab("runs", "--stale", cwd=killed)
    assert stale.returncode == 0 and run.info.run_id in stale.stdout, stale.stderr
    report = xferlab("report", "--experiment", "xferlab", "--rows", "freeze", cwd=killed)
    assert report.returncode == 2 and "no FINISHED runs" in report.stderr
    assert "RUNNING but their process is gone" in report.stderr

    resumed = xferlab("train", "--resume", run.info.run_id, cwd=killed)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming run {run.info.run_id} after epoch 1" in resumed.stderr
    client, run = _only_run(killed)
    assert run.info.status == "FINISHED"
    assert _steps(client, run) == [0, 1, 2, 3] == _steps(client, run, "train/loss")
    assert not list((killed / "outputs" / "checkpoints").glob("*.pt"))

    assert xferlab("train", *RUN, cwd=whole).returncode == 0
    _, reference = _only_run(whole)
    for key in ("train/loss", "val/loss", "val/acc", "val/acc_best", "test/acc", "test/loss",
                "best/epoch"):
        assert run.data.metrics[key] == reference.data.metrics[key], key


def test_ctrl_c_ends_killed_and_trainer_resume_continues_the_same_run(tmp_path):
    first = _start(tmp_path, *RUN, "trainer.resume=true")
    _after_first_checkpoint(tmp_path, first, signal.SIGINT)
    client, run = _only_run(tmp_path)
    assert run.info.status == "KILLED"

    again = xferlab("train", *RUN, "trainer.resume=true", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"resuming run {run.info.run_id}" in again.stderr
    client, run = _only_run(tmp_path)  # still one run
    assert run.info.status == "FINISHED" and _steps(client, run) == [0, 1, 2, 3]

    done = xferlab("train", *RUN, "trainer.resume=true", cwd=tmp_path)  # a resumed sweep's job
    assert done.returncode == 0 and f"already FINISHED as run {run.info.run_id}" in done.stderr
    _only_run(tmp_path)


def test_resume_errors_are_one_line(tmp_path):
    unknown = xferlab("train", "--resume", "0123456789abcdef", cwd=tmp_path)
    assert unknown.returncode == 2 and "no such run" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    assert xferlab("train", *FAST, cwd=tmp_path).returncode == 0
    _, run = _only_run(tmp_path)
    finished = xferlab("train", "--resume", run.info.run_id, cwd=tmp_path)
    assert finished.returncode == 2 and "is FINISHED: nothing to resume" in finished.stderr
    extra = xferlab("train", "--resume", run.info.run_id, "optim.lr=1", cwd=tmp_path)
    assert extra.returncode == 2 and "with its own config" in extra.stderr
