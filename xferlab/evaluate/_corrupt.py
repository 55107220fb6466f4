"""Image corruptions for evaluating a model under distribution shift.

ImageNet-C's definitions (Hendrycks & Dietterich, ICLR 2019; github.com/hendrycks/robustness,
ImageNet-C/create_c/make_imagenet_c.py) where they apply, on torchvision's v2 functional ops.
Each takes uint8 images (N, C, H, W) with C 1 or 3 and H = W, a severity 1..5 and a generator,
the only source of randomness, and returns uint8 images of the same shape.

ImageNet-C's parameters in pixels are for 224-px images; here they are scaled by H / 224
(elastic smoothness and displacement) so that a severity distorts a 32- or 64-px image as much,
relative to its size, as it does a 224-px one. Blur is the exception: scaled from 224 px it does
next to nothing to a 64-px image (sigma 0.29 px at severity 1), so it takes the sigmas its authors
chose for 64-px images (Tiny-ImageNet-C), scaled by H / 64. Pixelate's factors are relative.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

# Images per step: 1,024 × 3 × 64 × 64 float32 is 50 MB, where 20k images at once would be 1 GB.
_CHUNK = 1024
_REFERENCE_SIZE = 224

_NOISE_STD = (0.08, 0.12, 0.18, 0.26, 0.38)
_BLUR_SIGMA = (0.5, 0.75, 1.0, 1.25, 1.5)  # Tiny-ImageNet-C's, for 64-px images
_BLUR_SIZE = 64
_CONTRAST = (0.4, 0.3, 0.2, 0.1, 0.05)
_BRIGHTNESS = (0.1, 0.2, 0.3, 0.4, 0.5)
_ROTATE_DEGREES = (5.0, 10.0, 15.0, 20.0, 30.0)
# (alpha, sigma) of torchvision's ElasticTransform at 224 px. ImageNet-C's own elastic adds an
# affine warp and does not grow monotonically in one knob, so these are ours: the field's RMS
# displacement is about alpha / 2 × 0.16 / sigma px, i.e. 1, 2, 3, 4.5 and 6 px at 224 px, with
# smoothness sigma 4..8 px; severity 1 is near torchvision's default (alpha 50, sigma 5).
_ELASTIC = ((50.0, 4.0), (125.0, 5.0), (225.0, 6.0), (390.0, 7.0), (590.0, 8.0))
_PIXELATE = (0.6, 0.5, 0.4, 0.3, 0.25)
_JPEG_QUALITY = (25, 18, 15, 10, 7)


def _check(images: torch.Tensor, severity: int) -> None:
    if isinstance(severity, bool) or not isinstance(severity, int) or not 1 <= severity <= 5:
        raise ValueError(f"severity {severity!r} is not one of 1..5: pass an integer 1 (mild) to 5")
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"images are {images.dtype} {tuple(images.shape)}, not uint8 (N, C, H, W) with C 1 or "
            "3: pass 0..255 uint8 images, channels first"
        )


def _chunked(images: torch.Tensor, corrupt: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    out = torch.empty_like(images)
    for start in range(0, len(images), _CHUNK):
        out[start : start + _CHUNK] = corrupt(images[start : start + _CHUNK])
    return out


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.mul(255).round_().clamp_(0, 255).to(torch.uint8)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    # 4 sigma either side, as skimage's gaussian (ImageNet-C) and ElasticTransform's 8 sigma + 1;
    # reflect padding needs the half-width below the image size
    half = min(math.ceil(4 * sigma), x.shape[-1] - 1)
    return TF.gaussian_blur(x, [2 * half + 1] * 2, [sigma, sigma])


def gaussian_noise(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """x + N(0, c²) on [0, 1] pixels, clipped; c = .08, .12, .18, .26, .38."""
    _check(images, severity)
    c = _NOISE_STD[severity - 1]

    def corrupt(x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(x.shape, generator=generator, device=generator.device)
        return _to_uint8(x / 255 + c * noise.to(x.device))

    return _chunked(images, corrupt)


def gaussian_blur(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Gaussian blur with sigma 0.5, 0.75, 1, 1.25, 1.5 px at 64 px (Tiny-ImageNet-C), times
    H / 64."""
    _check(images, severity)
    sigma = _BLUR_SIGMA[severity - 1] * images.shape[-1] / _BLUR_SIZE
    return _chunked(images, lambda x: _blur(x, sigma))


def contrast(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Blend towards the image's mean grey by c = .4, .3, .2, .1, .05 (1 keeps the image).

    ImageNet-C blends each channel towards its own mean; torchvision's blend is towards the mean
    of the greyscale image, which keeps the hue of a colour cast that ImageNet-C would remove.
    """
    _check(images, severity)
    c = _CONTRAST[severity - 1]
    return _chunked(images, lambda x: TF.adjust_contrast(x, c))


def brightness(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Add c = .1, .2, .3, .4, .5 to HSV value V = max over channels, clipped at 1."""
    _check(images, severity)
    c = _BRIGHTNESS[severity - 1]

    def corrupt(x: torch.Tensor) -> torch.Tensor:
        x = x / 255
        value = x.amax(dim=1, keepdim=True)  # (n, 1, H, W)
        new_value = (value + c).clamp(max=1)
        # Scaling every channel by V'/V keeps hue and saturation (max - min) / max, which is the
        # HSV round trip without it; black has saturation 0 in HSV and becomes grey V'. With one
        # channel V is the pixel and this is x + c, clipped.
        scaled = x * (new_value / value.clamp(min=1e-12))
        return _to_uint8(torch.where(value > 0, scaled, new_value))

    return _chunked(images, corrupt)


def rotate(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Rotate by ±5, 10, 15, 20, 30 degrees (sign drawn per image), bilinear, black corners.

    Not in ImageNet-C: a geometric shift of the kind augmentation is meant to cover.
    """
    _check(images, severity)
    degrees = _ROTATE_DEGREES[severity - 1]

    def corrupt(x: torch.Tensor) -> torch.Tensor:
        draw = torch.rand(len(x), generator=generator, device=generator.device)
        positive, out = (draw < 0.5).to(x.device), torch.empty_like(x)
        # two angles per severity, so two batched calls rather than one per image
        for angle, chosen in ((degrees, positive), (-degrees, ~positive)):
            if chosen.any():
                out[chosen] = TF.rotate(x[chosen], angle, InterpolationMode.BILINEAR, fill=0)
        return out

    return _chunked(images, corrupt)


def elastic(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """torchvision's elastic warp, (alpha, sigma) (50, 4) .. (590, 8) at 224 px (see _ELASTIC).

    Sigma is scaled by r = H / 224 and alpha by r², as the displacement in px goes with alpha /
    sigma: RMS displacement 1, 2, 3, 4.5, 6 px at 224 px, times r (0.9 px at severity 5, 32 px).
    """
    _check(images, severity)
    size = images.shape[-1]
    r = size / _REFERENCE_SIZE
    alpha, sigma = _ELASTIC[severity - 1][0] * r * r, _ELASTIC[severity - 1][1] * r

    def corrupt(x: torch.Tensor) -> torch.Tensor:
        # As ElasticTransform draws it: uniform noise in [-1, 1], blurred, times alpha / size in
        # the grid's [-1, 1] units; dx and dy as channels (n, 2, H, W) -> (n, H, W, 2)
        noise = torch.rand((len(x), 2, size, size), generator=generator, device=generator.device)
        field = (_blur(noise.to(x.device) * 2 - 1, sigma) * (alpha / size)).permute(0, 2, 3, 1)
        # TF.elastic takes one field (1, H, W, 2) per call, and each image has its own; in float,
        # as on uint8 it rounds each image on its own, which took 3/4 of the time
        x = x / 255
        warped = [
            TF.elastic(x[i : i + 1], field[i : i + 1], InterpolationMode.BILINEAR, fill=0)
            for i in range(len(x))
        ]
        return _to_uint8(torch.cat(warped))

    return _chunked(images, corrupt)


def pixelate(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Resize down to c = .6, .5, .4, .3, .25 of the size, then back up with nearest."""
    _check(images, severity)
    size = images.shape[-1]
    small = max(1, int(size * _PIXELATE[severity - 1]))

    # ImageNet-C downsamples with PIL's BOX, which tensors lack; antialiased bilinear likewise
    # averages over each small pixel's footprint (with tent rather than flat weights)
    def corrupt(x: torch.Tensor) -> torch.Tensor:
        x = TF.resize(x, [small, small], InterpolationMode.BILINEAR, antialias=True)
        return TF.resize(x, [size, size], InterpolationMode.NEAREST_EXACT)

    return _chunked(images, corrupt)


def jpeg(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """JPEG encode and decode at quality 25, 18, 15, 10, 7."""
    _check(images, severity)
    quality = _JPEG_QUALITY[severity - 1]
    # torchvision's JPEG codec runs on the CPU only
    return _chunked(images, lambda x: TF.jpeg(x.cpu(), quality).to(x.device))
