"""Studies on persistent storage: open or resume, samplers and pruners, workers claiming trials,
and finding the trials of workers that died."""

from __future__ import annotations

import hashlib
import math
import random
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Literal, cast

import optuna
from filelock import FileLock, Timeout
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from xferlab import tracking
from xferlab.tune._samplers import PRUNERS, SAMPLERS
from xferlab.tune._space import Search, SearchError

TUNE_DIR = Path("outputs/tune")
# States that count towards tune.trials; a FAIL does not, so a failed trial is replaced.
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
WORKER = "xferlab.worker"  # trial user attr: the worker that claimed it
RECORD = "xferlab.search"  # study user attr: the search and overrides it was started with


def default_storage(study: str) -> str:
    return str(TUNE_DIR.resolve() / f"{study}.journal")


def open_storage(location: str) -> BaseStorage:
    """A journal file (a path), safe for processes on one machine, or an RDB (a URL) for many."""
    try:
        if "://" in location:
            return RDBStorage(location)  # creates the schema now, before any worker races on it
        Path(location).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(location))
    except ImportError as err:  # SQLAlchemy imports the URL's driver only now
        scheme = location.split("://", 1)[0].split("+", 1)[0]
        hint = _DRIVERS.get(scheme, "install the driver its URL names")
        raise SearchError([(f"tune.storage={tracking.masked(location)!r} needs a database driver "
                           f"that is not installed ({_reason(err)}): {hint}")]) from None
    except OperationalError as err:  # the database said no, or nothing answered
        if location.startswith("sqlite"):  # a file, not a server: the generic message below
            raise _unopenable(location, err) from None
        raise SearchError([(f"tune.storage={tracking.masked(location)!r} cannot be reached "
                           f"({_reason(err)}): check that the database server runs and accepts "
                           "connections from this machine, and the URL's host, port, user, "
                           "password and database")]) from None
    except (SQLAlchemyError, OSError, ValueError) as err:
        raise _unopenable(location, err) from None


def _unopenable(location: str, err: Exception) -> SearchError:
    return SearchError([(f"tune.storage={tracking.masked(location)!r} cannot be opened "
                         f"({_reason(err)}): give a writable journal file path or a reachable "
                         "database URL")])


# What to install for a storage URL's database driver (SQLAlchemy's default for the scheme).
_DRIVERS = {"postgresql": "pip install 'xferlab[postgres]' (the psycopg driver)",
            "mysql": "pip install mysqlclient, or pymysql with a mysql+pymysql:// URL"}


def _reason(err: Exception) -> str:
    """The first line of an error (SQLAlchemy's start with the driver's exception name)."""
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def claim_lock(location: str) -> AbstractContextManager:
    """Counting the trials and asking for one must be one step, or two workers both take the
    last trial. A file lock makes it one among the workers of one machine, whatever the storage;
    workers on other machines go without (README: at most one trial over the total per extra
    machine)."""
    if "://" not in location:
        return FileLock(f"{location}.claim.lock")
    if location.startswith("sqlite:///"):
        return FileLock(f"{location.removeprefix('sqlite:///')}.claim.lock")
    # a database server: workers on this machine share a lock named after the storage, so they
    # reach the total exactly; other machines' workers claim without it (README)
    key = hashlib.sha256(location.encode()).hexdigest()[:16]
    return FileLock(Path(tempfile.gettempdir()) / f"xferlab-claim-{key}.lock")


def open_study(storage: BaseStorage, name: str, search: Search,
               overrides: list[str]) -> optuna.Study:
    """Create the study, or resume it when it holds the same search and overrides."""
    # each 'maximize' or 'minimize': the search's checks refuse any other
    directions = cast(list[Literal["maximize", "minimize"]], search.directions)
    study = optuna.create_study(storage=storage, study_name=name, directions=directions,
                                load_if_exists=True)
    record = {**search.record(), "overrides": overrides}
    found = study.user_attrs.get(RECORD)
    if found is None:
        study.set_user_attr(RECORD, record)
    elif found != record:
        differ = [key for key in record if found.get(key) != record[key]]
        raise SearchError([(f"tune.study={name!r} holds another search ({', '.join(differ)} "
                           "differ): resume it with the same search and overrides, or give a "
                           "new tune.study")])
    return study


def load_study(name: str, storage: BaseStorage, search: Search,
               seed: int | None) -> optuna.Study:
    """The study as one worker sees it, with its own sampler and pruner."""
    return optuna.load_study(study_name=name, storage=storage,
                             sampler=SAMPLERS[search.sampler].build(search, seed),
                             pruner=PRUNERS[search.pruner].build(search))


def worker_seed(seed: int | None, started: int, worker: int) -> int | None:
    """A sampler seed per worker and launch (equal seeds would sample the same points again);
    None without tune.seed."""
    if seed is None:
        return None
    return random.Random(f"{seed}:{started}:{worker}").getrandbits(32)


class Pruned(tracking.StopRun, optuna.TrialPruned):
    """The pruner stopped the trial: PRUNED in Optuna, a FINISHED run tagged tune.state=pruned."""

    def __init__(self, epoch: int):
        super().__init__(f"pruned after epoch {epoch}", {"tune.state": "pruned"})


def reporter(trial: optuna.Trial, *, intermediate: bool) -> Callable[[int, dict[str, float]], None]:
    """The `report` hook of a trial's training: a diverged loss fails the trial, and val/acc
    goes to the pruner (Optuna takes intermediate values for single-objective studies only)."""
    def report(epoch: int, metrics: dict[str, float]) -> None:
        counted = epoch + 1  # from 1, as the console and the run's metric steps count epochs
        if not math.isfinite(metrics["train/loss"]):
            raise FloatingPointError(f"train/loss is {metrics['train/loss']} at epoch "
                                     f"{counted}: the trial diverged")
        if intermediate:
            trial.report(metrics["val/acc"], step=counted)
            if trial.should_prune():
                raise Pruned(counted)
    return report


@contextmanager
def worker(launch: str) -> Iterator[dict[str, str]]:
    """This process as a worker of a study, for as long as it holds a lock file: the journal
    storage has no heartbeat, so a free lock is how a later launch knows the worker died."""
    path = TUNE_DIR.resolve() / "workers" / f"{uuid.uuid4().hex}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(path):
            yield {"host": socket.gethostname(), "lock": str(path), "launch": launch}
    finally:
        path.unlink(missing_ok=True)


def claim(study: optuna.Study, me: dict[str, str], *, total: int, lock: AbstractContextManager,
          deadline: float | None, max_failures: int) -> optuna.Trial | None:
    """The next trial for this worker; None once the study holds `total` trials, or this
    launch has used up its time or its failures."""
    if deadline is not None and time.time() >= deadline:
        return None
    with lock:
        trials = study.get_trials(deepcopy=False)
        if (failures(trials, me["launch"]) >= max_failures
                or sum(t.state in COUNTED for t in trials) >= total):
            return None
        trial = study.ask()
        trial.set_user_attr(WORKER, me)
    return trial


def failures(trials: list[FrozenTrial], launch: str) -> int:
    """Failed trials of one launch: tune.max_failures counts these, not those of earlier ones."""
    return sum(t.state == TrialState.FAIL and t.user_attrs.get(WORKER, {}).get("launch") == launch
               for t in trials)


def stale_trials(study: optuna.Study) -> list[FrozenTrial]:
    """RUNNING trials whose worker, on this machine, is gone (killed or crashed). Workers on
    other machines cannot be checked from here; their own machine's next launch does it."""
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if _dead(t.user_attrs.get(WORKER))]


def _dead(me: dict[str, str] | None) -> bool:
    if not me or me["host"] != socket.gethostname():
        return False
    lock = Path(me["lock"])
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(lock, timeout=0):
            pass
    except Timeout:
        return False
    lock.unlink(missing_ok=True)
    return True
