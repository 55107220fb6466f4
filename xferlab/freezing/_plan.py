"""`Plan`: what trains at one epoch. Torch-free, so strategies register without torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    """An lr scale per layer group (0 = frozen) and which backbone parameters may train."""

    lr_scale: tuple[float, ...]
    only: str | None = None  # None | 'bias' | 'bias_norm' | 'lora'; the head always fully trains

    @property
    def backbone_frozen(self) -> bool:
        """Only the head trains (the head is the last group)."""
        return not any(self.lr_scale[:-1])

    @classmethod
    def top(cls, n_groups: int, n: int, scale: float = 1.0, only: str | None = None) -> Plan:
        """The last n of the n_groups - 1 backbone groups train at `scale`, the head at 1, the
        rest is frozen."""
        n_backbone = n_groups - 1
        n = max(0, min(n, n_backbone))
        return cls((0.0,) * (n_backbone - n) + (scale,) * n + (1.0,), only)
