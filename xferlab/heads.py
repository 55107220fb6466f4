"""Classification heads on pooled backbone features, and `TransferModel(backbone, head)`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

HEAD_KINDS = ("linear", "mlp", "cosine")


class CosineHead(nn.Module):
    """Logits = scale · cos(feature, class weight): bounded by |scale|, insensitive to norms."""

    def __init__(self, in_features: int, num_classes: int, scale: float, learn_scale: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.normal_(self.weight, std=0.01)
        scale = torch.tensor(float(scale))
        # a fixed scale is a buffer, not a frozen parameter: freezing plans set requires_grad on
        # every head parameter and would otherwise make it learnable again
        if learn_scale:
            self.scale = nn.Parameter(scale)
        else:
            self.register_buffer("scale", scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, F) @ (F, C) -> (B, C), both sides unit-norm
        return self.scale * F.normalize(x, dim=-1) @ F.normalize(self.weight, dim=-1).T


def make_head(
    kind: str, in_features: int, num_classes: int, *, hidden: int, dropout: float, scale: float,
    learn_scale: bool,
) -> nn.Module:
    """A linear, mlp (hidden, dropout) or cosine (scale, learn_scale) head."""
    if kind == "linear":
        return nn.Linear(in_features, num_classes)
    if kind == "mlp":
        return nn.Sequential(
            nn.Linear(in_features, hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
    if kind == "cosine":
        return CosineHead(in_features, num_classes, scale, learn_scale)
    raise ValueError(f"head.kind={kind!r} is not one of {', '.join(HEAD_KINDS)}")


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
