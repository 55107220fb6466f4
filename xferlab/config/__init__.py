"""Config schemas (registered in Hydra's ConfigStore), their validation, and the registries'
machinery (`Registry`, `Range`, `ConfigError`, `close_match`).

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
from dataclasses import dataclass, field
from typing import Any, cast

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from xferlab.config._registry import ConfigError, Range, Registry, close_match, select

__all__ = [
    "AXES",
    "Config",
    "ConfigError",
    "Range",
    "Registry",
    "close_match",
    "digest",
    "make_schema",
    "register",
    "select",
    "unknown_keys",
    "unused_keys",
    "validate",
]


@dataclass
class BackboneConfig:
    name: str = MISSING  # any timm model name
    # none | timm | timm:<tag> | file:<path> | mlflow:<uri> | source:<set> | package:<package>
    pretrained: str = "none"
    drop_path_rate: float = 0.0
    # source:<set> only: overrides of the source's own config, e.g. [trainer.max_steps=200]
    source_overrides: list[str] = field(default_factory=list)


@dataclass
class HeadConfig:
    kind: str = "linear"  # linear | mlp | cosine
    hidden: int = 256  # mlp
    dropout: float = 0.0  # mlp
    scale: float = 16.0  # cosine: logit scale
    learn_scale: bool = True  # cosine


@dataclass
class FreezeConfig:
    strategy: str = "full"
    k: int = 2  # last_k: trainable layer groups besides the head
    every: int = 1  # gradual: epochs between unfreezing one more group
    lp_epochs: int = 2  # lp_ft: epochs of linear probing before fine-tuning
    ft_lr_scale: float = 0.1  # lp_ft: backbone lr scale in the fine-tuning phase
    decay: float = 0.75  # layer_decay: lr scale is decay ** depth from the head
    norms: bool = False  # bitfit: norm affine parameters train too
    rank: int = 8  # lora
    alpha: float = 16.0  # lora
    # lora: module name patterns; null = every conv/linear in blocks
    targets: list[str] | None = None


@dataclass
class DataConfig:
    # digits | glyphs | image_folder | torchvision | animal_mnist | mnist_5k | elpv
    kind: str = MISSING
    name: str = MISSING  # display name; the dataset class name for torchvision
    num_classes: int | None = None  # stated by the option; null = whatever the data holds
    image_size: int = 32
    in_chans: int = 1
    fraction: float = 1.0  # of the training split, stratified and nested per subset_seed
    shots: int | None = None  # images per class instead of a fraction
    subset_seed: int = 0
    seed: int = 0  # generation and split seed (fixed test split per seed)
    val_fraction: float = 0.15
    test_fraction: float = 0.2
    augment: str = "none"  # none | light | randaugment
    # extra evaluation sets: datasets with the target's classes (mnist_5k for digits) and
    # corruptions of the test split, <corruption>-<1..5> or corrupt-<1..5> (xferlab.evaluate)
    eval_sets: list[str] = field(default_factory=list)
    size: int = 40000  # glyphs: images generated
    charset: str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # glyphs
    root: str | None = None  # image_folder / torchvision
    val_root: str | None = None
    test_root: str | None = None
    download: bool = False  # torchvision
    elpv_task: str = "binary"  # elpv: binary (defect probability >= 0.5) | four (0, 1/3, 2/3, 1)
    # memory: decode every image up front into one uint8 tensor; workers: read image_folder and
    # torchvision sets without an image array (e.g. Food101) on demand, in `data.workers`
    # DataLoader processes (sets that are arrays already, digits, glyphs, CIFAR, MNIST, stay in
    # memory: streaming them is meaningless); auto: workers when the decoded set, all splits,
    # would exceed 2 GiB (STREAM_ABOVE_BYTES in xferlab/data/_stream.py), else memory
    loader: str = "auto"
    workers: int = 4  # DataLoader worker processes when streaming (persistent across epochs)


@dataclass
class L2SPConfig:
    alpha: float = 0.0  # pull of the backbone towards its pretrained weights
    beta: float = 0.0  # pull of the head towards zero


@dataclass
class OptimConfig:
    name: str = "adamw"  # adamw | sgd
    lr: float = 1e-3
    weight_decay: float = 0.05
    momentum: float = 0.9  # sgd
    label_smoothing: float = 0.0
    l2sp: L2SPConfig = field(default_factory=L2SPConfig)


@dataclass
class SchedConfig:
    name: str = "cosine"  # cosine | constant
    warmup_frac: float = 0.0  # share of all steps spent warming up linearly
    min_lr_ratio: float = 0.0  # cosine floor as a share of the peak lr


@dataclass
class TrainerConfig:
    epochs: int = 10
    batch_size: int = 64
    eval_batch_size: int = 512
    eval_every_epoch: bool = False  # data.eval_sets every epoch too, not only with the best weights
    max_steps: int | None = None  # a fixed step budget; overrides epochs when set
    steps_per_epoch: int | None = None  # null = one pass over the training data
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
    # torch intra-op threads: auto = the cores / the jobs this launch runs at once (joblib's
    # n_jobs, tune's workers), so parallel jobs never oversubscribe; a number; null = torch's
    threads: Any = "auto"
    progress: bool = True
    # auto: while the backbone is frozen (and inputs are not augmented), train the head on
    # cached backbone features (outputs/cache/features/); off: run the backbone every step
    feature_cache: str = "auto"
    checkpoint_every: int = 1  # epochs between resumable checkpoints; 0 = none
    compile: bool = False  # torch.compile the model (worth it for long runs on CUDA)
    # NHWC memory format: auto = on CUDA, and on CPU for convolutional backbones (EfficientNet-
    # Lite0 trains 1.3x and evaluates 2.8x faster in it on 2 cores, ResNet-18 1.1x); off for ViTs
    channels_last: str = "auto"  # auto | true | false
    resume: bool = False  # continue the newest unfinished run of this config from its checkpoint


@dataclass
class TrackingConfig:
    experiment: str = "xferlab"
    uri: str | None = None  # null = sqlite:///outputs/mlflow.db (or MLFLOW_TRACKING_URI)


@dataclass
class Config:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    freeze: FreezeConfig = field(default_factory=FreezeConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sched: SchedConfig = field(default_factory=SchedConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    seed: int = 0


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
