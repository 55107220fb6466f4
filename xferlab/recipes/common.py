"""The steps recipes share: checks, device, data and model from a config, names and summary."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from xferlab import backbones, checkpoint, config, data, heads, tracking
from xferlab.freezing import add_lora, layer_groups
from xferlab.recipes import compose, sources

# Errors that are the user's to fix: one line, exit code 2, no traceback, no MLflow run.
USER_ERRORS = (config.ConfigError, data.DataError, backbones.WeightsError,
               backbones.BackboneError, checkpoint.CheckpointError)


def exit_user_error(err: Exception) -> NoReturn:
    for line in str(err).splitlines():
        print(f"xferlab: error: {line}", file=sys.stderr)
    sys.exit(2)


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Bad input exits 2 and a diverged run exits 1, each with one line instead of a traceback
    (the run itself is FAILED with its traceback as an artifact)."""
    try:
        yield
    except USER_ERRORS as err:
        exit_user_error(err)
    except FloatingPointError as err:
        print(f"xferlab: error: {err}", file=sys.stderr)
        sys.exit(1)
    except Exception as err:
        if "database is locked" not in str(err):
            raise
        # SQLite takes one writer at a time; past some dozens of concurrent runs it gives up
        print("xferlab: error: the SQLite MLflow store is locked by other writers (database is "
              "locked): for many concurrent runs use an MLflow tracking server on PostgreSQL, "
              "tracking.uri=http://<host>:5000 (README, Scaling out)", file=sys.stderr)
        sys.exit(1)


def preflight(cfg: DictConfig) -> list[str]:
    """Every problem of a composed config that can be seen before building anything (a source
    included): DataError for an image folder without class folders or images."""
    problems = compose.check(cfg)
    if cfg.data.kind == "image_folder" and not problems:
        data.check_roots(cfg.data.root, cfg.data.val_root, cfg.data.test_root)
    name_problem = backbones.check_model_name(cfg.backbone.name)
    return [*problems, name_problem] if name_problem else problems


def device_and_precision(trainer: DictConfig) -> tuple[torch.device, bool]:
    """The device to use, and whether to autocast to bf16 (CUDA only)."""
    if trainer.device == "cuda" and not torch.cuda.is_available():
        raise config.ConfigError([("trainer.device='cuda' but no CUDA device is visible: use "
                                   "trainer.device=auto or cpu")])
    use_cuda = trainer.device == "cuda" or (trainer.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if use_cuda else "cpu")
    bf16 = use_cuda and trainer.precision in ("auto", "bf16")
    return device, bf16


def runtime(cfg: DictConfig) -> tuple[torch.device, bool]:
    """Seed, device, bf16 or not, and torch's thread count: what every recipe sets first."""
    torch.manual_seed(cfg.seed)
    device, bf16 = device_and_precision(cfg.trainer)
    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    return device, bf16


def training_subset(d: DictConfig, ds: data.Datasets) -> tuple[np.ndarray, data.Split]:
    """The (nested, stratified) training subset: its indices into the pool, and the split."""
    subset = data.subset_indices(ds.train.labels, fraction=d.fraction, shots=d.shots,
                                 subset_seed=d.subset_seed)
    return subset, ds.train.take(subset)


def placed_model(cfg: DictConfig, ds: data.Datasets, device: torch.device) -> tuple[
        heads.TransferModel, backbones.LoadReport, sources.Source | None, bool]:
    """The model from its pretrained source (a source xferlab built, else
    `backbone.pretrained`) on the device, in the memory format of `trainer.channels_last`; the
    source; whether that format is channels_last."""
    source = sources.lookup(cfg)
    model, report = build_model(cfg, ds, f"file:{source.path}" if source
                                else cfg.backbone.pretrained)
    channels_last = cfg.trainer.channels_last == "true" or (
        cfg.trainer.channels_last == "auto"
        and (device.type == "cuda" or _convolutional(model.backbone)))
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    return model, report, source, channels_last


def _convolutional(backbone: torch.nn.Module) -> bool:
    """More than one 2-D convolution: a ViT's only one is its patch embedding."""
    return sum(isinstance(m, torch.nn.Conv2d) for m in backbone.modules()) > 1


def load_data(d: DictConfig) -> data.Datasets:
    """The dataset; images read on demand (`data.loader`) come from `data.workers` DataLoader
    processes: pass `workers=` to the engine's Loop."""
    ds = data.load_dataset(
        d.kind, name=d.name, image_size=d.image_size, in_chans=d.in_chans, seed=d.seed,
        val_fraction=d.val_fraction, test_fraction=d.test_fraction, size=d.size,
        charset=d.charset, root=d.root, val_root=d.val_root, test_root=d.test_root,
        download=d.download, cache_dir=Path("outputs/cache"), loader=d.loader,
        elpv_task=d.elpv_task,
    )
    if d.num_classes is not None and d.num_classes != ds.num_classes:
        raise data.DataError(f"data.num_classes={d.num_classes} but {d.name} holds "
                             f"{ds.num_classes} classes: set data.num_classes={ds.num_classes}")
    return ds


def build_model(cfg: DictConfig, ds: data.Datasets, pretrained: str) -> tuple[
        heads.TransferModel, backbones.LoadReport]:
    """Backbone from its pretrained source (none for `scratch`), LoRA if asked, and the head."""
    pretrained = "none" if cfg.freeze.strategy == "scratch" else pretrained
    backbone, report = backbones.create_backbone(
        cfg.backbone.name, pretrained=pretrained, in_chans=ds.in_chans,
        image_size=ds.image_size, drop_path_rate=cfg.backbone.drop_path_rate,
        tracking_uri=tracking.resolve_uri(cfg.tracking.uri))
    if cfg.freeze.strategy == "lora":
        backbone = add_lora(backbone, rank=cfg.freeze.rank, alpha=cfg.freeze.alpha,
                            targets=list(cfg.freeze.targets) if cfg.freeze.targets else None)
    h = cfg.head
    head = heads.make_head(h.kind, backbone.num_features, ds.num_classes, hidden=h.hidden,
                           dropout=h.dropout, scale=h.scale, learn_scale=h.learn_scale)
    model = heads.TransferModel(backbone, head)
    if cfg.freeze.strategy == "last_k":  # a k beyond the backbone's groups would be `full`
        n = len(layer_groups(model)) - 1  # the head is the last group
        if cfg.freeze.k > n:
            raise config.ConfigError([(
                f"freeze.k={cfg.freeze.k} is out of range: {cfg.backbone.name} has {n} layer "
                f"groups below the head; use 0 <= freeze.k <= {n}")])
    return model, report


def augmenter(mode: str):
    if mode == "none":
        return None
    return lambda images, generator: data.augment(images, mode, generator)


@dataclass
class Launch:
    """Who started a run: group choices, overrides, sweep and parent — for names and tags."""

    choices: dict[str, str] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    parent_run_id: str | None = None
    sweep_tags: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_hydra(cls) -> Launch:
        hc = HydraConfig.get()
        sweep = {}
        if hc.mode.name == "MULTIRUN":
            sweep = {"sweep.id": Path(hc.sweep.dir).name, "sweep.job": str(hc.job.num)}
        return cls(choices={k: str(v) for k, v in hc.runtime.choices.items()
                            if not k.startswith("hydra/") and v is not None},
                   overrides=list(hc.overrides.task),
                   parent_run_id=os.environ.get(tracking.PARENT_ENV), sweep_tags=sweep)

    def run_name(self, cfg: DictConfig) -> str:
        """e.g. resnet18·lp_ft·f0.05·s1: the choices a researcher scans for in the UI."""
        amount = f"k{cfg.data.shots}" if cfg.data.shots else f"f{cfg.data.fraction:g}"
        return f"{cfg.backbone.name}·{cfg.freeze.strategy}·{amount}·s{cfg.seed}"

    def tags(self, report: backbones.LoadReport) -> dict[str, str]:
        tags = {f"choice.{k}": v for k, v in self.choices.items()}
        tags.update(tracking.git_tags(Path.cwd()))
        tags["overrides"] = tracking.masked(" ".join(self.overrides)) or "(none)"
        tags["weights.source"] = report.source
        tags["weights.digest"] = report.digest or "none"
        tags["weights.missing_keys"] = str(len(report.missing))
        tags["weights.unexpected_keys"] = str(len(report.unexpected))
        return {**tags, **self.sweep_tags}


def print_summary(title: str, cfg: DictConfig, run_id: str, test_acc: float, history) -> None:
    table = Table(title=f"xferlab · {title}", show_header=False)
    table.add_row("test/acc", f"{test_acc:.4f}")
    table.add_row("val/acc_best", f"{history.best_val_acc:.4f} (epoch {history.best_epoch})")
    table.add_row("MLflow run", f"{run_id} in experiment '{cfg.tracking.experiment}'")
    table.add_row("open the UI", "xferlab ui")
    Console(stderr=False).print(table)
