"""Freezing strategies as plans over layer groups.

Layer groups come from timm's `group_matcher(coarse=False)` on the backbone: the stem, then one
group per block (a ResNet's `layer3.1`, a ConvNeXt's stage block, a ViT's `blocks.5`), and the
head last. A plan gives each group an lr scale (0 = frozen) and, optionally, the only kind of
backbone parameter that trains (biases, norms, LoRA adapters). Plans are pure functions of the
epoch, so a resumed run gets the same plan; applying one never rebuilds the optimizer.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from timm.models._manipulate import MATCH_PREV_GROUP, group_parameters
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

STRATEGIES = (
    "full", "scratch", "linear_probe", "last_k", "gradual", "lp_ft", "layer_decay", "bitfit", "lora",
)
ONLY = (None, "bias", "bias_norm", "lora")


@dataclass(frozen=True)
class LayerGroup:
    """Named parameters (named as in the whole model) that share one lr scale."""

    name: str  # 'stem', 'blocks.0', …, 'head'
    params: tuple[tuple[str, nn.Parameter], ...]


@dataclass(frozen=True)
class Plan:
    """An lr scale per layer group (0 = frozen) and which backbone parameters may train."""

    lr_scale: tuple[float, ...]
    only: str | None = None  # None | 'bias' | 'bias_norm' | 'lora'; the head always fully trains

    @property
    def backbone_frozen(self) -> bool:
        """Only the head trains (the head is the last group)."""
        return not any(self.lr_scale[:-1])


class LoraError(ValueError):
    """LoRA cannot be added: peft is missing or the targets match nothing (one line)."""


def layer_groups(model: nn.Module) -> list[LayerGroup]:
    """The backbone's groups (stem, blocks.0, …) from timm's fine group matcher, then the head."""
    head = tuple((f"head.{name}", p) for name, p in model.head.named_parameters())
    return [*_backbone_groups(model.backbone, prefix="backbone."), LayerGroup("head", head)]


def make_plan(
    strategy: str, n_groups: int, epoch: int, *, k: int, every: int, lp_epochs: int,
    ft_lr_scale: float, decay: float, norms: bool,
) -> Plan:
    """The plan of `strategy` at `epoch` for `n_groups` layer groups (the head is the last one)."""
    n_backbone = n_groups - 1

    def top(n: int, scale: float = 1.0) -> Plan:
        """The last n backbone groups train at `scale`, the head at 1, the rest is frozen."""
        n = max(0, min(n, n_backbone))
        return Plan((0.0,) * (n_backbone - n) + (scale,) * n + (1.0,))

    if strategy in ("full", "scratch"):  # scratch differs in its weights (none), not its plan
        return top(n_backbone)
    if strategy == "linear_probe":
        return top(0)
    if strategy == "last_k":
        return top(k)
    if strategy == "gradual":  # ULMFiT: head alone at epoch 0, one more group every `every`
        return top(epoch // every)
    if strategy == "lp_ft":
        return top(0) if epoch < lp_epochs else top(n_backbone, ft_lr_scale)
    if strategy == "layer_decay":  # depth 0 is the head, 1 the last backbone group, …
        return Plan(tuple(decay ** (n_groups - 1 - i) for i in range(n_groups)))
    if strategy == "bitfit":
        return Plan(top(n_backbone).lr_scale, only="bias_norm" if norms else "bias")
    if strategy == "lora":
        return Plan(top(n_backbone).lr_scale, only="lora")
    match = difflib.get_close_matches(strategy, STRATEGIES, n=1)
    hint = f" (did you mean '{match[0]}'?)" if match else ""
    raise ValueError(
        f"freeze.strategy={strategy!r} is not one of {', '.join(STRATEGIES)}{hint}"
    )


def apply_plan(model: nn.Module, groups: list[LayerGroup], plan: Plan, optimizer) -> int:
    """Set requires_grad and each optimizer group's lr_scale; return the trainable count."""
    if len(plan.lr_scale) != len(groups):
        raise ValueError(f"the plan has {len(plan.lr_scale)} lr scales for {len(groups)} groups")
    trains = _trains(model, groups, plan)
    for group in groups:
        for name, p in group.params:
            p.requires_grad_(trains[name])
            if not trains[name]:
                # optimizers skip a parameter only while its grad is None (weight decay too)
                p.grad = None
    by_name = {g["name"]: g for g in optimizer.param_groups}
    for group, scale in zip(groups, plan.lr_scale):
        by_name[group.name]["lr_scale"] = scale
    return sum(p.numel() for group in groups for name, p in group.params if trains[name])


def train_mode(model: nn.Module, groups: list[LayerGroup], plan: Plan) -> None:
    """model.train(), but a BatchNorm with all its parameters frozen keeps its running stats."""
    model.train()
    trains = _trains(model, groups, plan)
    for module_name, module in model.named_modules():
        if isinstance(module, _BatchNorm):
            names = [f"{module_name}.{n}" for n, _ in module.named_parameters(recurse=False)]
            if names and not any(trains[n] for n in names):
                module.eval()


def add_lora(
    backbone: nn.Module, *, rank: int, alpha: float, targets: list[str] | None
) -> nn.Module:
    """Inject LoRA adapters (peft) into `targets`, or every Conv2d/Linear of the blocks."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError as e:
        raise LoraError("freeze=lora needs peft: pip install 'xferlab[lora]'") from e
    if targets is None:
        in_blocks = {name for group in _backbone_groups(backbone)[1:] for name, _ in group.params}
        # grouped (depthwise) convs are left out: peft's LoRA needs rank % groups == 0 for them
        targets = [
            name for name, m in backbone.named_modules()
            if f"{name}.weight" in in_blocks
            and (isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1))
        ]
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets))
    try:
        return inject_adapter_in_model(config, backbone)
    except ValueError as e:
        raise LoraError(
            f"freeze.targets={targets}: {str(e).splitlines()[0]} (name Conv2d/Linear modules of "
            "the backbone, e.g. freeze.targets=[qkv,fc1], or null for all in the blocks)"
        ) from e


def _backbone_groups(backbone: nn.Module, prefix: str = "") -> list[LayerGroup]:
    try:
        matcher = backbone.group_matcher(coarse=False)
    except AttributeError as e:
        raise ValueError(
            f"{type(backbone).__name__} has no group_matcher: layer groups need a timm model"
        ) from e
    if isinstance(matcher, dict):
        # parameters no pattern matches (ConvNeXt's head.norm, a ViT's fc_norm) join the last
        # block, as timm's own matchers do for a ViT's final norm, so block k means the same
        # whatever the pooling
        matcher = {**matcher, "rest": [(r".*", MATCH_PREV_GROUP)]}
    named = dict(backbone.named_parameters())
    ids = group_parameters(backbone, matcher)  # {group id: [parameter names]}
    return [
        LayerGroup(
            "stem" if i == 0 else f"blocks.{i - 1}",
            tuple((prefix + name, named[name]) for name in ids[gid]),
        )
        for i, gid in enumerate(sorted(ids))
    ]


def _trains(model: nn.Module, groups: list[LayerGroup], plan: Plan) -> dict[str, bool]:
    """Whether each parameter trains under the plan, by its name in the model."""
    if plan.only not in ONLY:
        raise ValueError(f"Plan.only={plan.only!r} is not one of {ONLY}")
    owner = {
        f"{module_name}.{n}" if module_name else n: module
        for module_name, module in model.named_modules()
        for n, _ in module.named_parameters(recurse=False)
    }
    head = len(groups) - 1
    return {
        name: scale > 0 and (i == head or _selected(name, owner[name], plan.only))
        for i, (group, scale) in enumerate(zip(groups, plan.lr_scale))
        for name, _ in group.params
    }


def _selected(name: str, module: nn.Module, only: str | None) -> bool:
    """Whether a parameter of a trainable backbone group passes the plan's `only` filter."""
    if only is None:
        return True
    if only == "lora":
        return "lora_" in name  # peft's lora_A / lora_B (and DoRA's lora_magnitude_vector)
    is_bias = name.endswith("bias")
    # by type name, so timm's own norms (LayerNorm2d, BatchNormAct2d, RmsNorm…) count too
    return is_bias or (only == "bias_norm" and "norm" in type(module).__name__.lower())
