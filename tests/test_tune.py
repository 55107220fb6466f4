"""`xferlab tune` on real Optuna storage (journal files, SQLite) and a real MLflow store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from tests.conftest import FAST, REPO, experiment_runs, store_uri
from xferlab import cli, tune
from xferlab.recipes import tune as tune_recipe

TRAIN = [*FAST, "data.fraction=0.3"]
SEARCHES = sorted((REPO / "conf" / "search").glob("*.yaml"))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """One project folder for the studies of this file: each test has its own experiment and
    study in it, and the MLflow store's schema is created once, not once per test."""
    return tmp_path_factory.mktemp("lab")


@pytest.fixture
def here(lab, monkeypatch):
    monkeypatch.chdir(lab)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return lab


def run_tune(*args: str) -> int:
    """The tune command in this process, as `xferlab tune` runs it."""
    try:
        return cli.main(["tune", *args])
    except SystemExit as exit_:  # user errors exit 2
        return exit_.code


def load(folder, study: str) -> optuna.Study:
    path = folder / "outputs" / "tune" / f"{study}.journal"
    return optuna.load_study(study_name=study,
                             storage=JournalStorage(JournalFileBackend(str(path))))


def children(all_runs: list) -> dict[int, object]:
    """Trial number -> its run; fails on a trial with two runs."""
    found = [r for r in all_runs if "trial.number" in r.data.tags]
    by_number = {int(r.data.tags["trial.number"]): r for r in found}
    assert len(by_number) == len(found), "a trial has more than one run"
    return by_number


def search_file(folder, text: str, name: str = "search") -> str:
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return f"search={path}"


# ---- the search files and the Optuna pieces


@pytest.mark.parametrize("path", SEARCHES, ids=[p.stem for p in SEARCHES])
def test_every_search_file_is_valid_and_its_whole_space_composes(path):
    assert len(SEARCHES) >= 3
    first = path.read_text().splitlines()[0]
    assert first.startswith("# ") and f"xferlab tune search={path.stem}" in first
    name, search = tune.load_search(path.stem, path.parent, tune.Options())
    _, configs = tune_recipe._compose_space(name, search, ["backbone=resnet_tiny"])
    assert len(configs) == 1 + len(tune.corners(search.params))


@pytest.mark.parametrize("sampler", ["tpe", "random", "cmaes", "grid", "nsga2"])
@pytest.mark.parametrize("pruner", ["median", "hyperband", "none"])
def test_every_sampler_and_pruner_runs_ask_and_tell(sampler, pruner):
    params = {"optim.lr": tune.Param(type="float", low=1e-4, high=1e-1, step=None, log=True),
              "freeze.k": tune.Param(type="int", low=1, high=3)}
    if sampler == "grid":
        params["optim.lr"] = tune.Param(type="float", low=0.01, high=0.05, step=0.02)
    search = tune.Search(params=params, sampler=sampler, pruner=pruner, startup_trials=2)
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, direction="maximize")
    loaded = tune.load_study(study.study_name, storage, search, seed=0)
    for _ in range(4):
        trial = loaded.ask()
        values = tune.suggest(trial, params)
        try:
            for epoch in range(3):
                tune.reporter(trial, intermediate=True)(epoch, {"train/loss": 1.0,
                                                                "val/acc": values["freeze.k"]})
        except optuna.TrialPruned:
            loaded.tell(trial, state=TrialState.PRUNED)
        else:
            loaded.tell(trial, values["freeze.k"] / 3)
    assert len(loaded.trials) == 4


# ---- studies end to end (each test its own experiment, hence its own study, in `lab`)


def test_a_study_completes_then_resumes_to_a_larger_total(here, capsys):
    args = ["search=lr_wd", *TRAIN, "tracking.experiment=resume", "tune.seed=0"]
    assert run_tune(*args, "tune.trials=6") == 0
    assert len(load(here, "lr_wd-resume").trials) == 6
    first = capsys.readouterr().out
    assert "best trial" in first and "reproduce: xferlab train backbone=resnet_tiny" in first

    assert run_tune(*args, "tune.trials=8") == 0
    study = load(here, "lr_wd-resume")
    assert [t.number for t in study.trials] == list(range(8))
    assert {t.state for t in study.trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    client, all_runs = MlflowClient(store_uri(here)), experiment_runs(here, "resume")
    parents = [r for r in all_runs if r.data.tags.get("kind") == "study"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    by_number = children(all_runs)
    assert sorted(by_number) == list(range(8))
    for trial in study.trials:
        run = by_number[trial.number]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
        assert float(run.data.params["optim.lr"]) == pytest.approx(trial.params["optim.lr"])
    assert parent.data.tags["tune.study"] == "lr_wd-resume"
    assert parent.data.tags["tune.storage"].endswith("outputs/tune/lr_wd-resume.journal")
    assert "optim.weight_decay" in parent.data.tags["tune.space"]
    best = study.best_trial
    assert parent.data.tags["best.trials"] == str(best.number)
    assert parent.data.metrics["best/val/acc_best"] == pytest.approx(best.value)
    assert float(parent.data.tags["best.params.optim.lr"]) == pytest.approx(best.params["optim.lr"])
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert plots == {"plots/optimization_history.png", "plots/param_importances.png"}
    assert f"best trial {best.number}" in capsys.readouterr().out

    # the same study with other train overrides is another search: refused, nothing runs
    assert run_tune(*args, "tune.trials=9", "freeze=linear_probe") == 2
    assert "tune.study='lr_wd-resume' holds another search (overrides differ)" in (
        capsys.readouterr().err)
    assert len(load(here, "lr_wd-resume").trials) == 8


PRUNING = """\
# A good and a bad learning rate, pruned after the first epoch
sampler: random
pruner: median
startup_trials: 1
warmup_epochs: 1
params:
  optim.lr: {type: categorical, choices: [0.01, 1.0e-7]}
"""


def test_the_pruner_stops_trials_in_a_bad_region(here):
    args = [search_file(here, PRUNING, "pruning"), *TRAIN, "trainer.epochs=2",
            "tracking.experiment=pruning", "tune.trials=5", "tune.seed=3"]
    assert run_tune(*args) == 0
    study = load(here, "pruning-pruning")
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned and all(t.params["optim.lr"] == 1e-7 for t in pruned)
    assert len(study.trials) == 5
    client, all_runs = MlflowClient(store_uri(here)), experiment_runs(here, "pruning")
    by_number = children(all_runs)
    for trial in pruned:
        run = by_number[trial.number]
        assert run.info.status == "FINISHED" and run.data.tags["tune.state"] == "pruned"
        assert len(client.get_metric_history(run.info.run_id, "val/acc")) == 1  # of 2 epochs


FAILING = """\
# A good learning rate and one that diverges
sampler: random
pruner: none
params:
  optim.lr: {type: categorical, choices: [0.01, 1.0e+30]}
"""


def test_a_failing_trial_is_fail_and_the_study_finishes(here, capsys):
    args = [search_file(here, FAILING, "failing"), *TRAIN, "tracking.experiment=failing",
            "tune.trials=2", "tune.max_failures=10", "tune.seed=3"]
    assert run_tune(*args) == 0
    study = load(here, "failing-failing")
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed and sum(t.state == TrialState.COMPLETE for t in study.trials) == 2
    assert all("diverged" in t.user_attrs["error"] for t in failed)
    client, all_runs = MlflowClient(store_uri(here)), experiment_runs(here, "failing")
    by_number = children(all_runs)
    assert sorted(by_number) == [t.number for t in study.trials]
    for trial in failed:
        run = by_number[trial.number]
        assert run.info.status == "FAILED" and "diverged" in run.data.tags["tune.error"]
        assert "error/traceback.txt" in {a.path for a in client.list_artifacts(
            run.info.run_id, "error")}
    assert "best trial" in capsys.readouterr().out


def test_a_multi_objective_study_logs_its_pareto_front(here):
    assert run_tune("search=acc_vs_trainable", *TRAIN, "tracking.experiment=pareto",
                    "tune.trials=2", "tune.seed=0") == 0
    study = load(here, "acc_vs_trainable-pareto")
    assert len(study.directions) == 2 and study.best_trials
    client, all_runs = MlflowClient(store_uri(here)), experiment_runs(here, "pareto")
    [parent] = [r for r in all_runs if r.data.tags.get("kind") == "study"]
    assert set(parent.data.tags["best.trials"].split(",")) == {
        str(t.number) for t in study.best_trials}
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert "plots/pareto_front.png" in plots


def test_two_workers_share_one_journal_study(here, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the spawned workers inherit it (see one_thread)
    assert run_tune("search=lr_wd", *TRAIN, "tracking.experiment=two", "tune.trials=5",
                    "tune.workers=2", "tune.seed=0") == 0
    study = load(here, "lr_wd-two")
    assert [t.number for t in study.trials] == list(range(5))
    assert {t.state for t in study.trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert len({t.user_attrs["xferlab.worker"]["lock"] for t in study.trials}) == 2
    all_runs = experiment_runs(here, "two")
    by_number = children(all_runs)
    assert sorted(by_number) == list(range(5))
    assert {r.info.status for r in by_number.values()} == {"FINISHED"}
    assert {t.user_attrs["mlflow_run_id"] for t in study.trials} == {
        r.info.run_id for r in by_number.values()}


def test_a_trial_left_running_by_a_killed_worker_is_failed_on_resume(here, capsys):
    args = ["search=lr_wd", *TRAIN, "trainer.epochs=5", "tracking.experiment=killed",
            "tune.trials=1", "tune.seed=0"]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen([sys.executable, "-m", "xferlab.cli", "tune", *args], cwd=here,
                            env={**env, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while not any(r.info.status == "RUNNING" and "trial.number" in r.data.tags
                  for r in experiment_runs(here, "killed")):
        assert proc.poll() is None and time.time() < deadline, "no trial started"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert load(here, "lr_wd-killed").trials[0].state == TrialState.RUNNING

    assert run_tune(*args) == 0
    assert "trials [0] were left RUNNING by dead workers" in capsys.readouterr().out
    study = load(here, "lr_wd-killed")
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]
    all_runs = experiment_runs(here, "killed")
    by_number = children(all_runs)
    assert by_number[0].info.status == "FAILED" and "died" in by_number[0].data.tags["tune.error"]
    assert by_number[1].info.status == "FINISHED"
    assert "RUNNING" not in {r.info.status for r in all_runs}


# ---- bad input: exit 2, one line each, before any trial

BAD_INPUTS = [
    ("params:\n  optim.lrr: {type: float, low: 0.001, high: 0.1}\n", [],
     "optim.lrr is not a config key (did you mean 'optim.lr'?)"),
    ("params:\n  optim.lr: {type: float, low: 0.1, high: 0.001}\n", [],
     "is an empty range: give low < high"),
    ("params:\n  freeze: {type: categorical, choices: [full, linear_prob]}\n", [],
     "did you mean 'linear_probe'"),
    ("params:\n  optim.lr: {type: flaot, low: 0.001, high: 0.1}\n", [], "did you mean 'float'"),
    ("objective: val/acc_bset\nparams:\n  optim.lr: {type: float, low: 0.001, high: 0.1}\n", [],
     "did you mean 'val/acc_best'"),
    (None, ["tune.sampler=bayes"], "tune.sampler='bayes' is not a sampler"),
    (None, ["tune.trails=3"], "did you mean 'tune.trials'"),
    (None, ["tune.trials=abc"], "tune.trials='abc' is invalid"),
    (None, ["tune.storage=sqlite:////no/such/dir/study.db"], "cannot be opened"),
    (None, ["optim.lr=0.1"], "optim.lr is searched by search lr_wd and also given"),
]


@pytest.mark.parametrize(("space", "args", "message"), BAD_INPUTS,
                         ids=[m.split(" (")[0][:40] for *_, m in BAD_INPUTS])
def test_bad_input_exits_2_with_one_line_before_any_trial(project, capsys, space, args, message):
    search = search_file(project, space) if space else "search=lr_wd"
    assert run_tune(search, *TRAIN, *args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert all(line.startswith("xferlab: error: ") for line in err.strip().splitlines())
    assert not (project / "outputs" / "tune").exists() or not any(
        (project / "outputs" / "tune").glob("*.journal"))
    assert not (project / "outputs" / "mlflow.db").exists()  # nothing tracked, nothing RUNNING


def test_an_unknown_search_suggests_a_close_one(project, capsys):
    assert run_tune("search=lr_wdd") == 2
    assert "did you mean 'lr_wd'" in capsys.readouterr().err
