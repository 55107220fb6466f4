"""A user's own `root/<class>/<image>` trees, and torchvision's classification datasets."""

from __future__ import annotations

import inspect
import os
import pathlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image

from xferlab.data._core import DataError, Split, close_match, digest, to_images

EXTENSIONS = {ext for ext, kind in Image.registered_extensions().items() if kind in Image.OPEN}
ROOT_KEYS = ("data.root", "data.val_root", "data.test_root")


def load_image_folder(*, root: str, val_root: str | None, test_root: str | None, in_chans: int,
                      image_size: int) -> tuple[Split, Split | None, Split | None, list[str], str]:
    """(pool, val, test, classes, fingerprint); val and test are None unless their root is set.

    Images are converted to L or RGB and resized to image_size x image_size (aspect not kept).
    """
    roots = {key: folder for key, folder in zip(ROOT_KEYS, (root, val_root, test_root))
             if folder is not None}
    trees = {key: scan(key, folder) for key, folder in roots.items()}
    classes = sorted(trees["data.root"])
    for key, tree in trees.items():
        if sorted(tree) != classes:
            missing, extra = sorted(set(classes) - set(tree)), sorted(set(tree) - set(classes))
            raise DataError(f"{key}={roots[key]!r} has other class folders than data.root="
                            f"{root!r} (missing {missing}, extra {extra}): use the same class "
                            "folder names in every root")
    splits = {key: read_tree(tree, classes, in_chans, image_size) for key, tree in trees.items()}
    # what the identity digest sees: each file's place in its tree and its size
    files = {key: [(str(path.relative_to(pathlib.Path(roots[key]).expanduser())),
                    path.stat().st_size) for name in classes for path in tree[name]]
             for key, tree in trees.items()}
    return (splits["data.root"], splits.get("data.val_root"), splits.get("data.test_root"),
            classes, digest(files))


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


def read_tree(tree: dict[str, list[pathlib.Path]], classes: list[str], in_chans: int,
              image_size: int) -> Split:
    """Every image of a scanned tree, labelled by its class's index in `classes`."""
    files = [path for name in classes for path in tree[name]]
    labels = [label for label, name in enumerate(classes) for _ in tree[name]]
    # decoding releases the GIL, so threads overlap reading and resizing
    with ThreadPoolExecutor(min(8, 2 * (os.cpu_count() or 1))) as pool:
        arrays = list(pool.map(lambda path: read_image(path, in_chans, image_size), files))
    return Split(torch.from_numpy(np.stack(arrays)), torch.tensor(labels, dtype=torch.int64))


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
                     image_size: int) -> tuple[Split, Split, list[str], str]:
    """(train pool, test, classes, fingerprint) of torchvision.datasets.<name>."""
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

    def create(train: bool) -> object:
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
    pool, test_split = (to_split(dataset, in_chans, image_size) for dataset in (train, test))
    classes = getattr(train, "classes", None) or [
        str(label) for label in range(int(pool.labels.max()) + 1)]
    return pool, test_split, list(classes), digest([len(pool), len(test_split)])


def to_split(dataset: object, in_chans: int, image_size: int) -> Split:
    """All images of a torchvision dataset as a uint8 Split."""
    data, targets = getattr(dataset, "data", None), getattr(dataset, "targets", None)
    array = np.asarray(data) if isinstance(data, (np.ndarray, torch.Tensor)) else None
    if array is not None and targets is not None and array.dtype == np.uint8 and (
            array.ndim == 3 or (array.ndim == 4 and array.shape[-1] == 3)):
        # fast path for the in-memory sets (MNIST family: N,H,W; CIFAR: N,H,W,3)
        images = torch.from_numpy(array[:, None] if array.ndim == 3
                                  else array.transpose(0, 3, 1, 2))
        labels = torch.as_tensor(np.asarray(targets), dtype=torch.int64)
        return Split(to_images(images, in_chans=in_chans, image_size=image_size), labels)
    items = [dataset[i] for i in range(len(dataset))]  # (PIL image, class index) pairs
    images = np.stack([pil_to_array(image, in_chans, image_size) for image, _ in items])
    return Split(torch.from_numpy(images), torch.tensor([int(t) for _, t in items]))
