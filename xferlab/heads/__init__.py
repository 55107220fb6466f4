"""Classification heads on pooled backbone features: one registered definition per `head.kind`,
its own head.* keys its dataclass fields; and `TransferModel(backbone, head)`.

Torch-free at import, so the CLI checks a config before torch loads; the modules load with torch
when a head is built (`TransferModel`, `CosineHead` on first use).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from xferlab.config import HeadConfig, Range, Registry

if TYPE_CHECKING:
    from torch import nn

    from xferlab.heads._modules import CosineHead, TransferModel

__all__ = ["HEADS", "CosineHead", "Head", "TransferModel", "make_head"]


def __getattr__(name: str) -> Any:
    """The torch modules, imported on first use (PEP 562)."""
    if name not in ("CosineHead", "TransferModel"):
        raise AttributeError(f"module 'xferlab.heads' has no attribute {name!r}")
    from xferlab.heads import _modules

    return getattr(_modules, name)


class Head:
    """A head kind. Subclasses are dataclasses whose fields are their own head.* keys."""

    def build(self, in_features: int, num_classes: int) -> nn.Module:
        """The head module: pooled features (B, in_features) in, logits (B, num_classes) out."""
        raise NotImplementedError


HEADS: Registry[type[Head]] = Registry("head.kind")


def make_head(kind: str, in_features: int, num_classes: int, **keys: Any) -> nn.Module:
    """The head of `kind`; its own head.* keys from `keys`, else their defaults."""
    return HEADS.build(kind, {**asdict(HeadConfig()), **keys}).build(in_features, num_classes)


@HEADS.register("linear")
@dataclass(frozen=True)
class Linear(Head):
    """One linear layer."""

    def build(self, in_features: int, num_classes: int) -> nn.Module:
        from torch import nn

        return nn.Linear(in_features, num_classes)


@HEADS.register("mlp", hidden=Range(lambda h: h >= 1, "use head.hidden >= 1"),
                dropout=Range(lambda d: 0 <= d < 1, "use 0 <= head.dropout < 1"))
@dataclass(frozen=True)
class MLP(Head):
    """Linear, GELU, dropout, linear."""

    hidden: int
    dropout: float

    def build(self, in_features: int, num_classes: int) -> nn.Module:
        from torch import nn

        return nn.Sequential(nn.Linear(in_features, self.hidden), nn.GELU(),
                             nn.Dropout(self.dropout), nn.Linear(self.hidden, num_classes))


@HEADS.register("cosine")
@dataclass(frozen=True)
class Cosine(Head):
    """Logits = scale · cos(feature, class weight) (a fixed or learned scale)."""

    scale: float
    learn_scale: bool

    def build(self, in_features: int, num_classes: int) -> nn.Module:
        from xferlab.heads._modules import CosineHead

        return CosineHead(in_features, num_classes, self.scale, self.learn_scale)
