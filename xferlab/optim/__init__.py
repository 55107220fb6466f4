"""Optimizers and lr schedules, one registered definition each (`optim.name`, `sched.name`), the
optimizer over layer groups, and the L2-SP penalty.

Torch-free at import, so the CLI checks a config before torch loads (`L2SP` loads with torch on
first use).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from xferlab.config import OptimConfig, Range, Registry, SchedConfig

if TYPE_CHECKING:
    import torch

    from xferlab.freezing import LayerGroup
    from xferlab.optim._l2sp import L2SP

__all__ = ["L2SP", "OPTIMIZERS", "SCHEDULES", "Optimizer", "Schedule", "build_optimizer",
           "lr_factor", "schedule", "set_lr"]


def __getattr__(name: str) -> Any:
    """`L2SP`, imported with torch on first use (PEP 562)."""
    if name != "L2SP":
        raise AttributeError(f"module 'xferlab.optim' has no attribute {name!r}")
    from xferlab.optim._l2sp import L2SP

    return L2SP


class Optimizer:
    """An optimizer. Subclasses are dataclasses whose fields are their own optim.* keys besides
    lr and weight_decay, which every optimizer takes."""

    def build(self, param_groups: list[dict], lr: float,
              weight_decay: float) -> torch.optim.Optimizer:
        raise NotImplementedError


OPTIMIZERS: Registry[type[Optimizer]] = Registry("optim.name")


@OPTIMIZERS.register("adamw")
@dataclass(frozen=True)
class AdamW(Optimizer):
    def build(self, param_groups: list[dict], lr: float,
              weight_decay: float) -> torch.optim.Optimizer:
        import torch

        return torch.optim.AdamW(param_groups, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register("sgd")
@dataclass(frozen=True)
class SGD(Optimizer):
    """SGD, with Nesterov momentum when momentum > 0 (nesterov needs it)."""

    momentum: float

    def build(self, param_groups: list[dict], lr: float,
              weight_decay: float) -> torch.optim.Optimizer:
        import torch

        return torch.optim.SGD(param_groups, lr=lr, weight_decay=weight_decay,
                               momentum=self.momentum, nesterov=self.momentum > 0)


def build_optimizer(groups: list[LayerGroup], *, name: str, lr: float, weight_decay: float,
                    **keys: Any) -> torch.optim.Optimizer:
    """One param group per layer group (keys 'name', 'lr_scale'), over all parameters, once;
    the optimizer's own optim.* keys from `keys`, else their defaults.

    Frozen parameters stay in the optimizer: with requires_grad False their grad stays None and
    torch optimizers skip them entirely, so unfreezing later keeps every group's state.
    """
    option = OPTIMIZERS.build(name, {**asdict(OptimConfig()), **keys})
    param_groups = [
        {"params": [p for _, p in group.params], "name": group.name, "lr_scale": 1.0}
        for group in groups
    ]
    return option.build(param_groups, lr, weight_decay)


def set_lr(optimizer: torch.optim.Optimizer, base_lr: float, factor: float) -> None:
    """Each group's lr = base_lr · schedule factor · the plan's lr_scale for the group."""
    for group in optimizer.param_groups:
        group["lr"] = base_lr * factor * group["lr_scale"]


class Schedule:
    """An lr schedule after the linear warmup every schedule shares (sched.warmup_frac).
    Subclasses are dataclasses whose fields are their own sched.* keys."""

    def after_warmup(self, progress: float) -> float:
        """The lr multiplier at `progress` (0 to 1) of the steps after warmup."""
        raise NotImplementedError

    def __call__(self, step: int, total_steps: int, warmup_frac: float) -> float:
        warmup = int(warmup_frac * total_steps)
        if step < warmup:
            return (step + 1) / warmup
        return self.after_warmup(min(1.0, (step - warmup) / max(1, total_steps - warmup)))


SCHEDULES: Registry[type[Schedule]] = Registry("sched.name")


@SCHEDULES.register("cosine", min_lr_ratio=Range(lambda r: 0 <= r <= 1, "use 0 <= value <= 1"))
@dataclass(frozen=True)
class Cosine(Schedule):
    """Half a cosine from the peak down to min_lr_ratio of it."""

    min_lr_ratio: float

    def after_warmup(self, progress: float) -> float:
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (
            1.0 + math.cos(math.pi * progress))


@SCHEDULES.register("constant")
@dataclass(frozen=True)
class Constant(Schedule):
    def after_warmup(self, progress: float) -> float:
        return 1.0


def schedule(name: str, **keys: Any) -> Schedule:
    """The schedule `name`; its own sched.* keys from `keys`, else their defaults."""
    return SCHEDULES.build(name, {**asdict(SchedConfig()), **keys})


def lr_factor(step: int, total_steps: int, *, name: str, warmup_frac: float,
              **keys: Any) -> float:
    """The lr multiplier at `step` of `total_steps`: linear warmup, then schedule `name`."""
    return schedule(name, **keys)(step, total_steps, warmup_frac)
