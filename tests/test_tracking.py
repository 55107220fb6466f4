"""`tracking.run` opens its run on a thread while the body goes on, and still ends it honestly."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import experiment_runs
from xferlab import tracking


@pytest.fixture
def store(tmp_path):
    return f"sqlite:///{tmp_path}/mlflow.db"


def _only_run(uri: str):
    runs = experiment_runs(uri, "e")
    assert len(runs) == 1
    return MlflowClient(uri), runs[0]


def test_the_body_goes_on_while_the_run_opens(store):
    body_started = threading.Event()

    def on_open(run_id: str) -> None:
        # were the run opened before the body, this would wait in vain
        assert body_started.wait(60), "the body did not start before the run was open"
        tracking.log_params(run_id, {"optim": {"lr": 0.1}}, extra={"data.train_size": 7})

    with tracking.run(store, "e", name="n", tags={"choice.freeze": "full"},
                      on_open=on_open) as run:
        body_started.set()
        tracking.log_metrics(run.run_id, {"val/acc": 0.5}, step=0)
    logged = _only_run(store)[1]
    assert logged.info.status == "FINISHED" and logged.info.run_name == "n"
    assert logged.data.params == {"optim.lr": "0.1", "data.train_size": "7"}
    assert logged.data.metrics == {"val/acc": 0.5}
    tags = logged.data.tags
    assert tags["choice.freeze"] == "full" and tags[tracking.PID_TAG].isdigit()
    assert "versions.torch" in tags and "mlflow.user" in tags  # MLflow's own tags too


def test_a_body_that_fails_before_the_run_is_open_ends_it_failed_with_its_traceback(store):
    may_open = threading.Event()
    with pytest.raises(FloatingPointError), tracking.run(
            store, "e", name="n", tags={}, on_open=lambda run_id: may_open.wait(60)):
        may_open.set()  # the run opens while the error is on its way
        raise FloatingPointError("train/loss became nan")
    client, logged = _only_run(store)
    assert logged.info.status == "FAILED"
    trace = client.download_artifacts(logged.info.run_id, "error/traceback.txt")
    assert "train/loss became nan" in Path(trace).read_text()


def test_ctrl_c_before_the_run_is_open_ends_it_killed(store):
    with pytest.raises(KeyboardInterrupt), tracking.run(store, "e", name="n", tags={}):
        raise KeyboardInterrupt
    assert _only_run(store)[1].info.status == "KILLED"


class _InterruptsInDel:
    """Ctrl-C while Python runs a __del__, where it drops the KeyboardInterrupt raised
    ("Exception ignored in …"): what made a Ctrl-C in test_resume now and then leave the run."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)  # the handler runs here, inside __del__


def test_a_ctrl_c_python_swallowed_still_ends_the_run_killed(store):
    with pytest.raises(KeyboardInterrupt), tracking.run(store, "e", name="n", tags={}) as run:
        _InterruptsInDel()  # dropped at once: its __del__ runs, the interrupt is swallowed
        with pytest.raises(KeyboardInterrupt):  # the next epoch's metrics raise it again
            tracking.log_metrics(run.run_id, {"val/acc": 0.5}, step=1)
    assert _only_run(store)[1].info.status == "KILLED"
    with pytest.raises(KeyboardInterrupt), tracking.run(store, "e", name="m", tags={}):
        _InterruptsInDel()  # swallowed, and the body ends without another check
    assert {r.info.status for r in experiment_runs(store, "e")} == {"KILLED"}
    with tracking.run(store, "e", name="later", tags={}):  # a new run starts clean
        pass


def test_a_store_that_cannot_open_raises_where_the_run_is_needed(tmp_path):
    (tmp_path / "file").write_text("")
    uri = f"sqlite:///{tmp_path}/file/mlflow.db"  # a folder that is a file
    reached = []
    with pytest.raises(FileExistsError), tracking.run(uri, "e", name="n", tags={}) as run:
        reached.append("body")
        run.run_id  # noqa: B018 - the wait is the point
    assert reached == ["body"]


def test_a_run_whose_first_records_fail_ends_failed(store):
    def on_open(run_id: str) -> None:
        raise ValueError("params could not be logged")

    with pytest.raises(ValueError, match="params could not"), tracking.run(
            store, "e", name="n", tags={}, on_open=on_open) as run:
        run.run_id  # noqa: B018 - the wait is the point
    assert _only_run(store)[1].info.status == "FAILED"


def test_the_body_s_own_error_wins_over_a_store_that_could_not_open(tmp_path):
    (tmp_path / "file").write_text("")
    uri = f"sqlite:///{tmp_path}/file/mlflow.db"
    with pytest.raises(KeyboardInterrupt), tracking.run(uri, "e", name="n", tags={}):
        raise KeyboardInterrupt  # Ctrl-C stays Ctrl-C (a search stops instead of going on)
