"""Layer groups of a model, and applying a plan to them (requires_grad, lr scales, BatchNorm).

Layer groups come from timm's `group_matcher(coarse=False)` on the backbone: the stem, then one
group per block (a ResNet's `layer3.1`, a ConvNeXt's stage block, a ViT's `blocks.5`), and the
head last. Applying a plan never rebuilds the optimizer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from timm.models._manipulate import MATCH_PREV_GROUP, group_parameters
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from xferlab.freezing._plan import Plan


def _bias(name: str, module: nn.Module) -> bool:
    return name.endswith("bias")


def _bias_norm(name: str, module: nn.Module) -> bool:
    # by type name, so timm's own norms (LayerNorm2d, BatchNormAct2d, RmsNorm…) count too
    return _bias(name, module) or "norm" in type(module).__name__.lower()


def _lora(name: str, module: nn.Module) -> bool:
    return "lora_" in name  # peft's lora_A / lora_B (and DoRA's lora_magnitude_vector)


# A plan's `only`: which parameters of a trainable backbone group train (None: all of them)
ONLY: dict[str | None, Callable[[str, nn.Module], bool]] = {
    None: lambda name, module: True, "bias": _bias, "bias_norm": _bias_norm, "lora": _lora}


@dataclass(frozen=True)
class LayerGroup:
    """Named parameters (named as in the whole model) that share one lr scale."""

    name: str  # 'stem', 'blocks.0', …, 'head'
    params: tuple[tuple[str, nn.Parameter], ...]


def layer_groups(model: nn.Module) -> list[LayerGroup]:
    """The backbone's groups (stem, blocks.0, …) from timm's fine group matcher, then the head."""
    # a TransferModel's (torch types a submodule attribute as Tensor | Module)
    head_module, backbone = cast(nn.Module, model.head), cast(nn.Module, model.backbone)
    head = tuple((f"head.{name}", p) for name, p in head_module.named_parameters())
    return [*backbone_groups(backbone, prefix="backbone."), LayerGroup("head", head)]


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
    for group, scale in zip(groups, plan.lr_scale, strict=True):
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


def backbone_groups(backbone: nn.Module, prefix: str = "") -> list[LayerGroup]:
    try:
        # timm's method, absent from other modules (torch types it Tensor | Module)
        matcher = backbone.group_matcher(coarse=False)  # type: ignore[operator]
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
        raise ValueError(f"Plan.only={plan.only!r} is not one of {tuple(ONLY)}")
    selected = ONLY[plan.only]
    owner = {
        f"{module_name}.{n}" if module_name else n: module
        for module_name, module in model.named_modules()
        for n, _ in module.named_parameters(recurse=False)
    }
    head = len(groups) - 1
    return {
        name: scale > 0 and (i == head or selected(name, owner[name]))
        for i, (group, scale) in enumerate(zip(groups, plan.lr_scale, strict=True))
        for name, _ in group.params
    }
