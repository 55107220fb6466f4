"""The reliability diagram (Guo et al. 2017, figure 1): is a model as accurate as it is sure?"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from xferlab.evaluate._metrics import Reliability
from xferlab.figures import figure, styled

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@styled
def reliability_figure(before: Reliability, after: Reliability) -> Figure:
    """Accuracy against confidence per bin, before and after temperature scaling: bars under
    the diagonal are over-confident; bar width shows nothing, the share of images is the shade
    (its colour bar on the right)."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import ListedColormap, Normalize

    fig = figure(8.0, 3.6)
    axes = fig.subplots(1, 2, sharey=True)
    shares = [d.count / max(1, d.count.sum()) for d in (before, after)]
    blues = ListedColormap(colormaps["Blues"](np.linspace(0.15, 1, 256)))  # no white bars
    shade = ScalarMappable(Normalize(0, max(1e-12, max(s.max() for s in shares))), blues)
    for ax, diagram, share, title in zip(axes, (before, after), shares,
                                         ("before", "after temperature scaling"), strict=True):
        bins = len(diagram.count)
        centres = (np.arange(bins) + 0.5) / bins
        shown = diagram.count > 0
        ax.bar(centres[shown], diagram.accuracy[shown], width=1 / bins, edgecolor="black",
               linewidth=0.6, color=shade.to_rgba(share[shown]),
               label="accuracy in the bin")
        ax.plot([0, 1], [0, 1], linestyle="--", color="0.3", linewidth=1.2,
                label="perfect calibration")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top softmax probability)",
               title=f"test, {title}: ECE {diagram.ece:.3f}")
        ax.grid(alpha=0.2)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(loc="upper left", frameon=True, framealpha=0.9, edgecolor="none")  # bars
    # reach the top: the frame keeps the legend readable over them
    fig.colorbar(shade, ax=axes, shrink=0.85, fraction=0.04, pad=0.02).set_label(
        "share of test images in the bin")
    return fig
