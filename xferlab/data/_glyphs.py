"""The embedded source task: characters drawn with Pillow's built-in font, warped like handwriting.

Each glyph is scaled to fill the frame the way `load_digits` digits do, with random stroke width,
slant, rotation, aspect, position, blur and noise, then normalised to peak at 255 (white ink on
black). Images come in chunks seeded from (seed, chunk index), so the result does not depend on
how many processes render them. The pool is cached as one .npz per parameter digest.
"""

from __future__ import annotations

import functools
import math
import multiprocessing
import os
import pathlib
import tempfile
from concurrent.futures import ProcessPoolExecutor
from typing import cast

import numpy as np
import torch
from filelock import FileLock
from PIL import Image, ImageDraw, ImageFilter, ImageFont, features

from xferlab.data import DataError
from xferlab.data._core import digest

VERSION = 1  # part of the cache key: bump it whenever the rendering changes
CHUNK = 500  # images per seeded chunk; fixed, so the worker count cannot change the output
STROKES = (0.0, 0.02, 0.04, 0.06)  # extra outline width, as a share of the font size
FONT_SCALE = 2.6  # font size / image size: the template is drawn ~2x the output, then reduced


def load_glyphs(*, seed: int, size: int, image_size: int, charset: str,
                cache_dir: pathlib.Path, workers: int | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(images (size, 1, S, S) uint8, labels (size,) int64, cache key): cached, else rendered."""
    check_charset(charset)
    key = digest({"version": VERSION, "seed": seed, "size": size, "image_size": image_size,
                  "charset": charset})
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"glyphs-{key}.npz"
    with FileLock(f"{path}.lock"):  # parallel sweep jobs render the pool once, not once each
        if path.exists():
            with np.load(path) as cached:
                images = cached["images"]
        else:
            images = render(seed=seed, size=size, image_size=image_size, charset=charset,
                            workers=workers or os.cpu_count() or 1)
            save_atomic(path, images=images)
    labels = np.arange(size, dtype=np.int64) % len(charset)  # balanced: counts differ by <= 1
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels), key


def check_charset(charset: str) -> None:
    """Raise DataError unless FreeType is there and every character is distinct and drawable."""
    if not features.check("freetype2"):
        raise DataError("data.kind='glyphs' needs Pillow built with FreeType (features.check"
                        "('freetype2') is False): reinstall Pillow from the official wheels "
                        "(pip install --force-reinstall pillow)")
    if len(charset) < 2 or len(set(charset)) != len(charset):
        raise DataError(f"data.charset={charset!r} needs two or more distinct characters: "
                        "remove the repeats")
    # the font draws a character it lacks as the same box as a private-use code point
    box = template("\ue000", 0, 32)
    assert box is not None  # the font draws a code point it lacks as a box, never as nothing
    missing = box.tobytes()
    for char in charset:
        drawn = template(char, 0, 32)
        if drawn is None or drawn.tobytes() == missing:
            raise DataError(f"data.charset contains {char!r}, which Pillow's default font cannot "
                            "draw: remove it from data.charset")


def save_atomic(path: pathlib.Path, **arrays: np.ndarray) -> None:
    """Write an .npz via a temp file and os.replace, so a crash never leaves a complete-looking
    entry."""
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
        try:
            np.savez(tmp, **arrays)  # type: ignore[arg-type]  # stubs: a kwarg may be allow_pickle
            tmp.flush()
            os.fsync(tmp.fileno())
        except BaseException:
            os.unlink(tmp.name)
            raise
    os.replace(tmp.name, path)


def render(*, seed: int, size: int, image_size: int, charset: str, workers: int) -> np.ndarray:
    """(size, S, S) uint8; image i shows charset[i % len(charset)]."""
    jobs = [(seed, index, start, min(CHUNK, size - start), image_size, charset)
            for index, start in enumerate(range(0, size, CHUNK))]
    workers = min(workers, len(jobs))
    # daemonic processes (DataLoader workers, some sweep launchers) may not start children
    if workers > 1 and not multiprocessing.current_process().daemon:
        # fork: the workers need only numpy and Pillow, and spawn would re-import torch in each
        context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            chunks = list(pool.map(render_chunk, *zip(*jobs, strict=True)))
    else:
        chunks = [render_chunk(*job) for job in jobs]
    return np.concatenate(chunks)


@functools.cache
def font(image_size: int) -> ImageFont.FreeTypeFont:
    # a FreeTypeFont whenever Pillow has FreeType, which `check` requires
    return cast(ImageFont.FreeTypeFont, ImageFont.load_default(size=round(FONT_SCALE * image_size)))


@functools.cache
def template(char: str, stroke: int, image_size: int) -> Image.Image | None:
    """`char` drawn white on black with outline `stroke` (index into STROKES), cropped to its ink;
    None when the font draws nothing for it."""
    typeface = font(image_size)
    side = int(3 * typeface.size)  # an int already: `font` asks for a whole size
    canvas = Image.new("L", (side, side))
    width = round(STROKES[stroke] * typeface.size)
    ImageDraw.Draw(canvas).text((side // 2, side // 2), char, font=typeface, fill=255,
                                anchor="mm", stroke_width=width, stroke_fill=255)
    box = canvas.getbbox()
    return canvas.crop(box) if box else None


def render_chunk(seed: int, index: int, start: int, count: int, image_size: int,
                 charset: str) -> np.ndarray:
    """(count, S, S) uint8: images start .. start + count - 1, seeded from (seed, index)."""
    rng = np.random.default_rng([seed, index])
    big = 2 * image_size  # drawn at twice the size, then reduced: a cheap antialias
    out = np.empty((count, image_size, image_size), dtype=np.float32)
    for i in range(count):
        char = charset[(start + i) % len(charset)]
        stroke = int(rng.integers(len(STROKES)))
        glyph, capital = template(char, stroke, image_size), template("H", stroke, image_size)
        assert glyph is not None and capital is not None  # `check` refuses undrawable charsets
        reference = capital.height  # a capital's height fills the frame
        # lowercase letters stay smaller than capitals, so pairs such as o/O remain distinct
        scale = rng.uniform(0.8, 0.97) * big / max(glyph.height, reference)
        scale_x = scale * math.exp(rng.uniform(-0.35, 0.1))  # digits are tall and narrow
        scale_x = min(scale_x, 0.95 * big / glyph.width)  # wide glyphs (M, W) fit the width
        angle = math.radians(rng.uniform(-12, 12))
        shear = rng.uniform(-0.3, 0.3)  # slant, as in handwriting
        centre = big / 2 + rng.uniform(-0.05, 0.05, size=2) * big
        # forward map, template -> canvas: rotate @ shear @ diag(scale_x, scale)
        cos, sin = math.cos(angle), math.sin(angle)
        forward = np.array([[cos, -sin], [sin, cos]]) @ np.array([[1, shear], [0, 1]]) \
            @ np.diag([scale_x, scale])
        inverse = np.linalg.inv(forward)  # Pillow asks, per canvas pixel, where to sample
        offset = np.array([glyph.width / 2, glyph.height / 2]) - inverse @ centre
        coeffs = (*inverse[0], offset[0], *inverse[1], offset[1])
        image = glyph.transform((big, big), Image.Transform.AFFINE, coeffs,
                                resample=Image.Resampling.BILINEAR).reduce(2)
        if rng.random() < 0.5:  # load_digits is 8x8 upsampled: mimic its low-resolution blur
            low = int(rng.integers(image_size // 4, image_size // 3 + 1))
            image = image.resize((low, low), Image.Resampling.BOX).resize(
                (image_size, image_size), Image.Resampling.BILINEAR)
        radius = rng.uniform(0.4, 1.2) * image_size / 32
        out[i] = np.asarray(image.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32)
    # like load_digits, every image peaks at full intensity
    out *= 255 / np.maximum(out.max(axis=(1, 2), keepdims=True), 1)
    out += rng.normal(size=out.shape) * rng.uniform(0, 8, size=(count, 1, 1))
    return out.clip(0, 255).round().astype(np.uint8)
