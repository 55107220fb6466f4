"""Figures logged with every run: learning curves and the confusion matrix."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: runs on servers and in sweeps
import matplotlib.pyplot as plt
import torch


def learning_curves(history: list[dict[str, float]]) -> plt.Figure:
    epochs = range(1, len(history) + 1)
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(9, 3.5), constrained_layout=True)
    loss_ax.plot(epochs, [h["train/loss"] for h in history], label="train")
    loss_ax.plot(epochs, [h["val/loss"] for h in history], label="val")
    loss_ax.set(xlabel="epoch", ylabel="loss", title="loss")
    loss_ax.legend()
    acc_ax.plot(epochs, [h["val/acc"] for h in history], label="val/acc")
    acc_ax.plot(epochs, [h["val/acc_best"] for h in history], "--", label="val/acc_best")
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title="validation accuracy")
    acc_ax.legend()
    plt.close(fig)
    return fig


def confusion(matrix: torch.Tensor, classes: list[str]) -> plt.Figure:
    """Row-normalised (true class) confusion matrix with counts in the cells."""
    n = len(classes)
    size = min(12, 2 + 0.45 * n)
    fig, ax = plt.subplots(figsize=(size, size), constrained_layout=True)
    rates = matrix.float() / matrix.sum(1, keepdim=True).clamp(min=1)
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set(xticks=range(n), yticks=range(n), xlabel="predicted", ylabel="true",
           title="test confusion matrix")
    ax.set_xticklabels(classes, fontsize=7)
    ax.set_yticklabels(classes, fontsize=7)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                count = int(matrix[i, j])
                if count:
                    ax.text(j, i, count, ha="center", va="center", fontsize=7,
                            color="white" if rates[i, j] > 0.5 else "black")
    plt.close(fig)
    return fig
