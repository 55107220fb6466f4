"""The distribution-shift corruptions: shapes, determinism, severity order and definitions."""

from __future__ import annotations

import colorsys
import inspect
import math

import pytest
import torch

from xferlab.evaluate import _corrupt

NAMES = ["gaussian_noise", "gaussian_blur", "contrast", "brightness", "rotate", "elastic",
         "pixelate", "jpeg"]
RANDOM = {"gaussian_noise", "rotate", "elastic"}


def images(channels: int, n: int = 16, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Smooth gradients with a bright disk on each: edges for blur, pixelate and JPEG to act on."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    slope = torch.rand(2, n, channels, 1, 1, generator=g) * 0.4 - 0.2
    x = 0.4 + slope[0] * xs + slope[1] * ys
    centre = torch.rand(2, n, 1, 1, 1, generator=g) * 0.5 + 0.25
    disk = ((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2 < 0.06).float()
    x = x + disk * (torch.rand(n, channels, 1, 1, generator=g) * 0.3 + 0.1)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def corrupt(name: str, x: torch.Tensor, severity: int, seed: int = 0) -> torch.Tensor:
    return getattr(_corrupt, name)(x, severity, torch.Generator().manual_seed(seed))


def change(name: str, x: torch.Tensor, severity: int) -> float:
    return (corrupt(name, x, severity).float() - x.float()).abs().mean().item()


def test_the_public_functions_are_the_eight_corruptions() -> None:
    public = {n for n, f in inspect.getmembers(_corrupt, inspect.isfunction)
              if not n.startswith("_") and f.__module__ == _corrupt.__name__}
    assert public == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("severity", [1, 3, 5])
def test_dtype_and_shape_kept_and_input_untouched(name: str, channels: int, severity: int) -> None:
    x = images(channels)
    before = x.clone()
    out = corrupt(name, x, severity)
    assert out.dtype == torch.uint8
    assert out.shape == x.shape
    assert torch.equal(x, before)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_output_other_seed_differs_where_random(name: str) -> None:
    x = images(3)
    assert torch.equal(corrupt(name, x, 3, seed=1), corrupt(name, x, 3, seed=1))
    differs = not torch.equal(corrupt(name, x, 3, seed=1), corrupt(name, x, 3, seed=2))
    assert differs == (name in RANDOM)


@pytest.mark.parametrize("name", NAMES)
def test_global_rng_is_not_used(name: str) -> None:
    torch.manual_seed(0)
    state = torch.get_rng_state()
    corrupt(name, images(3, n=4), 5)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("channels", [1, 3])
def test_severity_5_changes_images_more_than_severity_1(name: str, channels: int) -> None:
    x = images(channels)
    assert change(name, x, 5) > change(name, x, 1)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("severity", [0, 6, -1, 2.5])
def test_bad_severity_raises_naming_it(name: str, severity: int) -> None:
    with pytest.raises(ValueError, match=f"severity {severity}"):
        corrupt(name, images(3, n=2), severity)


def test_non_uint8_images_raise() -> None:
    with pytest.raises(ValueError, match="float32"):
        corrupt("contrast", images(3, n=2).float(), 1)


def test_noise_has_imagenet_c_standard_deviation() -> None:
    grey = torch.full((16, 3, 32, 32), 128, dtype=torch.uint8)  # far from clipping at 0.08
    noise = corrupt("gaussian_noise", grey, 1).float() - 128
    assert noise.std().item() == pytest.approx(0.08 * 255, rel=0.03)
    assert abs(noise.mean().item()) < 0.5


def test_brightness_adds_to_hsv_value() -> None:
    x = images(3, n=2, size=8)
    x[0, :, 0, 0] = 0  # black: saturation 0 in HSV, so it turns grey
    out = corrupt("brightness", x, 2)
    for n, i, j in [(0, 0, 0), (0, 3, 5), (1, 4, 4), (1, 7, 1)]:
        h, s, v = colorsys.rgb_to_hsv(*(x[n, :, i, j].float() / 255).tolist())
        expected = torch.tensor(colorsys.hsv_to_rgb(h, s, min(v + 0.2, 1.0))) * 255
        assert (out[n, :, i, j].float() - expected).abs().max().item() <= 1


def test_pixelate_makes_blocks() -> None:
    out = corrupt("pixelate", images(3), 5)  # 32 px to 8 px and back: 4 × 4 blocks
    blocks = out[..., ::4, ::4].repeat_interleave(4, -1).repeat_interleave(4, -2)
    assert torch.equal(out, blocks)
    assert not torch.equal(out, images(3))


def test_rotate_blackens_the_corners() -> None:
    out = corrupt("rotate", images(3), 5)  # 30 degrees leaves every corner outside the image
    assert (out[..., [0, 0, -1, -1], [0, -1, 0, -1]] == 0).all()
    assert (images(3)[..., 0, 0] > 0).all()


def test_blur_sigma_scales_with_size() -> None:
    # sigma 6 × 64 / 224 = 1.7 px on 64 px, 0.86 px on 32 px: the 64-px image, subsampled to
    # 32 px, loses as much of its edges as the 32-px one (with sigma fixed in px, half as much)
    def edge_lost(clean: torch.Tensor, blurred: torch.Tensor) -> float:
        def grad(x: torch.Tensor) -> float:
            return x.float().diff(dim=-1).abs().mean().item()
        return 1 - grad(blurred) / grad(clean)

    small, large = images(1, size=32), images(1, size=64)
    lost_small = edge_lost(small, corrupt("gaussian_blur", small, 5))
    blurred = corrupt("gaussian_blur", large, 5)
    lost_large = edge_lost(large[..., 1::2, 1::2], blurred[..., 1::2, 1::2])
    assert lost_small > 0.03
    assert math.isclose(lost_large, lost_small, rel_tol=0.25)
