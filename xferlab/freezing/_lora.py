"""LoRA adapters (peft) in a timm backbone: what `freeze=lora` adds before its plan applies."""

from __future__ import annotations

from torch import nn

from xferlab.freezing._groups import backbone_groups


class LoraError(ValueError):
    """LoRA cannot be added: peft is missing or the targets match nothing (one line)."""


def add_lora(
    backbone: nn.Module, *, rank: int, alpha: float, targets: list[str] | None
) -> nn.Module:
    """Inject LoRA adapters (peft) into `targets`, or every Conv2d/Linear of the blocks."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError as e:
        raise LoraError("freeze=lora needs peft: pip install 'xferlab[lora]'") from e
    if targets is None:
        in_blocks = {name for group in backbone_groups(backbone)[1:] for name, _ in group.params}
        # grouped (depthwise) convs are left out: peft's LoRA needs rank % groups == 0 for them
        targets = [
            name for name, m in backbone.named_modules()
            if f"{name}.weight" in in_blocks
            and (isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1))
        ]
    # peft annotates lora_alpha int, but any number scales (alpha / r)
    config = LoraConfig(r=rank, lora_alpha=alpha,  # type: ignore[arg-type]
                        target_modules=list(targets))
    try:
        return inject_adapter_in_model(config, backbone)
    except ValueError as e:
        raise LoraError(
            f"freeze.targets={targets}: {str(e).splitlines()[0]} (name Conv2d/Linear modules of "
            "the backbone, e.g. freeze.targets=[qkv,fc1], or null for all in the blocks)"
        ) from e
