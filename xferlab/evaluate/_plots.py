"""The reliability diagram (Guo et al. 2017, figure 1): is a model as accurate as it is sure?"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from xferlab.evaluate._metrics import Reliability

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def reliability_figure(before: Reliability, after: Reliability) -> Figure:
    """Accuracy against confidence per bin, before and after temperature scaling: bars under
    the diagonal are over-confident; bar width shows nothing, the count is in the shade."""
    import matplotlib

    matplotlib.use("Agg")  # headless: runs on servers and in sweeps
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 4), sharey=True, constrained_layout=True)
    for ax, diagram, title in zip(axes, (before, after), ("before", "after temperature scaling"),
                                  strict=True):
        bins = len(diagram.count)
        centres = (np.arange(bins) + 0.5) / bins
        shown = diagram.count > 0
        share = diagram.count / max(1, diagram.count.sum())
        ax.bar(centres[shown], diagram.accuracy[shown], width=1 / bins, edgecolor="black",
               color=plt.cm.Blues(0.3 + 0.7 * share[shown] / max(share.max(), 1e-12)),
               label="accuracy")
        ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", title=f"test, {title}\n"
               f"ECE {diagram.ece:.3f}")
    axes[0].set_ylabel("accuracy")
    axes[0].legend(loc="upper left")
    plt.close(fig)
    return fig
