"""What every run logs besides metrics: its training subset, checkpoint, plots and per-class CSV.

Kept apart from `xferlab.tracking` so that `xferlab report` and `xferlab ui` start without torch
and matplotlib. Each call names its run: the run is opened on another thread (`tracking.run`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from xferlab.figures import (
    COLORS,
    SAVE,
    caption,
    caption_line,
    commit_text,
    figure,
    label,
    series,
    styled,
    value_label,
)
from xferlab.tracking import masked

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def log_subset(run_id: str, name: str, identity: str, labels: torch.Tensor, digest: str,
               num_classes: int) -> None:
    """The exact training subset as a dataset input whose digest is that of its indices."""
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    counts = torch.bincount(labels, minlength=num_classes).tolist()
    # what mlflow.log_input stores for a MetaDataset over a CodeDatasetSource
    dataset = Dataset(name=f"{name}-train", digest=digest, source_type="code",
                      source=json.dumps({"tags": {"dataset": name, "identity": identity}}))
    tags = {MLFLOW_DATASET_CONTEXT: "train", "class_counts": json.dumps(counts),
            "size": str(len(labels))}
    inputs = [DatasetInput(dataset, tags=[InputTag(k, v) for k, v in tags.items()])]
    try:
        MlflowClient().log_inputs(run_id, inputs)
    except MlflowException:
        # runs of one subset starting at once (seeds of a parallel grid) each insert the new
        # dataset; the store's unique key refuses all but one. Now it exists: link to it
        MlflowClient().log_inputs(run_id, inputs)


def log_run_artifacts(run_id: str, checkpoint: Path, *, cfg: str, overrides: list[str],
                      history: list[dict[str, float]], labels: torch.Tensor, pred: torch.Tensor,
                      classes: list[str],
                      figures: Mapping[str, Callable[[], Figure]]) -> None:
    """Resolved config, overrides, checkpoint folder, learning curves, confusion, per-class CSV,
    and the caller's `figures` (by artifact path, each a function that draws it: nothing is
    drawn, and matplotlib not imported, where this is not called); every figure gets the run's
    caption (data, backbone, strategy, fraction, seed, commit) and is logged at 200 dpi."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    client.log_text(run_id, masked(cfg), "config.yaml")
    client.log_text(run_id, masked("".join(f"- {o}\n" for o in overrides) or "[]\n"),
                    "overrides.yaml")
    client.log_artifacts(run_id, str(checkpoint), "checkpoint")
    confusion = torch.zeros(len(classes), len(classes), dtype=torch.long)
    confusion.index_put_((labels, pred), torch.ones_like(labels), accumulate=True)
    test_acc = (labels == pred).double().mean().item() if len(labels) else None
    line = run_caption(cfg, client.get_run(run_id).data.tags)
    drawn = {"plots/learning_curves.png": learning_curves_figure(history, test_acc=test_acc),
             "plots/confusion_matrix.png": confusion_figure(confusion, classes),
             **{path: draw() for path, draw in figures.items()}}
    for path, drawing in drawn.items():
        client.log_figure(run_id, caption(drawing, line), path, save_kwargs=SAVE)
    client.log_text(run_id, _per_class_csv(confusion, classes), "per_class_metrics.csv")


def run_caption(cfg: str, tags: Mapping[str, str]) -> str:
    """The caption line of a run's figures, from its resolved config (YAML) and its tags:
    `data: animal_mnist · backbone: resnet18 · LP-FT · labelled fraction 0.05 · seed 1 ·
    commit 1a2b3c4`."""
    import yaml

    conf = yaml.safe_load(cfg) or {}
    data, backbone, freeze = (conf.get(k) or {} for k in ("data", "backbone", "freeze"))
    more = [value_label("freeze", freeze["strategy"])] if "strategy" in freeze else []
    if isinstance(data.get("fraction"), int | float):
        more.append(f"{label('data.fraction')} {data['fraction']:g}")
    commit = commit_text([(tags.get("git.commit"), tags.get("git.dirty") == "True")])
    return caption_line(data=data.get("name"), backbone=backbone.get("name"),
                        seeds=f"seed {conf.get('seed', '?')}", commit=commit, more=more)


def _per_class_csv(confusion: torch.Tensor, classes: list[str]) -> str:
    """precision, recall, f1 and support per class from a (true, pred) confusion matrix."""
    rows = ["class,precision,recall,f1,support"]
    for c, name in enumerate(classes):
        tp = confusion[c, c].item()
        precision = tp / max(1, confusion[:, c].sum().item())
        recall = tp / max(1, confusion[c].sum().item())
        f1 = 2 * precision * recall / max(1e-12, precision + recall)
        rows.append(f"{name},{precision:.4f},{recall:.4f},{f1:.4f},{confusion[c].sum().item()}")
    return "\n".join(rows) + "\n"


@styled
def learning_curves_figure(history: list[dict[str, float]], *,
                           test_acc: float | None = None) -> Figure:
    """Loss (log scale) and validation accuracy per epoch, counted from 1 as the console counts
    (epoch i + 1 is history[i]); the best validation epoch, whose weights were tested, marked
    on both, with the test accuracy of those weights."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    epochs = np.arange(1, len(history) + 1)
    fig = figure(8.0, 3.2)
    loss_ax, acc_ax = fig.subplots(1, 2)
    for i, (key, name) in enumerate((("train/loss", "training"), ("val/loss", "validation"))):
        loss_ax.plot(epochs, [h.get(key, np.nan) for h in history], label=name, **series(i))
    loss_ax.set(yscale="log", xlabel="epoch", ylabel="cross-entropy loss (log scale)",
                title="loss")
    losses = [v for h in history for k in ("train/loss", "val/loss")
              if np.isfinite(v := h.get(k, np.nan)) and v > 0]
    few = bool(losses) and max(losses) / min(losses) < 30  # within ~1.5 decades: label 2, 3, 5
    loss_ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    loss_ax.yaxis.set_minor_formatter(FuncFormatter(
        lambda v, _: f"{v:g}" if few and f"{v:.0e}"[0] in "235" else ""))
    val = np.array([h.get("val/acc", np.nan) for h in history], dtype=float)
    acc_ax.plot(epochs, val, label="validation", **series(1))
    if np.isfinite(val).any():
        best = int(np.nanargmax(val)) + 1  # the first epoch that reached it, as the engine keeps
        for ax in (loss_ax, acc_ax):
            ax.axvline(best, color="0.45", linestyle=":", linewidth=1.2,
                       label=f"best epoch ({best})")
        acc_ax.plot(best, val[best - 1], linestyle="none", marker="o", markersize=10,
                    markerfacecolor="none", markeredgecolor="black", markeredgewidth=1.2,
                    clip_on=False)
        if test_acc is not None:
            acc_ax.plot(best, test_acc, linestyle="none", marker="*", markersize=12,
                        color=COLORS[2], markeredgecolor="black", markeredgewidth=0.6,
                        clip_on=False, label=f"test accuracy {test_acc:.3f}")
    acc_ax.set(ylim=(0, 1), xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (loss_ax, acc_ax):
        ax.set_xlim(0.5, len(history) + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    loss_ax.legend(loc="upper right")
    acc_ax.legend(loc="lower right")
    return fig


@styled
def confusion_figure(matrix: torch.Tensor | np.ndarray, classes: list[str]) -> Figure:
    """The test confusion matrix (rows: true class): each cell's colour is its share of the row
    (recall on the diagonal), with a colour bar; up to 25 classes the cells hold their counts,
    up to 12 the share as well."""
    counts = np.asarray(matrix, dtype=np.int64)
    n = len(classes)
    rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    cell = 0.62 if n <= 12 else 0.42 if n <= 25 else max(0.1, 11 / n)
    side = max(2.5, cell * n)
    fig = figure(side + 2.2, side + 1.3)  # + the class names, the colour bar, the title
    ax = fig.subplots()
    ax.grid(False)
    ax.spines[:].set_visible(False)
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, shrink=0.85, fraction=0.05, pad=0.03).set_label(
        "share of the true class (row-normalised)")
    size = 8 if n <= 25 else max(4.0, 8 * 25 / n)
    ax.set_xticks(range(n), classes, fontsize=size, rotation=45 if max(map(len, classes),
                                                                        default=0) > 3 else 0,
                  ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n), classes, fontsize=size)
    ax.set(xlabel="predicted class", ylabel="true class")
    total = int(counts.sum())
    ax.set_title(f"test confusion matrix: accuracy {np.trace(counts) / max(1, total):.3f} "
                 f"on {total:,} images")
    if n <= 25:
        for i, j in zip(*np.nonzero(counts), strict=True):
            colour = "white" if rates[i, j] > 0.55 else "black"
            if n <= 12:
                ax.text(j, i - 0.13, f"{counts[i, j]:,}", ha="center", va="center",
                        fontsize=9, color=colour)
                ax.text(j, i + 0.25, _percent(rates[i, j]), ha="center", va="center",
                        fontsize=6.5, color=colour)
            else:
                ax.text(j, i, f"{counts[i, j]:,}", ha="center", va="center", fontsize=7,
                        color=colour)
    return fig


def _percent(rate: float) -> str:
    return "<1%" if 0 < rate < 0.005 else f"{rate:.0%}"
