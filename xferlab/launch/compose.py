"""Compose configs the way `xferlab train` will, and turn Hydra's errors into one-line fixes.

The CLI composes every job of a launch up front, so a typo in a grid fails in a second with
exit code 2 instead of after the first jobs have trained.
"""

from __future__ import annotations

import copy
import functools
import os
import re
import socket
import string
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException, OverrideParseException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

# the axes' registries (torch-free): `validate` checks every choice against them
from xferlab import backbones, data, evaluate, freezing, heads, optim, packages, plugins  # noqa: F401
from xferlab.config import ConfigError, close_match, register, validate
from xferlab.tracking import masked

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
# conf/, then the config folders of the plugins (xferlab/plugins.py), imported here: their
# options are registered before any config is composed or checked
CONF_DIRS = (CONF_DIR, *plugins.load())
# MLflow's tracking stores but its deprecated file store (DESIGN.md §6); `+driver` is allowed
TRACKING_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks")


def job_overrides(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override list of each job Hydra will launch (one job unless multirun)."""
    if not multirun:
        return [overrides]
    batches = BasicSweeper.split_arguments(parse(overrides), None)
    return [job for batch in batches for job in batch]


def parse(overrides: list[str]) -> list[Override]:
    """Hydra's parse, with a syntax error as a one-line ConfigError."""
    try:
        return OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as err:
        reason = str(err).splitlines()[0]
        raise ConfigError([(f"cannot parse the overrides ({reason}): quote values holding '=' "
                            "or spaces, e.g. 'key=[\"a=1\",\"b=2\"]'")]) from None


def compose(overrides: list[str]) -> DictConfig:
    """The job's config without Hydra's node, or ConfigError listing every bad override."""
    return compose_with_choices(overrides)[0]


def compose_with_choices(overrides: list[str]) -> tuple[DictConfig, dict[str, str]]:
    """`compose`, plus the group choices (e.g. {'freeze': 'lp_ft'}) for run names and tags."""
    register()
    parsed = parse(overrides)
    problems = [p for o in parsed if (p := _group_problem(o.key_or_group, o.value()))]
    if problems:
        raise ConfigError(problems)
    try:
        return _compose(overrides)
    except (HydraException, OmegaConfBaseException):
        pass
    # Find which overrides fail, each against the groups the user chose. (The parser sets each
    # override's input_line; Hydra types it Optional.)
    groups = [cast(str, o.input_line) for o in parsed if _is_group(o.key_or_group)]
    base, _ = _compose(groups)
    for o in parsed:
        if _is_group(o.key_or_group):
            continue
        try:
            _compose([*groups, cast(str, o.input_line)])
        except (HydraException, OmegaConfBaseException) as err:
            problems.append(_explain(o.key_or_group, o.value(), err, base))
    raise ConfigError(problems or [f"cannot compose {' '.join(overrides)}"])


def _compose(overrides: list[str]) -> tuple[DictConfig, dict[str, str]]:
    # return_hydra_config so that hydra.* overrides (launchers, sweep dirs) are checked too
    if GlobalHydra.instance().is_initialized():  # inside a running Hydra app
        cfg = hydra_compose("config", overrides=overrides, return_hydra_config=True)
    else:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = hydra_compose("config", overrides=overrides, return_hydra_config=True)
    choices = {k: str(v) for k, v in cfg.hydra.runtime.choices.items()
               if not k.startswith("hydra/") and v is not None}
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, choices


# The only flags `help_page` answers with; any other goes to Hydra's own --help.
HELP_FLAGS = ("-h", "--help", "-m", "--multirun", "--resolve")


def help_page(app: str, args: list[str]) -> str | None:
    """Hydra's `--help` page of `xferlab <app>` (train, pretrain) for these arguments: the same
    text from one composition. Hydra lists each group's options from a deep copy of its whole
    config repository, the schema included, one copy per group: 6-9 s on two cores for a page
    this takes a fraction of a second to write. A grid (`-m a=1,2`) shows its first job's
    config. None where Hydra must answer: a flag besides HELP_FLAGS (e.g. --config-dir), or a
    help template (hydra.help.template) that names more than $APP_CONFIG_GROUPS and $CONFIG."""
    if any(a.startswith("-") and a not in HELP_FLAGS for a in args):
        return None
    overrides = [a for a in args if not a.startswith("-")]
    job = job_overrides(overrides, multirun="-m" in args or "--multirun" in args)[0]
    register()
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name=app):
            cfg = hydra_compose("config", overrides=job, return_hydra_config=True)
            template = string.Template(cfg.hydra.help.template)
            if set(template.get_identifiers()) - {"APP_CONFIG_GROUPS", "CONFIG"}:
                return None
            loader = GlobalHydra.instance().config_loader()
            # the loader's own repository, not a copy per call (ConfigLoaderImpl's attribute)
            groups = _config_groups(getattr(loader, "repository", loader))
    except (HydraException, OmegaConfBaseException):
        compose(job)  # raises ConfigError with a line per bad override
        raise
    job_cfg = copy.deepcopy(cfg)
    with open_dict(job_cfg):
        del job_cfg["hydra"]
    return template.substitute(
        APP_CONFIG_GROUPS="".join(f"{group}: {', '.join(sorted(options))}\n"
                                  for group, options in sorted(groups.items())
                                  if group != "hydra" and not group.startswith("hydra/")),
        CONFIG=OmegaConf.to_yaml(job_cfg, resolve="--resolve" in args))


def _config_groups(repo, parent: str = "") -> dict[str, list[str]]:
    """Every config group under `parent` that holds options, with them (Hydra's walk)."""
    from hydra.core.object_type import ObjectType

    found = {}
    for name in repo.get_group_options(parent, ObjectType.GROUP):
        group = f"{parent}/{name}" if parent else name
        if options := repo.get_group_options(group, ObjectType.CONFIG):
            found[group] = options
        found.update(_config_groups(repo, group))
    return found


def _is_group(key: str) -> bool:
    # hydra/* groups also hold Hydra's and its plugins' options (hydra/launcher=joblib, ray,
    # submitit_slurm) beside the files in conf/hydra/: Hydra checks those itself
    return not key.startswith("hydra/") and any((d / key).is_dir() for d in CONF_DIRS)


def options(group: str) -> list[str]:
    """The options of a config group in conf/ and the plugins' folders, found recursively
    (e.g. 'sub/option')."""
    return sorted({str(p.relative_to(d / group).with_suffix(""))
                   for d in CONF_DIRS for p in (d / group).rglob("*.yaml")})


def _group_problem(key: str, value: object) -> str | None:
    if not _is_group(key) or not isinstance(value, str) or value in options(key):
        return None
    allowed = options(key)
    return (f"{key}={value!r} is not an option of '{key}': choose one of "
            f"{', '.join(allowed)}{close_match(value, allowed)}")


def _explain(key: str, value: object, err: Exception, base: DictConfig) -> str:
    """One line naming the key, the value and the fix."""
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(base, parent_key) if parent_key else base
    if not key.startswith("hydra") and isinstance(parent, DictConfig) and leaf not in parent:
        siblings = [f"{parent_key}.{k}" if parent_key else k for k in map(str, parent)]
        return (f"{key} is not a config key{close_match(key, siblings)}; "
                f"see `xferlab train --cfg job` for every key")
    cause = err.__cause__ or err
    reason = str(cause).splitlines()[0]
    if key.startswith("hydra"):
        return f"{key}={value!r}: {reason}"
    expected = OmegaConf.select(base, key)
    kind = type(expected).__name__ if expected is not None else "a valid value"
    return f"{key}={value!r} is invalid ({reason}); give {kind} like {key}={expected!r}"


def check(cfg: DictConfig) -> list[str]:
    """Every problem of a composed config seen without importing torch: ranges, choices,
    weights files, `mlflow:` and `source:` names, the data kind's own checks (a missing package,
    a missing folder) and the tracking store."""
    problems = validate(cfg)
    source = cfg.backbone.pretrained
    if source.startswith("file:") and not Path(source[5:]).expanduser().is_file():
        problems.append(f"backbone.pretrained={source!r}: no such file; give the path of a "
                        ".safetensors, .pth or .bin weights file")
    if source.startswith("mlflow:") and not re.match(r"[A-Za-z][\w+.-]*:", source[7:]):
        problems.append(f"backbone.pretrained={source!r} is not an MLflow artifact URI: write "
                        "mlflow:runs:/<run id>/checkpoint/backbone.safetensors (a local file "
                        "is file:<path>)")
    if source.startswith("package:") and (problem := packages.weights_problem(source)):
        problems.append(problem)
    if cfg.data.kind in data.DATA_KINDS:
        problems += data.DATA_KINDS.build(cfg.data.kind, cfg.data).problems()
    problems += evaluate.problems(cfg.data)
    uri_key = "tracking.uri" if cfg.tracking.uri else "MLFLOW_TRACKING_URI"
    uri = cfg.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri and (problem := tracking_uri_problem(uri)):
        problems.append(f"{uri_key}={masked(uri)!r} {problem}")
    if source.startswith("source:"):
        name = source.split(":", 1)[1]
        known = [o.removeprefix("source_") for o in options("experiment")
                 if o.startswith("source_")]
        if name not in known:
            problems.append(f"backbone.pretrained='source:{name}' names no source: use one of "
                            f"{', '.join('source:' + k for k in known)} "
                            "(conf/experiment/source_<set>.yaml)")
    return problems


@functools.cache  # a grid checks each job's config: ask a server once
def tracking_uri_problem(uri: str) -> str | None:
    """What is wrong with an MLflow tracking URI (an unknown scheme, a server that does not
    answer), or None."""
    scheme = uri.split(":", 1)[0].split("+", 1)[0] if ":" in uri else ""
    fix = ("use sqlite:///<path>/mlflow.db, http(s)://<host>:<port> of an MLflow server or an "
           "RDB URL (postgresql://...), or drop it to use outputs/mlflow.db")
    if scheme not in TRACKING_SCHEMES:
        return f"is not an MLflow tracking URI{close_match(scheme, TRACKING_SCHEMES)}: {fix}"
    if scheme == "sqlite" and not uri.split(":", 1)[1].startswith("///"):
        return "is not a SQLite file URI: write sqlite:///<path>/mlflow.db (three slashes)"
    if scheme in ("http", "https"):
        try:  # MLflow itself retries a dead server for minutes before it gives up
            parts = urlsplit(uri)
            address = (parts.hostname or "localhost",
                       parts.port or (443 if scheme == "https" else 80))
            socket.create_connection(address, timeout=5).close()
        except ValueError as err:  # e.g. a port that is not a number
            return f"is not a URL ({err}): {fix}"
        except OSError as err:
            return (f"does not answer ({err.strerror or err}): start the server (mlflow server "
                    "--port ...), or drop it to use outputs/mlflow.db")
    return None
