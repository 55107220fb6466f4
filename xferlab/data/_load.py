"""`load_dataset`: any registered data kind's splits, the same way for every kind."""

from __future__ import annotations

import pathlib
from dataclasses import asdict
from typing import Any

import torch

from xferlab.config import CHOICES, DataConfig, close_match
from xferlab.data import DATA_KINDS, DataError, Loaded
from xferlab.data._core import Datasets, Split, digest, make_splits, to_images


def load_dataset(kind: str, *, name: str, image_size: int, in_chans: int, seed: int,
                 val_fraction: float, test_fraction: float, cache_dir: pathlib.Path,
                 loader: str = "auto", **keys: Any) -> Datasets:
    """The train pool, val and test splits of one dataset; splits not given by the source are
    cut stratified from its training data, test first (fixed for a seed), then val. The kind's
    own data.* keys come from `keys`, else their defaults.

    `loader`: memory decodes every image now; workers leaves image folders and torchvision sets
    without an image array undecoded (`LazyImages`); auto does so above
    `_stream.STREAM_ABOVE_BYTES` decoded."""
    loaders = CHOICES["data.loader"]
    if loader not in loaders:
        raise DataError(f"data.loader={loader!r} is not one of {', '.join(loaders)}"
                        f"{close_match(loader, loaders)}")
    option = DATA_KINDS.build(kind, {**asdict(DataConfig()), **keys})
    loaded: Loaded = option.load(name=name, image_size=image_size, in_chans=in_chans, seed=seed,
                                 cache_dir=pathlib.Path(cache_dir), loader=loader)
    pool = loaded.pool
    # digits (8x8), glyphs and the 28x28 sets arrive at their native format; the others are done
    # (images read on demand are converted as they are read)
    if isinstance(pool.images, torch.Tensor):
        pool = Split(to_images(pool.images, in_chans=in_chans, image_size=image_size),
                     pool.labels)
    train, val, test = make_splits(pool, seed=seed, val_fraction=val_fraction,
                                   test_fraction=test_fraction, val=loaded.val, test=loaded.test)
    identity = digest({"kind": kind, "name": name, "image_size": image_size,
                       "in_chans": in_chans, "seed": seed, "val_fraction": val_fraction,
                       "test_fraction": test_fraction, **loaded.params})
    return Datasets(train=train, val=val, test=test, classes=loaded.classes, in_chans=in_chans,
                    image_size=image_size, identity=identity)
