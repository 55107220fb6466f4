"""Shared types and helpers: `Split`, `Datasets`, stratified splitting, resizing."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from xferlab.data._stream import LazyImages


def digest(obj: Any) -> str:
    """sha256 of a JSON-able object (or of raw bytes), first 16 hex characters."""
    data = obj if isinstance(obj, bytes) else json.dumps(obj, sort_keys=True).encode()
    return hashlib.sha256(data).hexdigest()[:16]


@dataclass
class Split:
    """Images (N, C, H, W) uint8, in memory or read on demand (`LazyImages`), and labels (N,)
    int64, in memory."""

    images: torch.Tensor | LazyImages
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, indices: Any) -> Split:
        """The images at `indices` (any integer sequence or array)."""
        index = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        if isinstance(self.images, torch.Tensor):
            return Split(self.images[index], self.labels[index])
        return Split(self.images.take(index.numpy()), self.labels[index])


@dataclass
class Datasets:
    """Train pool (before fraction / shots), val and test splits of one dataset."""

    train: Split
    val: Split
    test: Split
    classes: list[str]
    in_chans: int
    image_size: int
    identity: str  # digest of kind, name and parameters: a key for caches, a tag for logging

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def streamed(self) -> bool:
        """Whether images are read on demand (DataLoader workers) rather than held in memory."""
        return not isinstance(self.train.images, torch.Tensor)


def class_ranks(labels: Any, seed: int | Sequence[int]) -> np.ndarray:
    """Each sample's position within its class under a random per-class permutation from `seed`.

    Taking `rank < k[label]` gives stratified subsets, and subsets for growing k are nested.
    """
    labels = np.asarray(labels, dtype=np.int64)
    keys = np.random.default_rng(seed).random(len(labels))
    order = np.lexsort((keys, labels))  # by class, then by random key
    sorted_labels = labels[order]
    first = np.searchsorted(sorted_labels, sorted_labels)  # index where each class starts
    ranks = np.empty(len(labels), dtype=np.int64)
    ranks[order] = np.arange(len(labels)) - first
    return ranks


def stratified_split(labels: Any, fraction: float,
                     seed: int | Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held-out) sorted indices; `fraction` of every class is held out.

    Each class with two or more images gives at least one to each side.
    """
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels)
    held = np.clip(np.round(fraction * counts), 1, counts - 1)
    is_held = class_ranks(labels, seed) < held[labels]
    return np.flatnonzero(~is_held), np.flatnonzero(is_held)


def make_splits(pool: Split, *, seed: int, val_fraction: float, test_fraction: float,
                val: Split | None = None, test: Split | None = None) -> tuple[Split, Split, Split]:
    """(train, val, test): the splits not given are cut from `pool`, test first, both stratified.

    The test split depends only on `seed` and `test_fraction`, so it stays fixed for a seed.
    """
    if test is None:
        kept, held = stratified_split(pool.labels, test_fraction, seed=seed)
        pool, test = pool.take(kept), pool.take(held)
    if val is None:
        # a stream of its own, so the val draw does not repeat the test draw's pattern
        kept, held = stratified_split(pool.labels, val_fraction, seed=(seed, 1))
        pool, val = pool.take(kept), pool.take(held)
    return pool, val, test


def to_images(images: torch.Tensor, *, in_chans: int, image_size: int) -> torch.Tensor:
    """uint8 (N, C, H, W) with C = in_chans (1 or 3) and H = W = image_size (bilinear)."""
    if images.shape[1] == 3 and in_chans == 1:
        # ITU-R 601-2 luma, as Pillow's convert("L")
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        images = (images.float() * weights).sum(1, keepdim=True).round().to(torch.uint8)
    if images.shape[-2:] != (image_size, image_size):
        chunks = [
            F.interpolate(chunk.float(), size=(image_size, image_size), mode="bilinear",
                          antialias=True, align_corners=False).round().clamp(0, 255)
            for chunk in images.split(4096)  # bounds the float copy's memory
        ]
        images = torch.cat(chunks).to(torch.uint8)
    if images.shape[1] == 1 and in_chans == 3:  # grey to RGB after resizing: a third of the work
        images = images.expand(-1, 3, -1, -1)
    return images.contiguous()
