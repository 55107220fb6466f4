"""Search files (conf/search/*.yaml) and the `tune.*` keys: schemas and checks.

A search file declares the searched config keys and how to search them:

    objective: val/acc_best              # or a list: [val/acc_best, params/trainable]
    sampler: tpe                         # tpe | random | cmaes | grid | nsga2
    pruner: median                       # median | hyperband | none
    params:
      optim.lr: {type: float, low: 1.0e-5, high: 1.0e-1, log: true}
      freeze: {type: categorical, choices: [linear_probe, last_k]}
      freeze.k: {type: int, low: 1, high: 4, when: {freeze: last_k}}
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, cast

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from xferlab.config import ConfigError, close_match
from xferlab.tune._samplers import PRUNERS, SAMPLERS

# Run metrics a search can optimise (DESIGN.md §6), each with its natural direction.
OBJECTIVES = {
    "val/acc_best": "maximize", "val/acc": "maximize", "best/val_acc": "maximize",
    "test/acc": "maximize", "val/loss": "minimize", "test/loss": "minimize",
    "train/loss": "minimize", "params/trainable": "minimize", "params/total": "minimize",
    "time/epoch_s": "minimize", "throughput/img_s": "maximize",
}
TYPES = ("float", "int", "categorical")


class SearchError(ConfigError):
    """A user error in a search file or a `tune.*` key: one line per problem, each with its fix."""


@dataclass
class Param:
    """One searched config key (or config group): a float or int range, or categorical choices."""

    type: str = MISSING  # float | int | categorical
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None
    # searched only where these (categorical) params took these values
    when: dict[str, Any] = field(default_factory=dict)


@dataclass
class Search:
    """A search file: the space, the objectives, and how to sample and prune."""

    params: dict[str, Param] = field(default_factory=dict)
    objective: list[str] = field(default_factory=lambda: ["val/acc_best"])
    direction: list[str] | None = None  # one per objective; null = each metric's natural direction
    sampler: str = "tpe"
    pruner: str = "median"
    startup_trials: int = 5  # trials sampled at random, and never pruned, before the others learn
    warmup_epochs: int = 1  # epochs every trial trains before the pruner may stop it

    @property
    def directions(self) -> list[str]:
        return self.direction or [OBJECTIVES[o] for o in self.objective]

    def record(self) -> dict[str, Any]:
        """What a study must keep to be resumed: the space and the objectives, as JSON data."""
        return json.loads(json.dumps({"params": {k: asdict(p) for k, p in self.params.items()},
                                      "objective": self.objective, "directions": self.directions}))


@dataclass
class Options:
    """`xferlab tune`'s own keys, given as `tune.<key>=<value>` beside the train overrides."""

    study: str | None = None  # null = <search>-<experiment>
    trials: int = 20  # the study's total, counted over resumes and workers (failed trials excluded)
    timeout: float | None = None  # seconds after which this launch starts no new trial
    workers: int = 1  # worker processes on this machine
    storage: str | None = None  # null = journal file outputs/tune/<study>.journal; or an RDB URL
    max_failures: int = 3  # failed trials after which this launch stops
    seed: int | None = None  # of the samplers; null = fresh each launch, a number replays one
    sampler: str | None = None  # null = the search file's
    pruner: str | None = None  # null = the search file's


def parse_options(pairs: list[str]) -> Options:
    """`tune.trials=40`-style arguments as Options, or SearchError naming every bad one."""
    node, problems = OmegaConf.structured(Options), []
    names = [f.name for f in fields(Options)]
    for pair in pairs:
        key, _, value = pair.partition("=")
        name = key.removeprefix("tune.")
        if name not in names:
            keys = [f"tune.{n}" for n in names]
            problems.append(f"{key} is not a tune key{close_match(key, keys)}; use one of "
                            + ", ".join(keys))
            continue
        try:
            node.merge_with(OmegaConf.from_dotlist([f"{name}={value}"]))
        except OmegaConfBaseException as err:
            example = getattr(Options, name)
            like = f" like {key}={example}" if example is not None else ""
            problems.append(f"{key}={value!r} is invalid ({_reason(err)}); give "
                            f"{_kind(Options, name)}{like}")
    options = cast(Options, OmegaConf.to_object(node))  # node is a structured Options
    problems += _check_options(options)  # a key that failed above kept its valid default
    if problems:
        raise SearchError(problems)
    return options


def _check_options(o: Options) -> list[str]:
    checks = [
        ("trials", o.trials >= 1, "use a total of at least 1 trial"),
        ("workers", o.workers >= 1, "use at least 1 worker"),
        ("timeout", o.timeout is None or o.timeout > 0, "use seconds > 0, or null for none"),
        ("max_failures", o.max_failures >= 1, "use at least 1"),
        ("study", o.study is None or re.fullmatch(r"[\w.-]+", o.study) is not None,
         "use letters, digits, '.', '_' and '-' (it names the journal file)"),
    ]
    problems = [f"tune.{key}={getattr(o, key)!r} is out of range: {fix}"
                for key, ok, fix in checks if not ok]
    for key, allowed in (("sampler", tuple(SAMPLERS)), ("pruner", tuple(PRUNERS))):
        value = getattr(o, key)
        if value is not None and value not in allowed:
            problems.append(f"tune.{key}={value!r} is not a {key}: choose one of "
                            f"{', '.join(allowed)}{close_match(value, allowed)}")
    return problems


def load_search(ref: str, folder: Path, options: Options) -> tuple[str, Search]:
    """The search `ref` names (conf/search/<ref>.yaml, or a path to a .yaml) and its name,
    with `tune.sampler` / `tune.pruner` applied; SearchError lists every problem in it."""
    path = Path(ref) if ref.endswith((".yaml", ".yml")) else folder / f"{ref}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.yaml"))
        raise SearchError([(f"search={ref!r} is not a search file: choose one of "
                           f"{', '.join(known)} (conf/search/) or give a .yaml path"
                           f"{close_match(ref, known)}")])
    name = path.stem
    problems: list[str] = []
    raw = OmegaConf.load(path)
    if not isinstance(raw, DictConfig):
        raise SearchError([f"search {name}: {path} is not a mapping of search keys"])
    for key in ("objective", "direction"):  # one objective may be written without a list
        if key in raw and isinstance(raw[key], str):
            raw[key] = [raw[key]]
    raw_params = raw.pop("params", None)
    search = _build(Search, raw, f"search {name}", problems)
    params: dict[str, Param] = {}
    if isinstance(raw_params, DictConfig):
        for param_key, spec in raw_params.items():  # keys as YAML wrote them: strings
            param = _build(Param, spec, f"search {name}: params.{param_key!s}", problems)
            if param is not None:
                params[str(param_key)] = param
    elif raw_params is not None:
        problems.append(f"search {name}: params must map config keys to "
                        "{type: ..., low: ..., high: ...} or {type: categorical, choices: [...]}")
    if search is None or problems:
        raise SearchError(problems)
    search = replace(search, params=params, sampler=options.sampler or search.sampler,
                     pruner=options.pruner or search.pruner)
    problems = _check_search(f"search {name}", search)
    if problems:
        raise SearchError(problems)
    return name, search


def _build(schema: type, raw: Any, where: str, problems: list[str]) -> Any:
    """`raw` merged into the dataclass `schema`; each unknown key or bad value is one problem."""
    if not isinstance(raw, DictConfig):
        problems.append(f"{where}: {raw!r} is not a mapping: write {{key: value, ...}}")
        return None
    node, names = OmegaConf.structured(schema), [f.name for f in fields(schema)]
    for key in raw:
        if key not in names:
            problems.append(f"{where}: {key!s} is not a key{close_match(key, names)}; "
                            f"use {', '.join(names)}")
            continue
        try:
            node.merge_with({key: raw[key]})
        except OmegaConfBaseException as err:
            problems.append(f"{where}: {key}={raw[key]!r} is invalid ({_reason(err)}); "
                            f"give {_kind(schema, key)}")
    if "type" in names and OmegaConf.is_missing(node, "type"):  # the one mandatory key
        problems.append(f"{where}: type is missing: give one of {', '.join(TYPES)}")
    return None if problems else OmegaConf.to_object(node)


def _check_search(where: str, s: Search) -> list[str]:
    """Every problem a search has on its own (its keys are checked against the config apart)."""
    problems = [] if s.params else [(f"{where}: params is empty: declare at least one searched "
                                    "key, e.g. optim.lr: {type: float, low: 1.0e-4, high: 0.1}")]
    for key, p in s.params.items():
        problems += _check_param(f"{where}: params.{key}", key, p, s.params)
    unknown = [o for o in s.objective if o not in OBJECTIVES]
    problems += [f"{where}: objective {o!r} is not a run metric: use one of "
                 f"{', '.join(OBJECTIVES)}{close_match(o, list(OBJECTIVES))}" for o in unknown]
    if not s.objective or len(set(s.objective)) != len(s.objective):
        problems.append(f"{where}: objective={s.objective} must name one or more distinct metrics")
    if s.direction is not None and (len(s.direction) != len(s.objective) or any(
            d not in ("maximize", "minimize") for d in s.direction)):
        problems.append(f"{where}: direction={s.direction} must give maximize or minimize for "
                        f"each of the {len(s.objective)} objective(s), or be left out")
    for key, allowed in (("sampler", tuple(SAMPLERS)), ("pruner", tuple(PRUNERS))):
        value = getattr(s, key)
        if value not in allowed:
            problems.append(f"{where}: {key}={value!r} is not a {key}: choose one of "
                            f"{', '.join(allowed)}{close_match(value, allowed)}")
    if s.startup_trials < 0 or s.warmup_epochs < 0:
        problems.append(f"{where}: startup_trials and warmup_epochs must be >= 0")
    if problems:
        return problems
    if PRUNERS[s.pruner].prunes and s.directions != ["maximize"]:
        problems.append(f"{where}: pruner={s.pruner} prunes on val/acc, which fits one maximised "
                        "objective only: set pruner: none")
    problems += SAMPLERS[s.sampler].problems(s, where)
    return problems


def _check_param(at: str, name: str, p: Param, params: dict[str, Param]) -> list[str]:
    if p.type not in TYPES:
        return [f"{at}: type={p.type!r} is not one of {', '.join(TYPES)}"
                f"{close_match(p.type, TYPES)}"]
    problems = []
    if p.type == "categorical":
        if not p.choices:
            problems.append(f"{at}: a categorical needs choices: [a, b, ...]")
    elif p.low is None or p.high is None:
        problems.append(f"{at}: a {p.type} needs low and high")
    else:
        if p.low >= p.high:
            problems.append(f"{at}: low={p.low:g}, high={p.high:g} is an empty range: give "
                            "low < high")
        if p.log and p.low <= 0:
            problems.append(f"{at}: log scale needs low > 0 (got {p.low:g})")
        if p.step is not None and (p.step <= 0 or p.log):
            problems.append(f"{at}: step={p.step:g} must be > 0 and cannot go with log: true")
        if p.type == "int" and any(v is not None and v != int(v) for v in (p.low, p.high, p.step)):
            problems.append(f"{at}: an int needs whole low, high and step")
    names = list(params)
    for key, value in p.when.items():
        cond = params.get(key)
        if cond is None or cond.type != "categorical" or names.index(key) > names.index(name):
            problems.append(f"{at}: when {key}={value!r}: {key} must be a categorical param "
                            "declared above this one")
        elif value not in (cond.choices or []):  # none: cond's own check says so
            problems.append(f"{at}: when {key}={value!r}: {value!r} is not one of its choices "
                            f"{cond.choices}")
    return problems


def _reason(err: OmegaConfBaseException) -> str:
    return str(err).splitlines()[0]


def _kind(schema: type, key: str) -> str:
    kind = next(f.type for f in fields(schema) if f.name == key)
    return str(kind).replace(" | None", " or null")
