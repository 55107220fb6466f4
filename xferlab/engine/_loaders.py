"""DataLoaders for images read on demand: one per reader, its batches set before each pass."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


class Batches:
    """A batch sampler whose batches are set before each pass: one DataLoader, and its
    persistent workers, then serve every epoch in the order fit draws."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def build(reader: Any, workers: int, pin_memory: bool) -> tuple[DataLoader, Batches]:
    """A DataLoader over `reader` whose batches are those set on the returned sampler."""
    sampler = Batches()
    loader = DataLoader(
        _Reads(reader), batch_sampler=sampler, collate_fn=_as_is,
        num_workers=workers, persistent_workers=workers > 0,
        prefetch_factor=2 if workers else None,  # batches queued per worker
        pin_memory=pin_memory,  # page-locked: copies to the GPU overlap compute
        # its own generator: creating an iterator draws a seed, which must not move torch's
        # global RNG (dropout, resume)
        generator=torch.Generator())
    return loader, sampler


def read(loader: DataLoader) -> Iterator[torch.Tensor]:
    """The loader's batches; a worker's error (e.g. a DataError naming a file) raised as is."""
    for batch in loader:
        if isinstance(batch, Exception):
            error, batch = batch, None
            try:
                raise error
            finally:  # else error -> its traceback -> this frame -> error: a cycle that keeps
                del error  # the model and the workers alive until a gc pass
        yield batch


class _Reads(Dataset):
    """A reader's batches as (B, C, H, W) uint8, stacked in the worker (DataLoader fetches a
    whole batch through `__getitems__`).

    An error is handed back as the batch, to be raised in the main process as it is: DataLoader
    would re-raise it as a new exception holding the worker's traceback in its message (or as a
    RuntimeError), and a DataError would no longer be one line.
    """

    def __init__(self, reader: Any):
        self.reader = reader

    def __len__(self) -> int:
        return len(self.reader)

    def __getitems__(self, indices: list[int]) -> torch.Tensor | Exception:
        try:
            # NCHW-contiguous like the in-memory tensor (a stack of HWC images transposed to
            # CHW is NHWC in memory): convolutions pick kernels by layout, and layouts round
            # differently
            return torch.from_numpy(np.stack([self.reader[i] for i in indices])).contiguous()
        except Exception as error:  # noqa: BLE001 - raised by the main process instead
            try:
                pickle.dumps(error)  # it crosses a process boundary
            except Exception:  # noqa: BLE001 - not picklable: DataLoader's own re-raise
                raise error from None
            return error


def _as_is(batch: Any) -> Any:
    return batch
