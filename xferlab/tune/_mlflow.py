"""The MLflow side of a study: a parent run, one child run per trial whose status follows the
trial's state (run id kept in the trial's user attrs), and the best trials and plots at the end."""

from __future__ import annotations

import json
import math
import time
import traceback
import warnings
from typing import Any

import matplotlib.pyplot as plt
import optuna
from mlflow.entities import Metric, Run, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from optuna.trial import FrozenTrial, TrialState
from optuna.visualization import matplotlib as plots

from xferlab.tune._study import stale_trials

PARENT = "mlflow.parent_run_id"  # study user attr
RUN_ID = "mlflow_run_id"  # trial user attr


def trial_tags(study: str, number: int, values: dict[str, Any]) -> dict[str, str]:
    """Tags of a trial's run: its study, number and sampled values (the UI's columns)."""
    return {"tune.study": study, "trial.number": str(number),
            **{f"tune.param.{key}": str(value) for key, value in values.items()}}


def open_parent(study: optuna.Study, experiment_id: str, tags: dict[str, str]) -> str:
    """The study's parent run: created once, kept in the study, reopened when it resumes."""
    client = MlflowClient()
    run_id = study.user_attrs.get(PARENT)
    if run_id is not None and _exists(client, run_id):
        client.update_run(run_id, status="RUNNING")
    else:  # a new study, or one tracked in another store before
        run_id = client.create_run(experiment_id, run_name=f"study·{study.study_name}").info.run_id
        study.set_user_attr(PARENT, run_id)
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    return run_id


def _exists(client: MlflowClient, run_id: str) -> bool:
    try:
        client.get_run(run_id)
    except MlflowException:
        return False
    return True


def record(study: optuna.Study, trial: optuna.Trial, *, experiment_id: str, parent: str,
           objectives: list[str], error: BaseException | None,
           run_id: str | None = None) -> FrozenTrial:
    """Tell Optuna how the trial ended and make its MLflow run say the same: COMPLETE with the
    objectives read from the run's metrics, PRUNED (run FINISHED), or FAIL (run FAILED).
    `run_id`: the run the trial's training returned; a trial that raised returned none, and its
    run (if training got as far as opening one) is found by its tags."""
    run = (MlflowClient().get_run(run_id) if run_id is not None
           else _find_run(experiment_id, parent, trial.number))
    values = None
    if error is None:
        assert run is not None  # a trial that did not raise returned its run's id
        try:
            values = [run.data.metrics[o] for o in objectives]
        except KeyError as missing:
            error = KeyError(f"the run logged no metric {missing}")
        else:
            if not all(math.isfinite(v) for v in values):
                error = FloatingPointError(
                    f"objective {dict(zip(objectives, values, strict=True))} is not finite")
    state = (TrialState.COMPLETE if error is None else TrialState.PRUNED
             if isinstance(error, optuna.TrialPruned) else TrialState.FAIL)
    run_id = _end_run(run, state, error, experiment_id=experiment_id, parent=parent,
                      tags=trial_tags(study.study_name, trial.number, trial.params))
    trial.set_user_attr(RUN_ID, run_id)
    if state == TrialState.FAIL:
        trial.set_user_attr("error", _line(error))
    return study.tell(trial, values if error is None else None, state=state)


def close_stale(study: optuna.Study, experiment_id: str, parent: str) -> list[int]:
    """Trials that dead workers of this machine left RUNNING: FAIL in Optuna, FAILED in MLflow,
    so a resume neither waits for them nor counts them."""
    numbers = []
    for trial in stale_trials(study):
        error = RuntimeError("the worker running this trial died (killed or crashed)")
        _end_run(_find_run(experiment_id, parent, trial.number), TrialState.FAIL, error,
                 experiment_id=experiment_id, parent=parent,
                 tags=trial_tags(study.study_name, trial.number, trial.params))
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        numbers.append(trial.number)
    return numbers


def _find_run(experiment_id: str, parent: str, number: int) -> Run | None:
    runs = MlflowClient().search_runs([experiment_id], max_results=1, filter_string=(
        f"tags.`mlflow.parentRunId` = '{parent}' and tags.`trial.number` = '{number}'"))
    return runs[0] if runs else None


def _end_run(run: Run | None, state: TrialState, error: BaseException | None, *,
             experiment_id: str, parent: str, tags: dict[str, str]) -> str:
    """The trial's run, tagged with the trial's state; a failure without a run (it broke before
    training logged anything) gets a FAILED run of its own, so every trial has one."""
    client = MlflowClient()
    if run is None:
        run = client.create_run(experiment_id, run_name=f"t{tags['trial.number']}·failed",
                                tags={**tags, "mlflow.parentRunId": parent})
        client.log_text(run.info.run_id, "".join(traceback.format_exception(error)),
                        "error/traceback.txt")
    run_id = run.info.run_id
    client.set_tag(run_id, "tune.state", state.name.lower())
    if state == TrialState.FAIL:
        client.set_tag(run_id, "tune.error", _line(error))
        if run.info.status in ("RUNNING", "FINISHED"):  # FAILED and KILLED already say so
            client.set_terminated(run_id, "FAILED")
    return run_id


def summarize(study: optuna.Study, parent: str, objectives: list[str]) -> list[FrozenTrial]:
    """The best trial (the Pareto front for several objectives) onto the parent run, with the
    optimisation history, the parameter importances and the Pareto front as PNGs."""
    trials = study.get_trials(deepcopy=False)
    metrics = {f"trials/{s.name.lower()}": sum(t.state == s for t in trials)
               for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    tags: dict[str, str] = {}
    best: list[FrozenTrial] = []
    if metrics["trials/complete"]:
        best = study.best_trials if len(objectives) > 1 else [study.best_trial]
        tags["best.trials"] = ",".join(str(t.number) for t in best)
        if len(best) == 1:
            metrics.update({f"best/{o}": v
                            for o, v in zip(objectives, best[0].values, strict=True)})
            tags.update({f"best.params.{k}": str(v) for k, v in best[0].params.items()})
            tags["best.run_id"] = best[0].user_attrs[RUN_ID]
        tags["best.values"] = json.dumps({t.number: t.values for t in best})[:5000]
    now = int(time.time() * 1000)
    client = MlflowClient()
    client.log_batch(parent, metrics=[Metric(k, float(v), now, len(trials))
                                      for k, v in metrics.items()],
                     tags=[RunTag(k, v) for k, v in tags.items()])
    for path, figure in _figures(study, objectives, int(metrics["trials/complete"])).items():
        client.log_figure(parent, figure, path)
        plt.close(figure)
    return best


def _figures(study: optuna.Study, objectives: list[str], complete: int) -> dict[str, Any]:
    """Optuna's matplotlib plots (tracking set the headless backend), for the first objective
    where there are several."""
    target = None if len(objectives) == 1 else (lambda t: t.values[0])
    figures = {}
    with warnings.catch_warnings():  # the matplotlib plots are marked experimental, and the
        warnings.simplefilter("ignore")  # importances warn that few trials make rough ones
        if complete:
            figures["plots/optimization_history.png"] = plots.plot_optimization_history(
                study, target=target, target_name=objectives[0]).figure
        if complete >= 2:  # importances compare trials
            figures["plots/param_importances.png"] = plots.plot_param_importances(
                study, target=target, target_name=objectives[0]).figure
        if complete and len(objectives) in (2, 3):
            figures["plots/pareto_front.png"] = plots.plot_pareto_front(
                study, target_names=objectives).figure
    return figures


def _line(error: BaseException | None) -> str:
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return text.splitlines()[0][:500]
