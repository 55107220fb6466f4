"""SIGTERM: a run hands the process's handler back when it ends (issue 17), and a source being
built by `xferlab train` stops in one line, its run KILLED, nothing cached (issue 18)."""

from __future__ import annotations

import os
import signal
import sqlite3
import time

import pytest

from tests.conftest import FAST, experiment_runs, start_train
from xferlab import tracking


def _before(signum: int, frame: object) -> None:
    """Whatever handled SIGTERM before the run (a launcher's, a test runner's)."""


@pytest.fixture
def sigterm_handler():
    saved = signal.signal(signal.SIGTERM, _before)
    yield
    signal.signal(signal.SIGTERM, saved)


@pytest.mark.usefixtures("sigterm_handler")
@pytest.mark.parametrize("ending", ["normal", "exception", "ctrl_c", "sigterm"])
def test_a_run_gives_the_previous_sigterm_handler_back(tmp_path, ending):
    store = f"sqlite:///{tmp_path}/mlflow.db"
    raised = {"normal": None, "exception": ValueError, "ctrl_c": KeyboardInterrupt,
              "sigterm": KeyboardInterrupt}[ending]
    try:
        with tracking.run(store, "e", name="n", tags={}) as run:
            run.run_id  # noqa: B018 - open, so that its end is recorded
            assert signal.getsignal(signal.SIGTERM) is not _before  # its own, while it runs
            if ending == "exception":
                raise ValueError("boom")
            if ending == "ctrl_c":
                raise KeyboardInterrupt
            if ending == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # the handler raises here, at the latest
    except BaseException as err:  # noqa: BLE001 - which one is asserted below
        assert raised is not None and isinstance(err, raised), err
    else:
        assert raised is None
    assert signal.getsignal(signal.SIGTERM) is _before
    [logged] = experiment_runs(store, "e")
    assert logged.info.status == {"normal": "FINISHED", "exception": "FAILED"}.get(ending,
                                                                                   "KILLED")


def _wait_for_a_running_run(db, proc, seconds: float = 300) -> None:
    """Poll with plain sqlite3: an MLflow client would race the schema creation it watches."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            with sqlite3.connect(db) as con:
                if con.execute("select count(*) from runs where status='RUNNING'").fetchone()[0]:
                    return
        except sqlite3.Error:  # not created yet, or mid-migration
            pass
        time.sleep(0.5)
    raise AssertionError("the source build never opened its run")


def test_sigterm_while_train_builds_its_source_is_one_line_and_ends_its_run_killed(tmp_path):
    # a small source set, and so many steps that it is still training when signalled
    proc = start_train(tmp_path, *FAST, "backbone.pretrained=source:glyphs",
                       'backbone.source_overrides=["data.size=1240","trainer.max_steps=100000"]')
    try:
        _wait_for_a_running_run(tmp_path / "outputs" / "mlflow.db", proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:  # never leave a 100000-step build behind when an assertion fails
        proc.kill()
        proc.wait()
    assert "Building source" in err
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.count("interrupted") == 1, err
    assert err.strip().splitlines()[-1].startswith(
        "xferlab: interrupted (SIGTERM) while building source test_resnet-glyphs-"), err
    [source_run] = experiment_runs(tmp_path, "xferlab-sources")
    assert source_run.info.status == "KILLED"
    assert experiment_runs(tmp_path, "xferlab") == []  # the transfer run never started
    assert not list((tmp_path / "outputs" / "sources").glob("*"))  # nor a temporary file
