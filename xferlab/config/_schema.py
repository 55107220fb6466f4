"""The config's sections as dataclasses: every key, its type and its default (DESIGN.md §4).
An option's own keys come from its registry (`make_schema` widens these sections with them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING


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
