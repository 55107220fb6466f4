"""Batch augmentations of uint8 images (registered in xferlab.data): light, randaugment."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchvision.transforms import v2


def light(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per image: shift up to 2/32 of the side, rotate up to 10 degrees, scale 0.9 to 1.1."""
    n = len(images)

    def uniform(low: float, high: float) -> torch.Tensor:
        draw = torch.rand(n, generator=generator, device=generator.device)
        return (low + (high - low) * draw).to(images.device)

    angle = uniform(-math.radians(10), math.radians(10))
    scale = uniform(0.9, 1.1)
    # affine_grid works in [-1, 1] coordinates: 2 pixels of 32 is 0.125
    shift_x, shift_y = uniform(-0.125, 0.125), uniform(-0.125, 0.125)
    cos, sin = angle.cos() / scale, angle.sin() / scale
    theta = torch.stack([torch.stack([cos, -sin, shift_x], 1),
                         torch.stack([sin, cos, shift_y], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    warped = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="zeros",
                           align_corners=False)
    return warped.round().clamp(0, 255).to(torch.uint8)


def randaugment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """torchvision's RandAugment, an independent draw per image."""
    seed = int(torch.randint(2**62, (), generator=generator, device=generator.device))
    policy = v2.RandAugment()
    # RandAugment draws from torch's global CPU generator: seed it from ours, then restore it
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        return torch.stack([policy(image) for image in images])
