"""What every run logs besides metrics: its training subset, checkpoint, plots and per-class CSV.

Kept apart from `xferlab.tracking` so that `xferlab report` and `xferlab ui` start without torch
and matplotlib. Each call names its run: the run is opened on another thread (`tracking.run`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch

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
                      classes: list[str], figures: dict[str, Figure]) -> None:
    """Resolved config, overrides, checkpoint folder, learning curves, confusion, per-class CSV,
    and the `figures` the caller drew, by artifact path."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    client.log_text(run_id, masked(cfg), "config.yaml")
    client.log_text(run_id, masked("".join(f"- {o}\n" for o in overrides) or "[]\n"),
                    "overrides.yaml")
    client.log_artifacts(run_id, str(checkpoint), "checkpoint")
    client.log_figure(run_id, learning_curves_figure(history), "plots/learning_curves.png")
    confusion = torch.zeros(len(classes), len(classes), dtype=torch.long)
    confusion.index_put_((labels, pred), torch.ones_like(labels), accumulate=True)
    client.log_figure(run_id, confusion_figure(confusion, classes), "plots/confusion_matrix.png")
    client.log_text(run_id, _per_class_csv(confusion, classes), "per_class_metrics.csv")
    for path, figure in figures.items():
        client.log_figure(run_id, figure, path)


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


def learning_curves_figure(history: list[dict[str, float]]) -> Figure:
    plt = _pyplot()
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


def confusion_figure(matrix: torch.Tensor, classes: list[str]) -> Figure:
    """Row-normalised (true class) confusion matrix with counts in the cells."""
    plt = _pyplot()
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


def _pyplot():
    """matplotlib, imported when the first plot is drawn: at the end of a run, not its start."""
    import matplotlib

    matplotlib.use("Agg")  # headless: runs on servers and in sweeps
    import matplotlib.pyplot as plt

    return plt
