"""The samplers and pruners a search file names (`sampler:`, `pruner:`): one definition each,
holding how it is built and what it needs of the search. Optuna loads when one is built, so a
search file is checked without it."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial, TrialState

    from xferlab.tune._space import Search

Problems = Callable[["Search", str], list[str]]  # (search, where it is declared) -> one line each


def _fits_all(search: Search, where: str) -> list[str]:
    return []


@dataclass(frozen=True)
class Sampler:
    build: Callable[[Search, int | None], optuna.samplers.BaseSampler]  # (search, seed)
    problems: Problems = field(default=_fits_all)


@dataclass(frozen=True)
class Pruner:
    build: Callable[[Search], optuna.pruners.BasePruner]
    prunes: bool = True  # on val/acc, so only a search with one maximised objective can use it


def _conditional(search: Search) -> list[str]:
    return [k for k, p in search.params.items() if p.when]


def _cmaes_problems(search: Search, where: str) -> list[str]:
    problems = []
    categorical = [k for k, p in search.params.items() if p.type == "categorical"]
    if len(search.objective) > 1 or categorical or _conditional(search):
        problems.append(f"{where}: sampler=cmaes optimises one objective over unconditional "
                        "float and int params: use tpe (or nsga2 for several objectives)")
    if importlib.util.find_spec("cmaes") is None:  # Optuna's CMA-ES lives in that package
        problems.append(f"{where}: sampler=cmaes needs the cmaes package: pip install cmaes")
    return problems


def _grid_problems(search: Search, where: str) -> list[str]:
    return [*(f"{where}: sampler=grid needs unconditional params: drop when from {k}"
              for k in _conditional(search)),
            *(f"{where}: sampler=grid needs a step for the float {k} (or list its values as a "
              "categorical)" for k, p in search.params.items()
              if p.type == "float" and p.step is None)]


def _tpe(search: Search, seed: int | None) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=search.startup_trials)


def _random(search: Search, seed: int | None) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def _cmaes(search: Search, seed: int | None) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=search.startup_trials)


def _grid(search: Search, seed: int | None) -> optuna.samplers.BaseSampler:
    import optuna

    from xferlab.tune._values import grid

    class Grid(optuna.samplers.GridSampler):
        """Optuna's grid sampler calls `study.stop()` once the grid is done, which only works
        inside `study.optimize`: with ask/tell, `tune.trials` ends the study instead."""

        def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                        values: Sequence[float] | None) -> None:
            pass

    return Grid(grid(search.params), seed=seed)


def _nsga2(search: Search, seed: int | None) -> optuna.samplers.BaseSampler:
    import optuna

    # a generation needs two parents at least
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(2, search.startup_trials))


SAMPLERS = {"tpe": Sampler(_tpe), "random": Sampler(_random),
            "cmaes": Sampler(_cmaes, _cmaes_problems), "grid": Sampler(_grid, _grid_problems),
            "nsga2": Sampler(_nsga2)}


# steps are epochs trained (1, 2, ...), Optuna's "resource"
def _median(search: Search) -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=search.startup_trials,
                                       n_warmup_steps=search.warmup_epochs)


def _hyperband(search: Search) -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.HyperbandPruner(min_resource=max(1, search.warmup_epochs))


def _no_pruning(search: Search) -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.NopPruner()


PRUNERS = {"median": Pruner(_median), "hyperband": Pruner(_hyperband),
           "none": Pruner(_no_pruning, prunes=False)}
