"""The torch modules of heads: `CosineHead`, and `TransferModel(backbone, head)`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CosineHead(nn.Module):
    """Logits = scale · cos(feature, class weight): bounded by |scale|, insensitive to norms."""

    def __init__(self, in_features: int, num_classes: int, scale: float, learn_scale: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.normal_(self.weight, std=0.01)
        value = torch.tensor(float(scale))
        # a fixed scale is a buffer, not a frozen parameter: freezing plans set requires_grad on
        # every head parameter and would otherwise make it learnable again
        if learn_scale:
            self.scale = nn.Parameter(value)
        else:
            self.register_buffer("scale", value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, F) @ (F, C) -> (B, C), both sides unit-norm
        return self.scale * F.normalize(x, dim=-1) @ F.normalize(self.weight, dim=-1).T


class TransferModel(nn.Module):
    """A backbone that returns pooled features, and a head on top of them."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))
