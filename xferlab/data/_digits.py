"""scikit-learn's handwritten digits (1,797 images, 8x8, ink values 0..16), the embedded target."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from xferlab.data import DIGITS
from xferlab.data._core import Split


def load_digits() -> tuple[Split, list[str]]:
    """All 1,797 digits as uint8 (N, 1, 8, 8), bright ink on black, and the class names."""
    # the CSV that sklearn.datasets.load_digits reads, read without importing scikit-learn
    # (a second of start-up every run); its rows are 64 ink values (0..16) and the label
    package = importlib.util.find_spec("sklearn")
    assert package is not None and package.submodule_search_locations  # a dependency
    path = Path(package.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    table = np.loadtxt(path, delimiter=",", dtype=np.float64)
    images = np.round(table[:, :64].reshape(-1, 1, 8, 8) * (255 / 16)).astype(np.uint8)
    labels = torch.from_numpy(table[:, 64].astype(np.int64))
    return Split(torch.from_numpy(images), labels), list(DIGITS)
