"""Freezing strategies: one registered definition each, holding its plan over layer groups and
whatever else it changes about the model (scratch's random start, LoRA's adapters).

A plan gives each layer group (the stem, one group per block, the head last) an lr scale (0 =
frozen) and, optionally, the only kind of backbone parameter that trains (biases, norms, LoRA
adapters). Plans are pure functions of the epoch, so a resumed run gets the same plan.

A strategy's own `freeze.*` keys are its dataclass fields, their ranges its `Range`s. This module
is torch-free so that the CLI checks a config before torch loads; layer groups and applying a
plan (`layer_groups`, `apply_plan`, `train_mode`, `add_lora`) load with torch on first use.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from xferlab.config import FreezeConfig, Range, Registry
from xferlab.freezing._plan import Plan

if TYPE_CHECKING:
    from torch import nn

    from xferlab.freezing._groups import LayerGroup, apply_plan, layer_groups, train_mode
    from xferlab.freezing._lora import LoraError, add_lora

__all__ = ["STRATEGIES", "LayerGroup", "LoraError", "Plan", "Strategy", "add_lora", "apply_plan",
           "layer_groups", "make_plan", "train_mode"]
_WITH_TORCH = {"LayerGroup": "_groups", "layer_groups": "_groups", "apply_plan": "_groups",
               "train_mode": "_groups", "add_lora": "_lora", "LoraError": "_lora"}


def __getattr__(name: str) -> Any:
    """The torch-side names, imported on first use (PEP 562)."""
    if name not in _WITH_TORCH:
        raise AttributeError(f"module 'xferlab.freezing' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"xferlab.freezing.{_WITH_TORCH[name]}"), name)


class Strategy:
    """A freezing strategy. Subclasses are dataclasses whose fields are their own freeze.* keys."""

    pretrained: ClassVar[bool] = True  # False: the backbone starts from random weights

    def plan(self, n_groups: int, epoch: int) -> Plan:
        """What trains at `epoch`, for `n_groups` layer groups (the head is the last one)."""
        raise NotImplementedError

    def adapt(self, backbone: nn.Module) -> nn.Module:
        """The backbone this strategy trains, made from the loaded one (before the head)."""
        return backbone

    def model_problem(self, n_groups: int, backbone: str) -> str | None:
        """What makes this strategy meaningless for a model of `n_groups` groups, or None."""
        return None


STRATEGIES: Registry[type[Strategy]] = Registry("freeze.strategy")


def make_plan(strategy: str, n_groups: int, epoch: int, **keys: Any) -> Plan:
    """The plan of `strategy` at `epoch`; its own freeze.* keys from `keys`, else their defaults."""
    return STRATEGIES.build(strategy, {**asdict(FreezeConfig()), **keys}).plan(n_groups, epoch)


@STRATEGIES.register("full")
@dataclass(frozen=True)
class Full(Strategy):
    """Everything trains."""

    def plan(self, n_groups: int, epoch: int) -> Plan:
        return Plan.top(n_groups, n_groups)


@STRATEGIES.register("scratch")
@dataclass(frozen=True)
class Scratch(Full):
    """Everything trains from random weights: the baseline transfer is measured against."""

    pretrained: ClassVar[bool] = False


@STRATEGIES.register("linear_probe")
@dataclass(frozen=True)
class LinearProbe(Strategy):
    """Only the head trains."""

    def plan(self, n_groups: int, epoch: int) -> Plan:
        return Plan.top(n_groups, 0)


@STRATEGIES.register("last_k", k=Range(lambda k: k >= 0, "use freeze.k >= 0"))
@dataclass(frozen=True)
class LastK(Strategy):
    """The last k layer groups below the head train."""

    k: int

    def plan(self, n_groups: int, epoch: int) -> Plan:
        return Plan.top(n_groups, self.k)

    def model_problem(self, n_groups: int, backbone: str) -> str | None:
        n = n_groups - 1  # a k beyond the backbone's groups would be `full`
        return None if self.k <= n else (
            f"freeze.k={self.k} is out of range: {backbone} has {n} layer groups below the head; "
            f"use 0 <= freeze.k <= {n}")


@STRATEGIES.register("block_k", k=Range(lambda k: k >= 0, "use freeze.k >= 0"))
@dataclass(frozen=True)
class BlockK(Strategy):
    """Surgical fine-tuning (Lee et al., ICLR 2023): only layer group k (0 = the stem) and the
    head train; which block is best depends on the kind of shift."""

    k: int

    def plan(self, n_groups: int, epoch: int) -> Plan:
        scales = [0.0] * n_groups
        scales[min(self.k, n_groups - 2)] = scales[-1] = 1.0  # k is checked by model_problem
        return Plan(tuple(scales))

    def model_problem(self, n_groups: int, backbone: str) -> str | None:
        last = n_groups - 2  # the head is group n_groups - 1
        return None if self.k <= last else (
            f"freeze.k={self.k} is out of range: {backbone} has layer groups 0 (the stem) to "
            f"{last} below the head; use 0 <= freeze.k <= {last}")


@STRATEGIES.register("gradual", every=Range(lambda e: e >= 1, "use freeze.every >= 1"))
@dataclass(frozen=True)
class Gradual(Strategy):
    """ULMFiT: the head alone at epoch 0, then one more group every `every` epochs."""

    every: int

    def plan(self, n_groups: int, epoch: int) -> Plan:
        return Plan.top(n_groups, epoch // self.every)


@STRATEGIES.register("lp_ft",
                     lp_epochs=Range(lambda e: e >= 0, "use freeze.lp_epochs >= 0"),
                     ft_lr_scale=Range(lambda s: s > 0, "use freeze.ft_lr_scale > 0"))
@dataclass(frozen=True)
class LpFt(Strategy):
    """LP-FT (Kumar et al., 2022): a linear probe, then everything at a smaller backbone lr."""

    lp_epochs: int
    ft_lr_scale: float

    def plan(self, n_groups: int, epoch: int) -> Plan:
        if epoch < self.lp_epochs:
            return Plan.top(n_groups, 0)
        return Plan.top(n_groups, n_groups, self.ft_lr_scale)


@STRATEGIES.register("layer_decay", decay=Range(lambda d: 0 < d <= 1, "use 0 < freeze.decay <= 1"))
@dataclass(frozen=True)
class LayerDecay(Strategy):
    """Everything trains; the lr scale is decay ** depth, depth 0 the head, 1 the group below."""

    decay: float

    def plan(self, n_groups: int, epoch: int) -> Plan:
        return Plan(tuple(self.decay ** (n_groups - 1 - i) for i in range(n_groups)))


@STRATEGIES.register("bitfit")
@dataclass(frozen=True)
class BitFit(Strategy):
    """BitFit (Ben Zaken et al., 2022): only the backbone's biases (and, with norms, its norm
    parameters) train, besides the head."""

    norms: bool

    def plan(self, n_groups: int, epoch: int) -> Plan:
        return Plan.top(n_groups, n_groups, only="bias_norm" if self.norms else "bias")


@STRATEGIES.register("lora", rank=Range(lambda r: r >= 1, "use freeze.rank >= 1"))
@dataclass(frozen=True)
class Lora(Strategy):
    """LoRA (Hu et al., 2022): low-rank adapters in the backbone train, its weights do not."""

    rank: int
    alpha: float
    targets: list[str] | None

    def plan(self, n_groups: int, epoch: int) -> Plan:
        return Plan.top(n_groups, n_groups, only="lora")

    def adapt(self, backbone: nn.Module) -> nn.Module:
        from xferlab.freezing._lora import add_lora

        targets = list(self.targets) if self.targets else None
        return add_lora(backbone, rank=self.rank, alpha=self.alpha, targets=targets)
