"""Optuna studies for `xferlab tune`: search spaces from conf/search/, storage, pruning, resume,
workers, and the MLflow bridge. The recipe (xferlab/recipes/tune.py) composes and trains.

- `_space`: search-file and `tune.*` schemas and checks
- `_values`: a trial's values, sampled define-by-run and written as Hydra overrides
- `_study`: storage, samplers, pruners, opening or resuming a study, workers claiming trials
- `_mlflow`: parent run, trial state -> run status, best trials and plots on the parent
"""

from xferlab.tune._mlflow import RUN_ID, close_stale, open_parent, record, summarize, trial_tags
from xferlab.tune._space import Options, Param, Search, SearchError, load_search, parse_options
from xferlab.tune._study import (
    COUNTED,
    Pruned,
    claim,
    claim_lock,
    default_storage,
    failures,
    load_study,
    open_storage,
    open_study,
    reporter,
    worker,
    worker_seed,
)
from xferlab.tune._values import as_overrides, corners, suggest

__all__ = [
    "COUNTED", "RUN_ID", "Options", "Param", "Pruned", "Search", "SearchError", "as_overrides",
    "claim", "claim_lock", "close_stale", "corners", "default_storage", "failures", "load_search",
    "load_study", "open_parent", "open_storage", "open_study", "parse_options", "record",
    "reporter", "suggest", "summarize", "trial_tags", "worker", "worker_seed",
]
