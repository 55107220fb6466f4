"""The optimizer over layer groups, the lr schedule, and the L2-SP penalty."""

from __future__ import annotations

import math

import torch
from torch import nn

from xferlab.freezing import LayerGroup

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "constant")


def build_optimizer(
    groups: list[LayerGroup], *, name: str, lr: float, weight_decay: float, momentum: float
) -> torch.optim.Optimizer:
    """One param group per layer group (keys 'name', 'lr_scale'), over all parameters, once.

    Frozen parameters stay in the optimizer: with requires_grad False their grad stays None and
    torch optimizers skip them entirely, so unfreezing later keeps every group's state.
    """
    param_groups = [
        {"params": [p for _, p in group.params], "name": group.name, "lr_scale": 1.0}
        for group in groups
    ]
    if name == "adamw":
        return torch.optim.AdamW(param_groups, lr=lr, weight_decay=weight_decay)
    if name == "sgd":  # nesterov needs momentum > 0
        return torch.optim.SGD(param_groups, lr=lr, weight_decay=weight_decay,
                               momentum=momentum, nesterov=momentum > 0)
    raise ValueError(f"optim.name={name!r} is not one of {', '.join(OPTIMIZERS)}")


def lr_factor(
    step: int, total_steps: int, *, name: str, warmup_frac: float, min_lr_ratio: float
) -> float:
    """The lr multiplier at `step` of `total_steps`: linear warmup, then cosine or constant."""
    if name not in SCHEDULES:
        raise ValueError(f"sched.name={name!r} is not one of {', '.join(SCHEDULES)}")
    warmup = int(warmup_frac * total_steps)
    if step < warmup:
        return (step + 1) / warmup
    if name == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, base_lr: float, factor: float) -> None:
    """Each group's lr = base_lr · schedule factor · the plan's lr_scale for the group."""
    for group in optimizer.param_groups:
        group["lr"] = base_lr * factor * group["lr_scale"]


class L2SP:
    """alpha/2·||w − w0||² over the backbone (w0: its weights now) + beta/2·||w||² over the head.

    Build it after the pretrained weights are loaded and the model is on its device.
    """

    def __init__(self, model: nn.Module, alpha: float, beta: float):
        self.alpha, self.beta = alpha, beta
        self.start = {name: p.detach().clone() for name, p in model.backbone.named_parameters()}

    def penalty(self, model: nn.Module) -> torch.Tensor:
        """The penalty for the current weights; frozen parameters add nothing (w = w0)."""
        total = torch.zeros((), device=next(model.parameters()).device)
        if self.alpha > 0:
            for name, p in model.backbone.named_parameters():
                if p.requires_grad:
                    total = total + self.alpha / 2 * (p - self.start[name]).pow(2).sum()
        if self.beta > 0:
            for p in model.head.parameters():
                if p.requires_grad:
                    total = total + self.beta / 2 * p.pow(2).sum()
        return total
