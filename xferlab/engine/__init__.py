"""The fit / evaluate loop over uint8 images, with per-epoch freezing plans.

Images are an in-memory (N, C, H, W) uint8 tensor, sliced per batch, or images read on demand
(`xferlab.data.LazyImages`: a `reader`, whose item i is one (C, H, W) uint8 array, and the
`indices` of the split's items in it), read per batch by DataLoader workers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, cast

import torch
import torch.nn.functional as F
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn
from torch.utils.data import DataLoader

from xferlab.console import console
from xferlab.engine import _loaders, _lr
from xferlab.evaluate import class_metrics
from xferlab.freezing import LayerGroup, Plan, apply_plan, train_mode
from xferlab.optim import schedule, set_lr


@dataclass
class Loop:
    """What the loop needs besides the model: how to feed it and how to step."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    device: torch.device
    bf16: bool = False
    batch_size: int = 64
    eval_batch_size: int = 512
    label_smoothing: float = 0.0
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
    penalty: Callable[[], torch.Tensor] | None = None  # e.g. L2-SP, added to the loss
    progress: bool = True
    channels_last: bool = False  # NHWC inputs: faster convolutions on CUDA tensor cores
    workers: int = 0  # DataLoader processes for images read on demand; 0 = in memory (or inline)
    say: Callable[[str], None] | None = None  # a line on what takes seconds; None: quiet

    def __post_init__(self) -> None:
        # built once: per batch they would be a host-to-device copy each on CUDA
        self._mean = torch.tensor(self.mean, device=self.device).view(1, -1, 1, 1)
        self._std = torch.tensor(self.std, device=self.device).view(1, -1, 1, 1)
        self._loaders: dict[int, tuple[Any, DataLoader, _loaders.Batches]] = {}  # by reader id

    def eval_slices(self, n: int) -> list[slice]:
        """Consecutive eval-sized batches of n items."""
        return [slice(start, start + self.eval_batch_size)
                for start in range(0, n, self.eval_batch_size)]

    def batches(self, images: Any, index_batches: Sequence[torch.Tensor | slice]
                ) -> Iterator[torch.Tensor]:
        """`images[idx]` for each idx in `index_batches` (index tensors or slices), in order.

        A tensor is indexed here: no DataLoader, no copy for a slice. Images read on demand come
        from a DataLoader over their reader whose batch sampler yields exactly these batches,
        so the order, and with it every metric, is that of the in-memory path.
        """
        if isinstance(images, torch.Tensor):
            return (images[idx] for idx in index_batches)
        return self._read(images, index_batches)

    def _read(self, images: Any, index_batches: Sequence[torch.Tensor | slice]
              ) -> Iterator[torch.Tensor]:
        loader, sampler = self._loader(images.reader)
        sampler.batches = [images.indices[idx if isinstance(idx, slice) else idx.numpy()].tolist()
                           for idx in index_batches]
        yield from _loaders.read(loader)  # a generator: the batches are set when it starts

    def start(self, *splits: Any) -> None:
        """Start the workers of the splits read on demand now. Call it before other threads
        start (the MLflow run opens on one): a worker forked while a thread holds a lock (an
        import's, stderr's) inherits it held, and may wait on it for ever."""
        for images in splits:
            if not isinstance(images, torch.Tensor) and self.workers:
                iter(self._loader(images.reader)[0])  # persistent: the workers stay

    def _loader(self, reader: Any) -> tuple[DataLoader, _loaders.Batches]:
        """The reader's DataLoader, built on first use: one per reader (train, val and test cut
        from one pool share it), whose workers persist across epochs and splits."""
        if id(reader) not in self._loaders:  # the entry holds the reader: its id stays unique
            loader, sampler = _loaders.build(reader, self.workers,
                                             pin_memory=self.device.type == "cuda")
            self._loaders[id(reader)] = (reader, loader, sampler)
        return self._loaders[id(reader)][1:]

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) -> normalised float on the device."""
        x = images.to(self.device, non_blocking=True).float().div_(255)
        x = (x - self._mean) / self._std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def inputs(self, x: torch.Tensor, features: bool) -> torch.Tensor:
        """A batch as the network takes it: images prepared, cached features as they are."""
        return x.to(self.device, non_blocking=True) if features else self.prepare(x)

    def autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.bf16 else nullcontext()


@dataclass
class History:
    best_val_acc: float = -1.0
    best_epoch: int = 0  # counted from 1, as the console counts epochs; 0: none yet
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    epochs: list[dict[str, float]] = field(default_factory=list)


@torch.inference_mode()
def logits(model: nn.Module, inputs: Any, loop: Loop, features: bool = False) -> torch.Tensor:
    """(N, classes) float logits on the CPU over one split: `model` on images (a tensor or
    images read on demand), or, with `features`, the head alone on the split's cached features."""
    model.eval()
    out = []
    n = len(inputs)
    for batch in loop.batches(inputs, loop.eval_slices(n)):
        with loop.autocast():
            out.append(model(loop.inputs(batch, features)).float().cpu())
    return torch.cat(out)


def evaluate(model: nn.Module, inputs: Any, labels: torch.Tensor,
             loop: Loop, features: bool = False) -> tuple[float, float, torch.Tensor]:
    """Mean loss, accuracy and the predictions (N,) over one split (see `logits`)."""
    out = logits(model, inputs, loop, features)
    pred = out.argmax(1)
    return (F.cross_entropy(out, labels).item(), (pred == labels).float().mean().item(), pred)


def fit(model: nn.Module, *, groups: list[LayerGroup], plan_for: Callable[[int], Plan],
        optimizer: torch.optim.Optimizer, train: tuple[Any, torch.Tensor],
        val: tuple[Any, torch.Tensor], loop: Loop, epochs: int, max_steps: int | None,
        steps_per_epoch: int | None, base_lr: float, schedule: Callable[[int, int], float],
        seed: int, on_epoch: Callable[[int, dict[str, float]], None],
        features: Callable[[torch.Tensor], torch.Tensor] | None = None,
        checkpoint: Callable[[dict], None] | None = None, checkpoint_every: int = 0,
        resume: dict | None = None) -> History:
    """Train for `epochs` (or exactly `max_steps` steps), keeping the best-validation weights.
    `train` and `val` are (images, labels): images in memory, or read on demand (`Loop.batches`).

    An epoch is one pass over the data, or `steps_per_epoch` steps through reshuffled passes:
    with a step budget, runs on 1% and 100% of the data then validate equally often.

    `plan_for(epoch)` gives the freezing plan; it is applied only when it changes, so the
    optimizer (and the state of groups that already trained) is never rebuilt. While a plan
    freezes the backbone, `features(images)` (a feature cache) stands in for the backbone: the
    head trains on the same numbers without running the backbone each epoch.

    Every `checkpoint_every` epochs, `checkpoint(state)` gets what `resume=state` needs to go on
    exactly as if uninterrupted; it is called before `on_epoch`, so a crash in between loses
    nothing (the caller logs the resumed state's epochs that the store lacks).
    """
    images, labels = train
    # drop_last so a batch of one never reaches BatchNorm in training mode
    steps_per_epoch = steps_per_epoch or max(1, len(labels) // loop.batch_size)
    batch = min(loop.batch_size, len(labels))
    total_steps = max_steps or epochs * steps_per_epoch
    epochs = math.ceil(total_steps / steps_per_epoch)
    generator = torch.Generator().manual_seed(seed)
    history, plan, step, start = History(), None, 0, 0
    lr_series = _lr.lr_series([g.name for g in groups],
                              [plan_for(e).lr_scale for e in range(epochs)])
    if resume is not None:
        # the checkpoint lacks the parameters frozen when it was written: they never trained
        # (plans only ever unfreeze), so the freshly built model holds them already
        model.load_state_dict(resume["model"], strict=False)
        optimizer.load_state_dict(resume["optimizer"])
        best = {**{k: v.clone() for k, v in model.state_dict().items()}, **resume["best_state"]}
        history = History(resume["best_val_acc"], resume["best_epoch"], best, resume["epochs"])
        step, start = resume["step"], len(history.epochs)
        generator.set_state(resume["rng"]["fit"])
        torch.set_rng_state(resume["rng"]["torch"])
        if torch.cuda.is_available() and resume["rng"].get("cuda"):
            torch.cuda.set_rng_state_all(resume["rng"]["cuda"])
    if loop.say is not None:
        loop.say(f"training {_count(epochs - start, 'epoch')}, "
                 f"{_count(total_steps - step, 'step')} of {batch} images"
                 + (f", from epoch {start + 1}" if start else ""))
    bar = Progress(TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"),
                   BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                   TimeRemainingColumn(), disable=not loop.progress, transient=True,
                   console=console())
    with bar:
        # a dash until the first step gives a loss
        task = bar.add_task("fit", total=total_steps, completed=step, epoch=start + 1,
                            epochs=epochs, loss="-")
        for epoch in range(start, epochs):
            if (new_plan := plan_for(epoch)) != plan:
                plan = new_plan
                trainable = apply_plan(model, groups, plan, optimizer)
                if not plan.backbone_frozen:
                    features = None  # the backbone moves from now on: its features are stale
                on_features = features is not None and loop.augment is None
                # (torch types a submodule attribute as Tensor | Module)
                net = cast(nn.Module, model.head) if on_features else model
                inputs = features(images) if on_features and features is not None else images
                val_inputs = features(val[0]) if on_features and features is not None else val[0]
            train_mode(model, groups, plan)
            started, seen = time.perf_counter(), 0
            loss_sum = torch.zeros((), device=loop.device)
            n_steps = min(steps_per_epoch, total_steps - step)
            passes = math.ceil(n_steps * batch / len(labels))
            order = torch.cat([torch.randperm(len(labels), generator=generator)
                               for _ in range(passes)])
            index_batches = [order[i * batch:(i + 1) * batch] for i in range(n_steps)]
            for i, (x, idx) in enumerate(zip(loop.batches(inputs, index_batches),
                                             index_batches, strict=True)):
                if loop.augment is not None:
                    x = loop.augment(x, generator)
                x, y = loop.inputs(x, on_features), labels[idx].to(loop.device)
                set_lr(optimizer, base_lr, schedule(step, total_steps))
                with loop.autocast():
                    loss = F.cross_entropy(net(x).float(), y,
                                           label_smoothing=loop.label_smoothing)
                if loop.penalty is not None:
                    loss = loss + loop.penalty()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                # accumulate on the device: a .item() per step would sync every step
                loss_sum += loss.detach().float() * len(idx)
                seen += len(idx)
                step += 1
                if loop.progress and i % 10 == 0:
                    bar.update(task, loss=f"{loss.item():.3f}")
                bar.update(task, advance=1, epoch=epoch + 1)
            elapsed = time.perf_counter() - started
            if not torch.isfinite(loss_sum):  # checked once per epoch: no sync per step
                raise FloatingPointError(
                    f"train/loss became {loss_sum.item()} in epoch {epoch + 1}: the run diverged; "
                    "lower optim.lr, or use sched.warmup_frac > 0 or trainer.precision=fp32")
            val_loss, val_acc, val_pred = evaluate(net, val_inputs, val[1], loop, on_features)
            classes = int(max(val[1].max(), val_pred.max())) + 1
            if val_acc > history.best_val_acc:
                history.best_val_acc, history.best_epoch = val_acc, epoch + 1
                history.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            metrics = {"train/loss": (loss_sum / seen).item(), "val/loss": val_loss,
                       "val/acc": val_acc, "val/acc_best": history.best_val_acc,
                       "val/balanced_acc": class_metrics(val_pred, val[1], classes)["balanced_acc"],
                       "time/epoch_s": elapsed, "throughput/img_s": seen / elapsed,
                       "params/trainable": float(trainable)}
            metrics.update(_lr.lr_metrics(lr_series, {g["name"]: g["lr"]
                                                      for g in optimizer.param_groups}))
            history.epochs.append(metrics)
            if checkpoint is not None and checkpoint_every and (epoch + 1) % checkpoint_every == 0:
                checkpoint(_state(model, optimizer, history, step, generator))
            if loop.progress:  # one line per epoch stays in logs and non-interactive terminals
                bar.console.print(f"epoch {epoch + 1}/{epochs}"
                                  f"  train/loss {metrics['train/loss']:.4f}"
                                  f"  val/loss {val_loss:.4f}  val/acc {val_acc:.4f}"
                                  f"  {metrics['throughput/img_s']:.0f} img/s"
                                  # the head alone, on features computed once: say why it is fast
                                  + (" (cached features)" if on_features else ""),
                                  soft_wrap=True)  # a narrow terminal folds it, not rich
            on_epoch(epoch, metrics)
    return history


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _state(model: nn.Module, optimizer: torch.optim.Optimizer, history: History, step: int,
           generator: torch.Generator) -> dict:
    # frozen parameters are left out (a frozen backbone would be most of the file, every
    # epoch): they have not trained yet, and the rebuilt model restores them
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    model_state = {k: v for k, v in model.state_dict().items() if k not in frozen}
    # when this epoch is the best, the same tensors: torch.save writes shared storage once
    best = (model_state if history.best_epoch == len(history.epochs) else
            {k: v for k, v in history.best_state.items() if k not in frozen})
    rng: dict[str, Any] = {"fit": generator.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return {"model": model_state, "optimizer": optimizer.state_dict(),
            "best_val_acc": history.best_val_acc, "best_epoch": history.best_epoch,
            "best_state": best, "epochs": history.epochs, "step": step, "rng": rng}


def lr_schedule(name: str, warmup_frac: float, **keys: Any) -> Callable[[int, int], float]:
    """The schedule `name` (its own sched.* keys from `keys`, else their defaults) as a pure
    function of (step, total_steps): exact on resume."""
    chosen = schedule(name, **keys)
    return lambda step, total: chosen(step, total, warmup_frac)
