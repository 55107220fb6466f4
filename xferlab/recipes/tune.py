"""`xferlab tune search=<name> [tune.<key>=<value>] [train overrides]`: an Optuna search whose
trials are `xferlab train` runs, read top to bottom.

The driver checks everything first (the search, every corner of its space composed as a train
config, the storage), then builds the sources the trials need and creates the study, the MLflow
experiment and the study's parent run, all before any worker starts: concurrent first users of a
fresh store race on its schema. Each worker claims trials until the study holds `tune.trials` and
trains each in its own process with the trial in hand, pruning through train's `report` hook.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import re
import shlex
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch
from omegaconf import DictConfig
from rich.console import Console

from xferlab import config, tracking, tune
from xferlab.console import console
from xferlab.launch import common, compose
from xferlab.launch.compose import CONF_DIR
from xferlab.recipes import pretrain, train

optuna.logging.set_verbosity(optuna.logging.WARNING)  # the driver and workers print each trial
SEARCH_DIR = CONF_DIR / "search"
# Overrides that change where or how visibly a trial trains, not what: a study resumes across them
# (on another machine, say).
_NOT_IN_STUDY = ("tracking.uri", "trainer.device", "trainer.threads", "trainer.progress")


@dataclass(frozen=True)
class Job:
    """What each worker needs to run trials of the study (picklable: workers are spawned)."""

    search: tune.Search
    options: tune.Options
    overrides: list[str]  # train overrides from the command line
    study: str
    storage: str
    tracking_uri: str | None
    experiment: str
    parent: str  # the study's MLflow run
    launch: str  # this launch's id: its failed trials count towards tune.max_failures
    started: int  # trials the study held when this launch began (seeds the samplers)
    deadline: float | None


def main(args: list[str]) -> int:
    screen = console(soft_wrap=True)  # one line per trial, also in logs
    # ---- every check before anything runs: options, search, configs, storage, study
    try:
        ref, options, overrides = _split(args)
        name, search = tune.load_search(ref, SEARCH_DIR, options)
        base, configs = _compose_space(name, search, overrides)
        study_name = options.study or re.sub(r"[^\w.-]", "_",
                                              f"{name}-{base.tracking.experiment}")
        location = options.storage or tune.default_storage(study_name)
        kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in _NOT_IN_STUDY]
        study = tune.open_study(tune.open_storage(location), study_name, search, kept)
        pretrain.ensure(configs)  # the sources any trial can need, built once, before workers
    except (*common.USER_ERRORS, tune.SearchError) as err:
        common.exit_user_error(err)

    # ---- the MLflow store, experiment and parent run; trials dead workers left RUNNING
    experiment_id = tracking.setup(base.tracking.uri, base.tracking.experiment)
    parent = tune.open_parent(study, experiment_id, tags={
        "kind": "study", "tune.study": study_name, "tune.storage": tracking.masked(location),
        "tune.search": name, "tune.space": json.dumps(search.record()["params"]),
        "tune.objective": ",".join(search.objective),
        "tune.directions": ",".join(search.directions), "tune.sampler": search.sampler,
        "tune.pruner": search.pruner, "tune.trials": str(options.trials),
        "overrides": " ".join(overrides) or "(none)", **tracking.git_tags(Path.cwd())})
    stale = tune.close_stale(study, experiment_id, parent)
    if stale:
        screen.print(f"trials {stale} were left RUNNING by dead workers: now FAIL")
    trials = study.get_trials(deepcopy=False)
    done = sum(t.state in tune.COUNTED for t in trials)
    screen.print(f"[bold]study {study_name}[/] ({tracking.masked(location)}): {done} of "
                  f"{options.trials} trials there, running {max(0, options.trials - done)} with "
                  f"{options.workers} worker(s); MLflow parent run {parent}")
    job = Job(search, options, overrides, study_name, location, base.tracking.uri,
              base.tracking.experiment, parent, launch=uuid.uuid4().hex, started=len(trials),
              deadline=time.time() + options.timeout if options.timeout else None)

    # ---- the trials, then the summary on the parent run
    status = "FAILED"
    try:
        try:
            crashed = _run_workers(job)
        finally:  # Ctrl-C too: no trial of a worker that died mid-trial stays RUNNING
            tune.close_stale(study, experiment_id, parent)
        best = tune.summarize(study, parent, search.objective)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        tracking.end_parent(parent, status)
    return _report(screen, study, job, best, crashed)


def _split(args: list[str]) -> tuple[str, tune.Options, list[str]]:
    """search=..., the tune.* keys, and the train overrides."""
    flags = [a for a in args if a.startswith("-")]
    if flags:
        raise tune.SearchError([(f"xferlab tune takes no {flags[0]}: it runs its own trials; give "
                                "overrides only (see xferlab tune --help)")])
    refs = [a.partition("=")[2] for a in args if a.startswith("search=")]
    if len(refs) != 1:
        known = ", ".join(sorted(p.stem for p in SEARCH_DIR.glob("*.yaml")))
        raise tune.SearchError([(f"xferlab tune needs one search=<name>: one of {known} "
                                "(conf/search/), or search=<path>.yaml")])
    options = tune.parse_options([a for a in args if a.startswith("tune.")])
    return refs[0], options, [a for a in args if not a.startswith(("search=", "tune."))]


def _compose_space(name: str, search: tune.Search,
                   overrides: list[str]) -> tuple[DictConfig, list[DictConfig]]:
    """The base config and one config per corner of the space: an unknown key, a value out of
    range or a missing option fails here, in a second, not in trial 17."""
    fixed = [o.split("=", 1)[0].lstrip("+~") for o in overrides]
    problems = [f"{key} is searched by search {name} and also given on the command line: "
                "drop one" for key in fixed if key in search.params]
    base = compose.compose(overrides)
    problems += common.preflight(base)
    if problems:
        raise config.ConfigError(problems)
    configs = [base]
    for corner in tune.corners(search.params):
        try:
            cfg = compose.compose([*overrides, *corner])
        except config.ConfigError as err:
            problems += [f"search {name}: {p}" for p in err.problems]
            continue
        problems += [f"search {name}: {p}" for p in common.preflight(cfg)]
        configs.append(cfg)
    if problems:
        raise config.ConfigError(list(dict.fromkeys(problems)))
    return base, configs


def _run_workers(job: Job) -> int:
    """One worker is this process itself; several are spawned processes. Returns how many of
    them crashed."""
    if job.options.workers == 1:
        work(job, 0)
        return 0
    spawn = multiprocessing.get_context("spawn")  # a fork would inherit torch's thread pools
    procs = [spawn.Process(target=work, args=(job, i), name=f"tune-worker-{i}")
             for i in range(job.options.workers)]
    for proc in procs:
        proc.start()
    try:
        for proc in procs:
            proc.join()
    except KeyboardInterrupt:
        for proc in procs:
            proc.terminate()  # SIGTERM: their runs end KILLED, their trials FAIL
            proc.join()
        raise
    return sum(proc.exitcode != 0 for proc in procs)


def work(job: Job, index: int) -> None:
    """A worker: claims trials until the study holds its total, trains each in this process."""
    experiment_id = tracking.setup(job.tracking_uri, job.experiment)
    seed = tune.worker_seed(job.options.seed, job.started, index)
    study = tune.load_study(job.study, tune.open_storage(job.storage), job.search, seed)
    lock = tune.claim_lock(job.storage)
    with tune.worker(job.launch) as me:
        while (trial := tune.claim(study, me, total=job.options.trials, lock=lock,
                                   deadline=job.deadline,
                                   max_failures=job.options.max_failures)) is not None:
            _run_trial(job, study, trial, experiment_id)


def _run_trial(job: Job, study: optuna.Study, trial: optuna.Trial, experiment_id: str) -> None:
    """Train with the trial's overrides, then tell Optuna and MLflow how it ended."""
    values = tune.suggest(trial, job.search.params)
    overrides = [*job.overrides, *tune.as_overrides(values)]
    # its run name leads with the trial number: t7·resnet18·full·f1·s0
    launch = tracking.Launch(overrides=overrides, parent_run_id=job.parent,
                             parallel_jobs=job.options.workers,  # trainer.threads=auto shares
                             prefix=f"t{trial.number}·",
                             sweep_tags=tune.trial_tags(job.study, trial.number, values))
    record = functools.partial(tune.record, study, trial, experiment_id=experiment_id,
                               parent=job.parent, objectives=job.search.objective)
    try:
        cfg, launch.choices = compose.compose_with_choices(overrides)
        result = train.train(cfg, launch, report=tune.reporter(
            trial, intermediate=len(job.search.objective) == 1))
    except Exception as err:  # noqa: BLE001 - pruned, or any failure: the study goes on
        finished = record(error=err)
    except BaseException as err:  # Ctrl-C or kill: the trial is FAIL and the worker stops
        record(error=err)
        raise
    else:
        finished = record(error=None, run_id=result.run_id)
    if torch.cuda.is_available():  # what a failed trial held must not starve the next one
        torch.cuda.empty_cache()
    if finished.state == optuna.trial.TrialState.COMPLETE:
        outcome = ", ".join(f"{o}={v:.4g}"
                            for o, v in zip(job.search.objective, finished.values, strict=True))
    elif finished.state == optuna.trial.TrialState.PRUNED:
        epochs = len(finished.intermediate_values)
        outcome = f"after {epochs} epoch(s), val/acc={finished.intermediate_values[epochs]:.4g}"
    else:
        outcome = finished.user_attrs["error"]
    console(soft_wrap=True).print(f"[bold]trial {trial.number}[/] {finished.state.name} "
                                  f"{outcome}  {' '.join(tune.as_overrides(values))}")


def _report(screen: Console, study: optuna.Study, job: Job, best: list[optuna.trial.FrozenTrial],
            crashed: int) -> int:
    """The best trial(s) with the command that reproduces each; the exit code of the launch."""
    for trial in best:
        values = ", ".join(f"{o}={v:.4f}"
                           for o, v in zip(job.search.objective, trial.values, strict=True))
        screen.print(f"[bold]best trial {trial.number}[/]: {values}  (MLflow run "
                      f"{trial.user_attrs[tune.RUN_ID]})")
        print("  reproduce: xferlab train "
              + shlex.join([*job.overrides, *tune.as_overrides(trial.params)]))
    trials = study.get_trials(deepcopy=False)
    done = sum(t.state in tune.COUNTED for t in trials)
    failed = tune.failures(trials, job.launch)
    if crashed:
        screen.print(f"[red]{crashed} worker(s) crashed: see their output above")
    if failed >= job.options.max_failures:
        screen.print(f"[red]stopped after {failed} failed trials (tune.max_failures="
                      f"{job.options.max_failures}): see tune.error and error/traceback.txt of "
                      "their runs")
    elif done < job.options.trials:
        screen.print(f"{done} of {job.options.trials} trials: run the same command to resume")
    return 1 if crashed or failed >= job.options.max_failures else 0
