"""scikit-learn's handwritten digits (1,797 images, 8x8, ink values 0..16), the embedded target."""

from __future__ import annotations

import numpy as np
import torch

from xferlab.data._core import Split


def load_digits() -> tuple[Split, list[str]]:
    """All 1,797 digits as uint8 (N, 1, 8, 8), bright ink on black, and the class names."""
    from sklearn.datasets import load_digits as sklearn_digits  # only this kind needs sklearn

    bunch = sklearn_digits()
    images = np.round(bunch.images * (255 / 16)).astype(np.uint8)[:, None]
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    return Split(torch.from_numpy(images), labels), [str(name) for name in bunch.target_names]
