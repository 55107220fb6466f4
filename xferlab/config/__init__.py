"""Config schemas (the sections in `_schema`, registered in Hydra's ConfigStore), their
validation, and the registries' machinery (`Registry`, `Range`, `ConfigError`, `close_match`).

Every YAML under conf/ merges into these dataclasses, so a typo in a key or a value of the wrong
type fails at composition. Ranges and choices are checked by `validate`, which lists every
problem at once with the key, the value, what is allowed and a close match; the choices of each
ablation axis and the ranges of an option's own keys come from that axis's registry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import field
from typing import Any, cast

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from xferlab.config._registry import ConfigError, Range, Registry, close_match, select
from xferlab.config._schema import (
    BackboneConfig,
    Config,
    DataConfig,
    FreezeConfig,
    HeadConfig,
    L2SPConfig,
    OptimConfig,
    SchedConfig,
    TrackingConfig,
    TrainerConfig,
)

__all__ = [
    "AXES",
    "CHOICES",
    "BackboneConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "FreezeConfig",
    "HeadConfig",
    "L2SPConfig",
    "OptimConfig",
    "Range",
    "Registry",
    "SchedConfig",
    "TrackingConfig",
    "TrainerConfig",
    "close_match",
    "digest",
    "make_schema",
    "register",
    "select",
    "unknown_keys",
    "unused_keys",
    "validate",
]


def make_schema() -> type:
    """`Config`, each section widened by the own keys it lacks of the options registered on
    its axes: a plugin's option (xferlab/plugins.py) brings its keys and their defaults along
    (a key without a default is MISSING until its option's YAML sets it)."""
    sections = typing.get_type_hints(Config)
    added: dict[str, list[tuple[str, Any, Any]]] = {}
    for registry in Registry.ALL:
        base = sections.get(registry.section)
        if not dataclasses.is_dataclass(base):
            continue
        new = added.setdefault(registry.section, [])
        known = {f.name for f in dataclasses.fields(base)} | {name for name, _, _ in new}
        for _, option in registry.items():
            if not (isinstance(option, type) and dataclasses.is_dataclass(option)):
                continue
            hints = typing.get_type_hints(option)
            for f in dataclasses.fields(option):
                if f.init and f.name not in known:
                    default = (field(default_factory=f.default_factory)
                               if f.default_factory is not dataclasses.MISSING else
                               field(default=MISSING if f.default is dataclasses.MISSING
                                     else f.default))
                    new.append((f.name, hints[f.name], default))
                    known.add(f.name)
    widened = {name: dataclasses.make_dataclass(sections[name].__name__, keys,
                                                bases=(sections[name],))
               for name, keys in added.items() if keys}
    if not widened:
        return Config
    return dataclasses.make_dataclass(
        "Config", [(name, cls, field(default_factory=cls)) for name, cls in widened.items()],
        bases=(Config,))


def register() -> None:
    """Make the schema available as `xferlab_schema` to conf/config.yaml's defaults list."""
    ConfigStore.instance().store(name="xferlab_schema", node=make_schema())


# Settings with a fixed set of values; the ablation axes (AXES) take theirs from their registries.
CHOICES = {
    "data.loader": ("auto", "memory", "workers"),
    "trainer.device": ("auto", "cpu", "cuda"),
    "trainer.precision": ("auto", "fp32", "bf16"),
    "trainer.feature_cache": ("auto", "off"),
    "trainer.channels_last": ("auto", "true", "false"),
}
# The keys that name an option of an axis, each with one registry (in the module named).
AXES = {"backbone.pretrained": "backbones", "head.kind": "heads", "freeze.strategy": "freezing",
        "data.kind": "data", "data.augment": "data", "optim.name": "optim", "sched.name": "optim"}


def unused_keys(cfg: Any) -> set[str]:
    """Dotted keys that no chosen option uses: on each axis, the own keys of the options not
    chosen, less those of the chosen one (and of what another axis of the same section chose,
    e.g. data.kind and data.augment). What a run logs as params leaves them out."""
    unused: dict[str, set[str]] = {}
    used: dict[str, set[str]] = {}
    for registry in Registry.ALL:
        if not registry.section:
            continue
        chosen = select(cfg, registry.key)
        if chosen not in registry:  # e.g. backbone.pretrained=file:<path>: no dataclass anyway
            continue
        unused.setdefault(registry.section, set()).update(registry.foreign_keys(chosen))
        used.setdefault(registry.section, set()).update(registry.keys_of(chosen))
    return {f"{section}.{key}" for section, keys in unused.items()
            for key in keys - used[section]}


def unknown_keys(cfg: Any, schema: Any = None, prefix: str = "") -> list[str]:
    """Keys the schema does not know: Hydra's `+key=value` adds one even to a structured
    config, so a typo added that way would otherwise train silently."""
    schema = OmegaConf.structured(make_schema()) if schema is None else schema
    problems, known = [], list(schema.keys())  # `in` would miss keys whose default is MISSING
    for key in cfg:
        dotted = f"{prefix}{key}"
        if key not in known:
            siblings = [f"{prefix}{k}" for k in known]
            problems.append(f"{dotted} is not a config key{close_match(dotted, siblings)}; see "
                            "`xferlab train --cfg job` for every key")
        elif (isinstance(node := schema._get_node(key), DictConfig)
              and isinstance(cfg._get_node(key), DictConfig)):
            problems += unknown_keys(cfg[key], node, f"{dotted}.")
    return problems


def validate(cfg: Any) -> list[str]:
    """Every unknown key, range and choice problem of a composed config, one line each."""
    problems = unknown_keys(cfg) if isinstance(cfg, DictConfig) else []
    registries = {r.key: r for r in Registry.ALL}
    for key, module in AXES.items():
        if key not in registries:  # a programming error: the choices would go unchecked
            raise RuntimeError(f"no registry for {key}: import xferlab.{module} first")
        problems += registries[key].problems(cfg)
    for key, allowed in CHOICES.items():
        value = select(cfg, key)
        if value not in allowed:
            problems.append(
                f"{key}={value!r} is not one of {', '.join(allowed)}{close_match(value, allowed)}"
            )

    def check(key: str, ok: bool, allowed: str) -> None:
        if not ok:
            problems.append(f"{key}={select(cfg, key)!r} is out of range: {allowed}")

    d, t = cfg.data, cfg.trainer
    check("data.fraction", 0 < d.fraction <= 1, "use 0 < data.fraction <= 1 (e.g. 0.05)")
    if d.shots is not None:
        check("data.shots", d.shots >= 1, "use a whole number of images per class >= 1")
        if d.fraction != 1.0:
            problems.append(
                f"data.fraction={d.fraction} and data.shots={d.shots} are both set: "
                "choose one (data.shots=null or data.fraction=1.0)"
            )
    check("trainer.threads", t.threads in ("auto", None) or (
        isinstance(t.threads, int) and not isinstance(t.threads, bool) and t.threads >= 1),
        "use auto, a number of threads >= 1, or null for torch's default")
    check("data.val_fraction", 0 < d.val_fraction < 1, "use 0 < data.val_fraction < 1")
    check("data.test_fraction", 0 < d.test_fraction < 1, "use 0 < data.test_fraction < 1")
    check("data.image_size", d.image_size >= 8, "use data.image_size >= 8")
    check("data.in_chans", d.in_chans in (1, 3), "use data.in_chans=1 or 3")
    # auto with 0 workers reads a set it streams in the main process
    least = 1 if d.loader == "workers" else 0
    check("data.workers", d.workers >= least, f"use data.workers >= {least} DataLoader "
          "processes" + (", or data.loader=memory" if least else ""))
    if d.num_classes is not None:
        check("data.num_classes", d.num_classes >= 2, "a classification task needs >= 2 classes")
    check("trainer.epochs", t.epochs >= 1, "use trainer.epochs >= 1")
    check("trainer.batch_size", t.batch_size >= 2, "use trainer.batch_size >= 2")
    check("trainer.eval_batch_size", t.eval_batch_size >= 1, "use trainer.eval_batch_size >= 1")
    if t.max_steps is not None:
        check("trainer.max_steps", t.max_steps >= 1, "use trainer.max_steps >= 1 or null")
    if t.steps_per_epoch is not None:
        check("trainer.steps_per_epoch", t.steps_per_epoch >= 1, "use a value >= 1 or null")
    check("trainer.checkpoint_every", t.checkpoint_every >= 0, "use epochs >= 1, or 0 for none")
    check("optim.lr", cfg.optim.lr > 0, "use a learning rate > 0 (e.g. optim.lr=1e-3)")
    check("optim.weight_decay", cfg.optim.weight_decay >= 0, "use optim.weight_decay >= 0")
    check("optim.label_smoothing", 0 <= cfg.optim.label_smoothing < 1, "use 0 <= value < 1")
    check("optim.l2sp.alpha", cfg.optim.l2sp.alpha >= 0, "use optim.l2sp.alpha >= 0")
    check("optim.l2sp.beta", cfg.optim.l2sp.beta >= 0, "use optim.l2sp.beta >= 0")
    check("sched.warmup_frac", 0 <= cfg.sched.warmup_frac < 1, "use 0 <= sched.warmup_frac < 1")
    return problems


# Keys that change where, how fast or how visibly a run trains, not what it ends with.
# (`trainer.device` is not among them: on CUDA it selects bf16.)
NOT_IN_RESULT = ("tracking", "data.loader", "data.workers", "trainer.progress", "trainer.threads",
                 "trainer.feature_cache", "trainer.checkpoint_every",
                 "trainer.resume", "trainer.compile", "trainer.channels_last")


def digest(cfg: DictConfig) -> str:
    """16 hex digits identifying what a config computes: equal digests, equal results."""
    # a DictConfig's container is a dict (to_container is typed for any node)
    tree = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
    for dotted in NOT_IN_RESULT:
        *parents, leaf = dotted.split(".")
        node = tree
        for part in parents:
            node = node[part]
        node.pop(leaf)
    # a key that make_schema added counts only where its option is chosen: a config keeps its
    # digest whether or not a plugin whose options have keys of their own is installed
    base, own = OmegaConf.structured(Config), dict[str, set[str]]()
    for registry in Registry.ALL:
        chosen = select(cfg, registry.key)
        keys = own.setdefault(registry.section, set())
        if chosen in registry and dataclasses.is_dataclass(registry[chosen]):
            keys.update(registry.own_keys(chosen))
    for section, keys in own.items():
        if section in base and isinstance(tree.get(section), dict):
            for key in set(tree[section]) - set(base[section].keys()) - keys:
                del tree[section][key]
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()[:16]
