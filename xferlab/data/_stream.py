"""Images read on demand: a `LazyImages` stands where a split's uint8 tensor stands in memory.

A large set (image folders, torchvision sets without an image array) is not decoded at load:
each split holds a reader (the files, or the torchvision dataset) and the indices of its items;
the engine's DataLoader workers decode batches while the model trains.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from xferlab.data._core import digest

# `data.loader=auto` streams a set whose decoded images, N*C*S*S bytes of uint8 over all splits,
# would exceed this: about 14,000 RGB images at 224x224. Below it, decoding once up front and
# slicing tensors is faster than any worker pipeline; above it, decoding costs minutes before
# the first step and the tensor a large share of the host's memory.
STREAM_ABOVE_BYTES = 2 * 2**30


def streams(loader: str, n_images: int, in_chans: int, image_size: int) -> bool:
    """Whether a set that can be read on demand is (`data.loader`, its size when decoded)."""
    if loader == "auto":
        return n_images * in_chans * image_size * image_size > STREAM_ABOVE_BYTES
    return loader == "workers"


class Reader(Protocol):
    """A map-style source of images: item i is one (C, S, S) uint8 array (picklable, so
    DataLoader workers can hold it)."""

    @property  # read-only, so that frozen dataclasses are readers too
    def in_chans(self) -> int: ...

    @property
    def image_size(self) -> int: ...

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> np.ndarray: ...


class LazyImages:
    """The items `indices` of a reader, decoded only when read.

    `reader[i]` is one (C, S, S) uint8 array; the engine reads batches of `reader` (at
    `indices[...]`) in DataLoader workers, one pool of workers per reader, whatever split.
    `digest` names the content, for the feature cache: the reader's fingerprint (for files,
    each one's path in its tree, size and modification time), the indices and the format.
    """

    def __init__(self, reader: Reader, indices: Any, fingerprint: str):
        self.reader, self.fingerprint = reader, fingerprint
        self.indices = np.asarray(indices, dtype=np.int64)

    @classmethod
    def of(cls, reader: Reader, fingerprint: str) -> LazyImages:
        """Every item of `reader`."""
        return cls(reader, np.arange(len(reader)), fingerprint)

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(N, C, S, S), as the decoded tensor's."""
        return (len(self), self.reader.in_chans, self.reader.image_size, self.reader.image_size)

    def take(self, indices: Any) -> LazyImages:
        """The images at `indices` (positions in this subset)."""
        return LazyImages(self.reader, self.indices[np.asarray(indices, dtype=np.int64)],
                          self.fingerprint)

    def __getitem__(self, i: int) -> np.ndarray:
        """The i-th image, decoded: (C, S, S) uint8."""
        return self.reader[int(self.indices[i])]

    @property
    def digest(self) -> str:
        return digest({"reader": self.fingerprint, "format": [self.reader.in_chans,
                                                             self.reader.image_size],
                       "indices": digest(self.indices.astype("<i8").tobytes())})
