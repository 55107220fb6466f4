"""Stratified, nested fraction and k-shot subsets of a training pool."""

from __future__ import annotations

from typing import Any

import numpy as np

from xferlab.data import DataError
from xferlab.data._core import class_ranks, digest


def subset_indices(labels: Any, *, fraction: float, shots: int | None,
                   subset_seed: int) -> np.ndarray:
    """Sorted indices of a stratified subset: `shots` images per class, else `fraction` of each
    class (rounded up, at least one).

    One per-class permutation from `subset_seed` is cut at different lengths, so for one seed the
    1% subset lies inside the 10% subset, and 1-shot inside 5-shot.
    """
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels)
    if shots is not None:
        if fraction != 1.0:
            raise DataError(f"data.fraction={fraction} and data.shots={shots} are both set: "
                            "choose one (data.shots=null or data.fraction=1.0)")
        smallest = int(np.argmin(np.where(counts > 0, counts, np.iinfo(np.int64).max)))
        if not 1 <= shots <= counts[smallest]:
            raise DataError(f"data.shots={shots} is out of range: the smallest class (label "
                            f"{smallest}) has {counts[smallest]} training images; use "
                            f"1 <= data.shots <= {counts[smallest]}")
        take = np.full_like(counts, shots)
    else:
        if not 0 < fraction <= 1:
            raise DataError(f"data.fraction={fraction} is out of range: use 0 < data.fraction "
                            "<= 1 (e.g. 0.05)")
        # the epsilon keeps float error (0.1 * 130 = 13.000000000000002) from adding an image
        take = np.maximum(1, np.ceil(fraction * counts - 1e-9)).astype(np.int64)
    return np.flatnonzero(class_ranks(labels, subset_seed) < take[labels])


def indices_digest(indices: Any) -> str:
    """sha256 of the indices as little-endian int64, first 16 hex characters."""
    return digest(np.asarray(indices, dtype="<i8").tobytes())
