"""The L2-SP penalty (Li et al., 2018): a pull towards the pretrained weights."""

from __future__ import annotations

from typing import cast

import torch
from torch import nn


class L2SP:
    """alpha/2·||w − w0||² over the backbone (w0: its weights now) + beta/2·||w||² over the head.

    Build it after the pretrained weights are loaded and the model is on its device. (The casts:
    torch types a submodule attribute, model.backbone, as Tensor | Module.)
    """

    def __init__(self, model: nn.Module, alpha: float, beta: float):
        self.alpha, self.beta = alpha, beta
        self.start = {name: p.detach().clone()
                      for name, p in cast(nn.Module, model.backbone).named_parameters()}

    def penalty(self, model: nn.Module) -> torch.Tensor:
        """The penalty for the current weights; frozen parameters add nothing (w = w0)."""
        total = torch.zeros((), device=next(model.parameters()).device)
        if self.alpha > 0:
            for name, p in cast(nn.Module, model.backbone).named_parameters():
                if p.requires_grad:
                    total = total + self.alpha / 2 * (p - self.start[name]).pow(2).sum()
        if self.beta > 0:
            for p in cast(nn.Module, model.head).parameters():
                if p.requires_grad:
                    total = total + self.beta / 2 * p.pow(2).sum()
        return total
