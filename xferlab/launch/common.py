"""The steps recipes share: checks, device, data and model from a config, names and summary."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from rich.table import Table

from xferlab import backbones, checkpoint, config, data, freezing, heads, tracking
from xferlab.console import console
from xferlab.launch import compose, jobs, sources

# Errors that are the user's to fix: one line, exit code 2, no traceback, no MLflow run.
CACHE_DIR = Path("outputs/cache")  # datasets decoded once, feature caches, timing probes
USER_ERRORS = (config.ConfigError, data.DataError, backbones.WeightsError,
               backbones.BackboneError, checkpoint.CheckpointError, freezing.LoraError)


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
    included): DataError for files the data kind cannot read (e.g. an empty image folder)."""
    problems = compose.check(cfg)
    if not problems:
        data.DATA_KINDS.build(cfg.data.kind, cfg.data).check_files()
    name_problem = backbones.check_model_name(cfg.backbone.name)
    return [*problems, name_problem] if name_problem else problems


def check_all(configs: list[DictConfig]) -> None:
    """`preflight` of every job of a launch: ConfigError listing each problem once."""
    problems = list(dict.fromkeys(p for cfg in configs for p in preflight(cfg)))
    if problems:
        raise config.ConfigError(problems)


def device_and_precision(trainer: DictConfig) -> tuple[torch.device, bool]:
    """The device to use, and whether to autocast to bf16 (CUDA only)."""
    if trainer.device == "cuda" and not torch.cuda.is_available():
        raise config.ConfigError([("trainer.device='cuda' but no CUDA device is visible: use "
                                   "trainer.device=auto or cpu")])
    use_cuda = trainer.device == "cuda" or (trainer.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if use_cuda else "cpu")
    bf16 = use_cuda and trainer.precision in ("auto", "bf16")
    return device, bf16


def thread_count(setting: int | str | None, parallel_jobs: int, cores: int) -> int | None:
    """torch's intra-op threads for `trainer.threads`: auto shares the cores among the jobs
    running at once (two jobs on two cores get one each); None leaves torch's default."""
    if setting == "auto":
        return max(1, cores // max(1, parallel_jobs))
    return None if setting is None else int(setting)


def runtime(cfg: DictConfig, parallel_jobs: int = 1) -> tuple[torch.device, bool]:
    """Seed, device, bf16 or not, and torch's thread count: what every recipe sets first."""
    torch.manual_seed(cfg.seed)
    device, bf16 = device_and_precision(cfg.trainer)
    threads = thread_count(cfg.trainer.threads, parallel_jobs, os.cpu_count() or 1)
    if threads is not None:
        torch.set_num_threads(threads)
    return device, bf16


def status(cfg: DictConfig, launch: tracking.Launch) -> Callable[[str], None] | None:
    """`say(what)`: one plain line to stderr on what the next seconds go to, e.g. `xferlab:
    loading animal_mnist` (`xferlab #3:` in a sweep's job 3, `xferlab t7:` in trial 7); None
    with trainer.progress=false."""
    if not cfg.trainer.progress:
        return None
    job = launch.sweep_tags.get("sweep.job")
    who = launch.prefix.rstrip("·") or (f"#{job}" if job is not None else "")
    lead = f"xferlab {who}: " if who else "xferlab: "

    def say(what: str) -> None:
        # one write per line: the lines of jobs running at once (joblib) never mix within one
        sys.stderr.write(f"{lead}{what}\n")
        sys.stderr.flush()

    return say


def training_subset(d: DictConfig, ds: data.Datasets) -> tuple[np.ndarray, data.Split]:
    """The (nested, stratified) training subset: its indices into the pool, and the split."""
    subset = data.subset_indices(ds.train.labels, fraction=d.fraction, shots=d.shots,
                                 subset_seed=d.subset_seed)
    return subset, ds.train.take(subset)


def placed_model(cfg: DictConfig, ds: data.Datasets, device: torch.device,
                 say: Callable[[str], None] | None = None) -> tuple[
        heads.TransferModel, backbones.LoadReport, sources.Source | None, bool]:
    """The model from its pretrained source (a source xferlab built, else
    `backbone.pretrained`) on the device, in the memory format of `trainer.channels_last`; the
    source; whether that format is channels_last. `say` (see `status`) names what is built."""
    source = sources.lookup(cfg)
    model, report = build_model(cfg, ds, f"file:{source.path}" if source
                                else cfg.backbone.pretrained, say)
    channels_last = cfg.trainer.channels_last == "true" or (
        cfg.trainer.channels_last == "auto"
        and (device.type == "cuda" or convolutional(model.backbone)))
    # torch's overloads of Module.to lack (device, memory_format=...), which it takes
    model.to(device,  # type: ignore[call-overload]
             memory_format=torch.channels_last if channels_last else torch.preserve_format)
    return model, report, source, channels_last


def convolutional(backbone: torch.nn.Module) -> bool:
    """More than one 2-D convolution: a ViT's only one is its patch embedding."""
    return sum(isinstance(m, torch.nn.Conv2d) for m in backbone.modules()) > 1


def load_data(d: DictConfig) -> data.Datasets:
    """The dataset; images read on demand (`data.loader`) come from `data.workers` DataLoader
    processes: pass `workers=` to the engine's Loop."""
    ds = data.load_dataset(
        d.kind, name=d.name, image_size=d.image_size, in_chans=d.in_chans, seed=d.seed,
        val_fraction=d.val_fraction, test_fraction=d.test_fraction,
        cache_dir=CACHE_DIR, loader=d.loader,
        **{key: d[key] for key in data.DATA_KINDS.own_keys(d.kind)},
    )
    if d.num_classes is not None and d.num_classes != ds.num_classes:
        raise data.DataError(f"data.num_classes={d.num_classes} but {d.name} holds "
                             f"{ds.num_classes} classes: set data.num_classes={ds.num_classes}")
    return ds


def build_model(cfg: DictConfig, ds: data.Datasets, pretrained: str,
                say: Callable[[str], None] | None = None) -> tuple[
        heads.TransferModel, backbones.LoadReport]:
    """Backbone from its pretrained source (random for a strategy that starts from scratch),
    adapted by the strategy (e.g. LoRA's adapters), and the head."""
    strategy = freezing.STRATEGIES.build(cfg.freeze.strategy, cfg.freeze)
    weights = pretrained if strategy.pretrained else "none"
    if say is not None:
        if weights == "none":  # backbone.pretrained=none, or a strategy that starts from scratch
            what = "random weights" + ("" if strategy.pretrained
                                       else f" (freeze={cfg.freeze.strategy})")
        else:  # as given (source:glyphs), then the file it stands for
            named = cfg.backbone.pretrained
            what = f"weights {named}" + ("" if weights == named else f" ({weights})")
        say(f"building {cfg.backbone.name} with {what}")
    backbone, report = backbones.create_backbone(
        cfg.backbone.name, pretrained=weights,
        in_chans=ds.in_chans, image_size=ds.image_size,
        drop_path_rate=cfg.backbone.drop_path_rate,
        tracking_uri=tracking.resolve_uri(cfg.tracking.uri))
    backbone = strategy.adapt(backbone)
    head = heads.HEADS.build(cfg.head.kind, cfg.head).build(backbone.num_features,
                                                            ds.num_classes)
    model = heads.TransferModel(backbone, head)
    if problem := strategy.model_problem(len(freezing.layer_groups(model)), cfg.backbone.name):
        raise config.ConfigError(problem)
    return model, report


def launch_from_hydra(sweep: jobs.Sweep | None) -> tracking.Launch:
    """The launch of the job Hydra is running: its group choices, overrides and sweep."""
    hc = HydraConfig.get()
    return tracking.Launch(choices={k: str(v) for k, v in hc.runtime.choices.items()
                                    if not k.startswith("hydra/") and v is not None},
                           overrides=list(hc.overrides.task),
                           parent_run_id=sweep.parent_run_id if sweep else None,
                           sweep_tags={"sweep.id": sweep.id, "sweep.job": str(hc.job.num)}
                           if sweep else {}, parallel_jobs=_parallel_jobs(hc.launcher))


def _parallel_jobs(launcher: DictConfig) -> int:
    """Jobs Hydra's launcher runs at once on this machine: joblib's n_jobs (-1: one per core);
    one for the others (in-process one at a time, or a process per node or task)."""
    n_jobs = launcher.get("n_jobs")
    if n_jobs is None:
        return 1
    return (os.cpu_count() or 1) if n_jobs < 0 else int(n_jobs)


def run_name(launch: tracking.Launch, cfg: DictConfig) -> str:
    """The run's name from its launch and config, e.g. resnet18·lp_ft·f0.05·s1."""
    return launch.run_name(backbone=cfg.backbone.name, strategy=cfg.freeze.strategy,
                           fraction=cfg.data.fraction, shots=cfg.data.shots, seed=cfg.seed)


def print_summary(title: str, cfg: DictConfig, run_id: str, test_acc: float, history) -> None:
    """The run's result, then links that open it, its sweep and its experiment in the UI's
    model-training mode (a tracking server's UI, else `xferlab ui`'s)."""
    table = Table(title=f"xferlab · {title}", show_header=False)
    table.add_row("test/acc", f"{test_acc:.4f}")
    table.add_row("val/acc_best", f"{history.best_val_acc:.4f} (epoch {history.best_epoch})")
    table.add_row("MLflow run", f"{run_id} in experiment '{cfg.tracking.experiment}'")
    console(stderr=False).print(table)
    uri = tracking.resolve_uri(cfg.tracking.uri)
    links = tracking.ui_links(uri, run_id) or {}
    if links:  # whole lines, outside the table: a link folded to fit the terminal opens nothing
        server = uri.startswith(("http://", "https://"))
        print("open in the MLflow UI" + ("" if server else " (start it with `xferlab ui`)") + ":")
        width = max(map(len, links))
        for label, link in links.items():
            print(f"  {label:<{width}}  {link}")
