"""A user's own `root/<class>/<image>` trees, and torchvision's classification datasets."""

from __future__ import annotations

import inspect
import os
import pathlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from xferlab.config import close_match
from xferlab.data import DataError
from xferlab.data._core import Split, digest, to_images
from xferlab.data._stream import LazyImages, streams

EXTENSIONS = {ext for ext, kind in Image.registered_extensions().items() if kind in Image.OPEN}
ROOT_KEYS = ("data.root", "data.val_root", "data.test_root")


def load_image_folder(*, root: str, val_root: str | None, test_root: str | None, in_chans: int,
                      image_size: int, loader: str = "memory") -> tuple[
                          Split, Split | None, Split | None, list[str], str]:
    """(pool, val, test, classes, fingerprint); val and test are None unless their root is set.

    Images are converted to L or RGB and resized to image_size x image_size (aspect not kept):
    all at once here, or, when `loader` streams (see `streams`), each time a batch is read.
    """
    roots = {key: folder for key, folder in zip(ROOT_KEYS, (root, val_root, test_root), strict=True)
             if folder is not None}
    trees = {key: scan(key, folder) for key, folder in roots.items()}
    classes = sorted(trees["data.root"])
    for key, tree in trees.items():
        if sorted(tree) != classes:
            missing, extra = sorted(set(classes) - set(tree)), sorted(set(tree) - set(classes))
            raise DataError(f"{key}={roots[key]!r} has other class folders than data.root="
                            f"{root!r} (missing {missing}, extra {extra}): use the same class "
                            "folder names in every root")
    n_images = sum(len(paths) for tree in trees.values() for paths in tree.values())
    lazy = streams(loader, n_images, in_chans, image_size)
    splits, files = {}, {}
    for key, tree in trees.items():
        paths = [path for name in classes for path in tree[name]]
        labels = torch.tensor([label for label, name in enumerate(classes) for _ in tree[name]],
                              dtype=torch.int64)
        stats = [path.stat() for path in paths]
        images: LazyImages | torch.Tensor
        # what the identity digest sees: each file's place in its tree and its size
        base = pathlib.Path(roots[key]).expanduser()
        files[key] = [(str(path.relative_to(base)), stat.st_size)
                      for path, stat in zip(paths, stats, strict=True)]
        if lazy:
            # the feature cache's key sees modification times too: a file rewritten at the
            # same size gets new features
            fingerprint = digest([[*file, stat.st_mtime_ns]
                                  for file, stat in zip(files[key], stats, strict=True)])
            images = LazyImages.of(FileReader(tuple(paths), in_chans, image_size), fingerprint)
        else:
            images = read_files(paths, in_chans, image_size)
        splits[key] = Split(images, labels)
    return (splits["data.root"], splits.get("data.val_root"), splits.get("data.test_root"),
            classes, digest(files))


def check_roots(root: str | None, val_root: str | None, test_root: str | None) -> None:
    """DataError for the first root that is no folder of non-empty class folders: a listing,
    seconds at most, so a launch refuses it before building anything."""
    for key, folder in zip(ROOT_KEYS, (root, val_root, test_root), strict=True):
        if folder is not None:
            scan(key, folder)


def scan(key: str, folder: str) -> dict[str, list[pathlib.Path]]:
    """Class name -> sorted image files under `folder`/<class>/, checked for user errors."""
    path = pathlib.Path(folder).expanduser()
    if not path.is_dir():
        problem = "is a file, not a folder" if path.exists() else "does not exist"
        raise DataError(f"{key}={folder!r} {problem}: point {key} at a folder of class "
                        "sub-folders, <folder>/<class>/<image>")
    names = sorted(d.name for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not names:
        raise DataError(f"{key}={folder!r} has no class folders: put each class's images in "
                        f"{folder}/<class>/")
    tree = {}
    for name in names:
        tree[name] = sorted(p for p in (path / name).rglob("*") if p.is_file()
                            and p.suffix.lower() in EXTENSIONS and not p.name.startswith("."))
        if not tree[name]:
            raise DataError(f"{key}={folder!r}: class folder {name!r} holds no images: add "
                            "images (.png, .jpg, ...) or remove the folder")
    return tree


def read_files(paths: list[pathlib.Path], in_chans: int, image_size: int) -> torch.Tensor:
    """(N, C, S, S) uint8: every file decoded, now."""
    # decoding releases the GIL, so threads overlap reading and resizing
    with ThreadPoolExecutor(min(8, 2 * (os.cpu_count() or 1))) as pool:
        arrays = list(pool.map(lambda path: read_image(path, in_chans, image_size), paths))
    return torch.from_numpy(np.stack(arrays))


@dataclass(frozen=True)
class FileReader:
    """Image files read on demand: item i is a (C, S, S) uint8 array (`read_image`)."""

    paths: tuple[pathlib.Path, ...]
    in_chans: int
    image_size: int

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        return read_image(self.paths[i], self.in_chans, self.image_size)


def read_image(path: pathlib.Path, in_chans: int, image_size: int) -> np.ndarray:
    """(C, S, S) uint8 from an image file; DataError naming the file when it cannot be read."""
    try:
        with Image.open(path) as image:
            return pil_to_array(image, in_chans, image_size)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        reason = str(error).replace("\n", " ")
        raise DataError(f"cannot read image {str(path)!r} ({reason}): replace or delete the "
                        "file") from None


def pil_to_array(image: Image.Image, in_chans: int, image_size: int) -> np.ndarray:
    """(C, S, S) uint8: converted to L or RGB, resized (Pillow antialiases when shrinking)."""
    image = image.convert("L" if in_chans == 1 else "RGB")
    image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def torchvision_names() -> list[str]:
    from torchvision import datasets

    return sorted(name for name in datasets.__all__ if isinstance(getattr(datasets, name), type)
                  and issubclass(getattr(datasets, name), datasets.VisionDataset))


def load_torchvision(*, name: str, root: str | None, download: bool, in_chans: int,
                     image_size: int, loader: str = "memory") -> tuple[
                         Split, Split, list[str], str]:
    """(train pool, test, classes, fingerprint) of torchvision.datasets.<name>.

    Sets that hold their images as one array (MNIST family, CIFAR) are converted in memory;
    the others (e.g. Food101) are decoded item by item now, or read on demand when `loader`
    streams them (see `streams`)."""
    from torchvision import datasets

    names = torchvision_names()
    if name not in names:
        raise DataError(f"data.name={name!r} is not a torchvision dataset{close_match(name, names)}"
                        ": use a class name from torchvision.datasets, e.g. CIFAR10, MNIST or "
                        "FashionMNIST")
    if root is None:
        raise DataError(f"data.root is not set: data.kind='torchvision' needs data.root=<folder "
                        f"that holds {name}, or receives it with data.download=true>")
    dataset_class = getattr(datasets, name)
    params = inspect.signature(dataset_class).parameters
    folder = str(pathlib.Path(root).expanduser())

    def create(train: bool) -> Any:
        kwargs: dict[str, Any]
        if "train" in params:
            kwargs = {"train": train}
        elif "split" in params:
            kwargs = {"split": "train" if train else "test"}
        else:
            raise DataError(f"data.name={name!r} has no train/test split argument: export its "
                            "images as root/<class>/<image> and use data.kind=image_folder")
        if "download" in params:
            kwargs["download"] = download
        try:
            return dataset_class(root=folder, **kwargs)
        except (RuntimeError, OSError) as error:
            if download:
                reason = str(error).splitlines()[0] if str(error) else type(error).__name__
                raise DataError(f"data.name={name!r} could not be downloaded to data.root="
                                f"{root!r} ({reason}): check the network, or place the files "
                                "there yourself") from None
            raise DataError(f"data.name={name!r} was not found (or is incomplete) under "
                            f"data.root={root!r}: set data.download=true to fetch it, or point "
                            "data.root at a folder that holds it") from None

    train, test = create(train=True), create(train=False)
    arrays = image_array(train) is not None and image_array(test) is not None
    if not arrays and streams(loader, len(train) + len(test), in_chans, image_size):
        pool, test_split = (lazy_split(dataset, name, part, in_chans, image_size)
                            for dataset, part in ((train, "train"), (test, "test")))
    else:
        pool, test_split = (to_split(dataset, in_chans, image_size) for dataset in (train, test))
    classes = getattr(train, "classes", None) or [
        str(label) for label in range(int(pool.labels.max()) + 1)]
    return pool, test_split, list(classes), digest([len(pool), len(test_split)])


def image_array(dataset: object) -> np.ndarray | None:
    """The images as one uint8 array (MNIST family: N,H,W; CIFAR: N,H,W,3), if the set has it."""
    data, targets = getattr(dataset, "data", None), getattr(dataset, "targets", None)
    array = np.asarray(data) if isinstance(data, (np.ndarray, torch.Tensor)) else None
    if array is not None and targets is not None and array.dtype == np.uint8 and (
            array.ndim == 3 or (array.ndim == 4 and array.shape[-1] == 3)):
        return array
    return None


def to_split(dataset: Any, in_chans: int, image_size: int) -> Split:
    """All images of a torchvision dataset as a uint8 Split."""
    array = image_array(dataset)
    if array is not None:  # the fast path for the in-memory sets
        images = torch.from_numpy(array[:, None] if array.ndim == 3
                                  else array.transpose(0, 3, 1, 2))
        labels = torch.as_tensor(np.asarray(dataset.targets), dtype=torch.int64)
        return Split(to_images(images, in_chans=in_chans, image_size=image_size), labels)
    items = [dataset[i] for i in range(len(dataset))]  # (PIL image, class index) pairs
    pixels = np.stack([pil_to_array(image, in_chans, image_size) for image, _ in items])
    return Split(torch.from_numpy(pixels), torch.tensor([int(t) for _, t in items]))


def lazy_split(dataset: Any, name: str, part: str, in_chans: int, image_size: int) -> Split:
    """A torchvision dataset's images read on demand, its labels now."""
    labels = None
    for attribute in ("targets", "_labels", "samples", "_samples"):  # lists torchvision keeps
        found = getattr(dataset, attribute, None)
        if isinstance(found, (list, tuple, np.ndarray, torch.Tensor)) and len(found) == len(
                dataset):
            labels = [item[1] if isinstance(item, tuple) else item for item in found]
            break
    if labels is None:  # a set with no label list: read each item once for its label
        labels = [dataset[i][1] for i in range(len(dataset))]
    fingerprint = digest({"dataset": type(dataset).__name__, "split": part,
                          "size": len(dataset)})
    reader = ItemReader(dataset, name, in_chans, image_size)
    return Split(LazyImages.of(reader, fingerprint),
                 torch.tensor([int(label) for label in labels], dtype=torch.int64))


@dataclass(frozen=True)
class ItemReader:
    """A torchvision dataset's (PIL image, label) items read on demand: item i is a (C, S, S)
    uint8 array (`pil_to_array`)."""

    dataset: Any
    name: str
    in_chans: int
    image_size: int

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> np.ndarray:
        try:
            image, _ = self.dataset[i]
            return pil_to_array(image, self.in_chans, self.image_size)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
            reason = str(error).replace("\n", " ")
            raise DataError(f"cannot read item {i} of data.name={self.name!r} ({reason}): "
                            "check its files under data.root, or download it again") from None
