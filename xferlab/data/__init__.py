"""Datasets, stratified nested subsets and batch augmentation for xferlab.

`load_dataset` returns every kind the same way: the full training pool, a validation and a test
split, the class names and an identity digest. Images are uint8 tensors in memory, or, for large
image folders and torchvision sets without an image array (`loader`), `LazyImages` read on demand.
"""

from __future__ import annotations

import pathlib

import torch

from xferlab.data._augment import augment
from xferlab.data._core import (
    DataError,
    Datasets,
    Split,
    close_match,
    digest,
    make_splits,
    to_images,
)
from xferlab.data._digits import load_digits
from xferlab.data._folders import (
    check_roots,
    load_image_folder,
    load_torchvision,
    read_files,
)
from xferlab.data._glyphs import load_glyphs
from xferlab.data._packaged import elpv_files, load_animal_mnist, load_mnist_5k
from xferlab.data._stream import LOADERS, LazyImages
from xferlab.data._subsets import indices_digest, subset_indices

__all__ = ["LOADERS", "DataError", "Datasets", "LazyImages", "Split", "augment", "check_roots",
           "indices_digest", "load_dataset", "subset_indices"]
KINDS = ["digits", "glyphs", "image_folder", "torchvision", "animal_mnist", "mnist_5k", "elpv"]


def load_dataset(kind: str, *, name: str, image_size: int, in_chans: int, seed: int,
                 val_fraction: float, test_fraction: float, size: int, charset: str,
                 root: str | None, val_root: str | None, test_root: str | None,
                 download: bool, cache_dir: pathlib.Path, loader: str = "auto",
                 elpv_task: str = "binary") -> Datasets:
    """The train pool, val and test splits of one dataset; splits not given by the source are
    cut stratified from its training data, test first (fixed for a seed), then val.

    `loader`: memory decodes every image now; workers leaves image folders and torchvision sets
    without an image array undecoded (`LazyImages`); auto does so above
    `_stream.STREAM_ABOVE_BYTES` decoded."""
    if loader not in LOADERS:
        raise DataError(f"data.loader={loader!r} is not one of {', '.join(LOADERS)}"
                        f"{close_match(loader, LOADERS)}")
    val = test = None
    params: dict = {}  # what, besides the settings every kind shares, decides the content
    if kind == "digits":
        pool, classes = load_digits()
    elif kind == "glyphs":
        images, labels, cache_key = load_glyphs(seed=seed, size=size, image_size=image_size,
                                                charset=charset, cache_dir=pathlib.Path(cache_dir))
        pool, classes, params = Split(images, labels), list(charset), {"pool": cache_key}
    elif kind == "animal_mnist":
        pool, classes = load_animal_mnist()
    elif kind == "mnist_5k":
        pool, classes = load_mnist_5k()
    elif kind == "elpv":
        paths, labels, classes, label_digest = elpv_files(elpv_task)
        pool = Split(read_files(paths, in_chans, image_size), labels)
        params = {"task": elpv_task, "labels": label_digest}
    elif kind == "image_folder":
        if root is None:
            raise DataError("data.root is not set: data.kind='image_folder' needs data.root="
                            "<folder of class sub-folders>")
        pool, val, test, classes, fingerprint = load_image_folder(
            root=root, val_root=val_root, test_root=test_root, in_chans=in_chans,
            image_size=image_size, loader=loader)
        params = {"files": fingerprint}
    elif kind == "torchvision":
        pool, test, classes, fingerprint = load_torchvision(
            name=name, root=root, download=download, in_chans=in_chans, image_size=image_size,
            loader=loader)
        params = {"sizes": fingerprint}
    else:
        raise DataError(f"data.kind={kind!r} is not one of {', '.join(KINDS)}"
                        f"{close_match(kind, KINDS)}")
    # digits (8x8), glyphs and the 28x28 sets arrive at their native format; the others are done
    # (images read on demand are converted as they are read)
    if isinstance(pool.images, torch.Tensor):
        pool = Split(to_images(pool.images, in_chans=in_chans, image_size=image_size),
                     pool.labels)
    train, val, test = make_splits(pool, seed=seed, val_fraction=val_fraction,
                                   test_fraction=test_fraction, val=val, test=test)
    identity = digest({"kind": kind, "name": name, "image_size": image_size,
                       "in_chans": in_chans, "seed": seed, "val_fraction": val_fraction,
                       "test_fraction": test_fraction, **params})
    return Datasets(train=train, val=val, test=test, classes=classes, in_chans=in_chans,
                    image_size=image_size, identity=identity)
