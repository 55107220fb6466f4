"""Beyond one machine, for real: `xferlab tune` launches sharing a PostgreSQL study and an MLflow
tracking server backed by PostgreSQL, and grids run by Hydra's joblib and Ray launchers logging to
that server. The servers (tests/_servers.py) run on loopback in temp dirs for the session."""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import optuna
import pytest
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from tests._servers import (  # noqa: F401 - fixtures
    ADMIN_PASSWORD,
    free_port,
    mlflow_auth_server,
    mlflow_server,
    postgres,
)
from tests.conftest import FAST, experiment_runs, xferlab
from xferlab import cli, tune
from xferlab.config import register
from xferlab.launch.compose import CONF_DIR

TRAIN = [*FAST, "trainer.threads=1", "data.fraction=0.3"]
LAUNCHERS = sorted((CONF_DIR / "hydra" / "launcher").glob("*.yaml"))
PLUGINS = {"slurm": "hydra_plugins.hydra_submitit_launcher",
           "ray_local": "hydra_plugins.hydra_ray_launcher",
           "ray_cluster": "hydra_plugins.hydra_ray_launcher"}


def done(result) -> str:
    """The end of a command's output, for assertion messages."""
    return f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


# ---- the shipped launcher configs and the storage errors (no server needed)


@pytest.mark.parametrize("path", LAUNCHERS, ids=[p.stem for p in LAUNCHERS])
def test_every_launcher_config_composes_with_its_plugin(path):
    assert {p.stem for p in LAUNCHERS} == set(PLUGINS)
    first = path.read_text().splitlines()[0]
    assert first.startswith("# ") and f"hydra/launcher={path.stem}" in first
    pytest.importorskip(PLUGINS[path.stem], reason=f"the plugin of hydra/launcher={path.stem} is "
                        "not installed: pip install -e '.[slurm,ray]'")
    register()  # the schema the root config names
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose("config", overrides=[f"hydra/launcher={path.stem}"],
                            return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.startswith(PLUGINS[path.stem])
    if path.stem == "slurm":  # one process and one GPU per job, said in so many words
        assert (launcher.tasks_per_node, launcher.gpus_per_node) == (1, 1)
        assert launcher.timeout_min > 0 and launcher.cpus_per_task and launcher.mem_gb
    elif path.stem == "ray_local":  # a new instance for the grid, never a cluster found here
        assert launcher.ray.init.address == "local" and launcher.ray.remote.num_gpus == 0
    else:  # joins the running cluster, one GPU per job
        assert launcher.ray.init.address == "auto" and launcher.ray.remote.num_gpus == 1
        assert launcher.ray.init.object_store_memory is None  # Ray refuses one when joining


def test_a_postgres_storage_without_its_driver_exits_2_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "psycopg2", None)
    with pytest.raises(tune.SearchError) as err:
        tune.open_storage("postgresql://someone:secret@db.invalid/optuna")
    [line] = err.value.problems
    assert "needs a database driver that is not installed" in line
    assert "pip install 'xferlab[postgres]'" in line and "secret" not in line


def test_an_unreachable_postgres_storage_exits_2_with_one_line(project, capsys):
    pytest.importorskip("psycopg", reason="the PostgreSQL driver is not installed")
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/optuna"  # nothing listens there
    try:
        code = cli.main(["tune", "search=lr_wd", *TRAIN, f"tune.storage={url}"])
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    [line] = err.strip().splitlines()
    assert line.startswith("xferlab: error: tune.storage=") and "cannot be reached" in line
    assert "check that the database server runs" in line


# ---- real servers: PostgreSQL and an MLflow tracking server on it


@pytest.mark.postgres
def test_two_tune_launches_share_one_postgres_study_and_tracking_server(
        postgres, mlflow_server, tmp_path):  # noqa: F811 - fixtures
    storage = postgres.create_database("optuna")
    args = ["tune", "search=lr_wd", *TRAIN, "tracking.experiment=shared",
            f"tracking.uri={mlflow_server.uri}", f"tune.storage={storage}", "tune.seed=0"]
    machines = [tmp_path / "a", tmp_path / "b"]  # each launch in its own folder, as on 2 hosts
    for folder in machines:
        folder.mkdir()
    # The first launch creates the study, the MLflow experiment and the study's parent run
    # (first users of fresh stores race on creating them), as README's "Scaling out" says ...
    first = xferlab(*args, "tune.trials=1", cwd=machines[0])
    assert first.returncode == 0, done(first)
    # ... then one launch per machine, at the same time, to a total of 5
    with ThreadPoolExecutor(2) as pool:
        launches = [pool.submit(xferlab, *args, "tune.trials=5", cwd=folder)
                    for folder in machines]
        results = [launch.result() for launch in launches]
    for result in results:
        assert result.returncode == 0, done(result)

    study = optuna.load_study(study_name="lr_wd-shared", storage=storage)
    trials = study.trials
    # launches on several machines claim without a common lock: one over the total at most
    assert 5 <= len(trials) <= 6
    assert [t.number for t in trials] == list(range(len(trials)))  # no duplicates, no gaps
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    workers = [t.user_attrs["xferlab.worker"]["launch"] for t in trials]
    assert len(set(workers[1:])) == 2 and workers[0] not in workers[1:]  # both launches worked

    all_runs = experiment_runs(mlflow_server.uri, "shared")
    [parent] = [r for r in all_runs if r.data.tags.get("kind") == "study"]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["tune.storage"] == storage
    children = [r for r in all_runs if "trial.number" in r.data.tags]
    by_number = {int(r.data.tags["trial.number"]): r for r in children}
    assert len(by_number) == len(children) == len(trials)  # one run per trial
    for trial in trials:
        run = by_number[trial.number]
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
    # artifacts went through the server into its artifact root, one resolved config per trial
    assert len(list(mlflow_server.artifacts.rglob("config.yaml"))) >= len(trials)


def check_grid(uri: str, experiment: str, seeds: list[int]) -> None:
    """One FINISHED sweep parent and a FINISHED child run per seed."""
    all_runs = experiment_runs(uri, experiment)
    [parent] = [r for r in all_runs if r.data.tags.get("kind") == "sweep"]
    assert parent.info.status == "FINISHED"
    children = [r for r in all_runs if r is not parent]
    assert sorted(int(r.data.params["seed"]) for r in children) == seeds
    assert {r.info.status for r in children} == {"FINISHED"}
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}


@pytest.mark.postgres
def test_a_joblib_grid_logs_four_finished_runs_to_the_tracking_server(
        mlflow_server, tmp_path):  # noqa: F811 - fixture
    result = xferlab("train", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *TRAIN,
                     "seed=0,1,2,3", "tracking.experiment=joblib_grid",
                     f"tracking.uri={mlflow_server.uri}", cwd=tmp_path)
    assert result.returncode == 0, done(result)
    check_grid(mlflow_server.uri, "joblib_grid", [0, 1, 2, 3])


@pytest.mark.ray
@pytest.mark.postgres
def test_a_ray_grid_on_a_loopback_ray_instance_logs_two_finished_runs(
        mlflow_server, tmp_path, monkeypatch):  # noqa: F811 - fixture
    pytest.importorskip("hydra_plugins.hydra_ray_launcher",
                        reason="hydra-ray-launcher is not installed: pip install -e '.[ray]'")
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray on 127.0.0.1 only
    ray_dir = Path(tempfile.mkdtemp(prefix="xr-"))  # short: Ray's socket paths have a limit
    try:
        result = xferlab("train", "-m", "hydra/launcher=ray_local", *TRAIN, "seed=0,1",
                         "tracking.experiment=ray_grid", f"tracking.uri={mlflow_server.uri}",
                         f"+hydra.launcher.ray.init._temp_dir={ray_dir}", cwd=tmp_path)
        assert result.returncode == 0, done(result)
        check_grid(mlflow_server.uri, "ray_grid", [0, 1])
        raylet = (ray_dir / "session_latest" / "logs" / "raylet.out").read_text()
        assert set(re.findall(r"node_manager address: ([\d.]+):", raylet)) == {"127.0.0.1"}
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)


@pytest.mark.postgres
def test_an_authenticated_server_refuses_strangers_and_takes_a_worker_s_runs(
        mlflow_auth_server, tmp_path, monkeypatch):  # noqa: F811 - fixture
    import os
    import subprocess
    import urllib.error
    import urllib.request

    from mlflow.server.auth.client import AuthServiceClient

    uri = mlflow_auth_server.uri
    # nobody gets in without credentials, not even to read
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{uri}/api/2.0/mlflow/experiments/search?max_results=1",
                               timeout=30)
    assert refused.value.code == 401
    # the admin makes a user per researcher (README, Scaling out) ...
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
    AuthServiceClient(uri).create_user("ann", "ann-Secret-4-tests")
    # ... whose worker authenticates through MLflow's environment variables, never the URL
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(OMP_NUM_THREADS="1", MLFLOW_TRACKING_USERNAME="ann",
               MLFLOW_TRACKING_PASSWORD="ann-Secret-4-tests")
    result = subprocess.run([sys.executable, "-m", "xferlab.cli", "train", *TRAIN,
                             "tracking.experiment=authed", f"tracking.uri={uri}"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, done(result)
    assert "ann-Secret" not in result.stdout + result.stderr
    [run] = experiment_runs(uri, "authed")  # read as the admin
    assert run.info.status == "FINISHED"
    assert not any("Secret" in v for v in [*run.data.params.values(), *run.data.tags.values()])
    # uploaded through the server, authenticated as ann
    assert "config.yaml" in {a.path for a in MlflowClient(uri).list_artifacts(run.info.run_id)}
