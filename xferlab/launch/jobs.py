"""A launch of a Hydra recipe (`xferlab train`, `xferlab pretrain`): every job's config composed
and checked before torch is imported, then the jobs handed to Hydra, a multirun under one MLflow
parent run whose children they become."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass

import hydra
from omegaconf import DictConfig

from xferlab.config import ConfigError
from xferlab.launch import compose

# Hydra flags after which xferlab does not check or launch anything itself.
HYDRA_INFO_FLAGS = {"-h", "--help", "--hydra-help", "--info", "-i", "--cfg", "-c", "--version",
                    "--shell-completion", "-sc", "--resolve"}
HYDRA_VALUE_FLAGS = {"--cfg", "-c", "--package", "-p", "--config-name", "-cn", "--config-path",
                     "-cp", "--config-dir", "-cd", "--info", "-i", "--experimental-rerun"}


@dataclass(frozen=True)
class Sweep:
    """What every job of a multirun is handed: its MLflow parent run and the sweep's id."""

    parent_run_id: str
    id: str


# A recipe's job: one composed config (and its sweep, in a multirun) -> Hydra's return value
Job = Callable[[DictConfig, Sweep | None], object]


def hydra_main(job: Job, sweep: Sweep | None = None) -> Callable[[], object]:
    """The job as a `@hydra.main` over conf/, with the sweep bound to it: Hydra's launchers
    (in-process, joblib, submitit, Ray) carry it to every job as part of the task function,
    which they pickle, so no environment variable or folder name carries it."""

    @functools.wraps(job)
    def task(cfg: DictConfig) -> object:
        return job(cfg, sweep)

    return hydra.main(config_path=str(compose.CONF_DIR), config_name="config",
                      version_base="1.3")(task)


@dataclass(frozen=True)
class Jobs:
    """What the command line asked for: Hydra's arguments, the overrides, each job's config."""

    args: list[str]
    overrides: list[str]
    configs: list[DictConfig]  # none when only Hydra's information was asked for
    multirun: bool
    info: bool


def prepare(recipe: str, args: list[str]) -> Jobs:
    """Compose and check every job of the launch (torch-free): ConfigError lists every problem."""
    info = any(a in HYDRA_INFO_FLAGS for a in args)
    multirun = "-m" in args or "--multirun" in args
    overrides, unknown = split(args)
    if unknown:  # Hydra would print its whole usage under the name cli.py
        raise ConfigError(f"xferlab {recipe}: unknown flag {unknown[0]!r}; config keys take no "
                          f"dashes, e.g. trainer.epochs=3 (see xferlab {recipe} --help)")
    configs = [] if info else [compose.compose(job)
                               for job in compose.job_overrides(overrides, multirun)]
    problems = list(dict.fromkeys(p for cfg in configs for p in compose.check(cfg)))
    if problems:
        raise ConfigError(problems)
    return Jobs(args, overrides, configs, multirun, info)


def split(args: list[str]) -> tuple[list[str], list[str]]:
    """(overrides, flags that neither xferlab nor Hydra knows)."""
    out, unknown, skip = [], [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in HYDRA_VALUE_FLAGS:
            skip = True
        elif not arg.startswith("-"):
            out.append(arg)
        elif arg not in HYDRA_INFO_FLAGS | {"-m", "--multirun"}:
            unknown.append(arg)
    return out, unknown


def hand_over(job: Job, jobs: Jobs) -> int:
    """Run the recipe's job under Hydra; a multirun gets its parent run first."""
    if not jobs.multirun or jobs.info:  # a single run warns of stale runs itself
        return run_hydra(hydra_main(job), jobs.args)
    from datetime import datetime

    from mlflow.entities import RunStatus

    from xferlab import tracking

    first = jobs.configs[0].tracking
    _warn_stale(first.uri, first.experiment)
    sweep_id = datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
    grid = swept(jobs.overrides)
    parent = tracking.start_parent(first.uri, first.experiment,
                                   name=sweep_name(first.experiment, grid, len(jobs.configs)),
                                   tags={"kind": "sweep", "sweep.id": sweep_id,
                                         "sweep.jobs": str(len(jobs.configs)),
                                         "sweep.keys": ",".join(grid),
                                         "overrides": tracking.masked(" ".join(jobs.overrides))},
                                   params={key: listed(values) for key, values in grid.items()})
    status = RunStatus.FAILED
    try:
        code = run_hydra(hydra_main(job, Sweep(parent, sweep_id)),
                         [*jobs.args, f"hydra.sweep.dir=outputs/multirun/{sweep_id}"])
        status = RunStatus.FINISHED if code == 0 else RunStatus.FAILED
        return code
    except KeyboardInterrupt:
        status = RunStatus.KILLED
        raise
    finally:
        tracking.end_parent(parent, RunStatus.to_string(status))


def swept(overrides: list[str]) -> dict[str, list[str]]:
    """The keys a grid sweeps, each with its values in the order the jobs take them, e.g.
    {'freeze': ['scratch', 'full'], 'data.fraction': ['0.01', '1.0']}."""
    values: dict[str, list[str]] = {}
    for job in compose.job_overrides(overrides, multirun=True):
        for override in compose.parse(job):
            taken = values.setdefault(override.key_or_group, [])
            if (value := override.get_value_element_as_str()) not in taken:
                taken.append(value)
    return {key: taken for key, taken in values.items() if len(taken) > 1}


def listed(values: list[str], limit: int = 500) -> str:
    """`a, b, c`, cut short past `limit` characters (MLflow caps a param's value)."""
    text = ", ".join(values)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(values)} values)"


def sweep_name(experiment: str, grid: dict[str, list[str]], jobs: int) -> str:
    """The sweep's parent run's name, e.g. `demo: freeze × data.fraction, 9 jobs`."""
    keys = " × ".join(grid)
    return f"{experiment}: {keys + ', ' if keys else ''}{jobs} job{'' if jobs == 1 else 's'}"


def run_hydra(hydra_main: Callable[[], object], args: list[str]) -> int:
    """`hydra_main` as if its process had been started with `args`; its exit code."""
    saved = sys.argv
    sys.argv = [saved[0], *args]
    try:
        hydra_main()
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        sys.argv = saved
    return 0


def _warn_stale(uri: str | None, experiment: str) -> None:
    """One warning line when the experiment holds runs whose process died while RUNNING."""
    import logging

    from mlflow.tracking import MlflowClient

    from xferlab import tracking

    uri = tracking.resolve_uri(uri)
    if not tracking.store_exists(uri):
        return  # a store that does not exist yet holds nothing stale (and is not created here)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    tracking.warn_stale(MlflowClient(uri), experiment)
