"""Classification metrics from predictions: accuracy, balanced accuracy and macro-F1.

On an imbalanced set (elpv: 71% functional cells) accuracy alone rewards predicting the majority
class; balanced accuracy (the mean per-class recall) and macro-F1 do not.
"""

from __future__ import annotations

import torch


def confusion(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes, num_classes) counts, rows the true class, columns the prediction."""
    index = labels.long() * num_classes + pred.long()
    return torch.bincount(index, minlength=num_classes ** 2).view(num_classes, num_classes)


def class_metrics(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, float]:
    """`acc`, `balanced_acc` (mean recall over the classes present) and `macro_f1` (mean F1 over
    the classes present or predicted; a class never predicted and absent counts nowhere)."""
    matrix = confusion(pred, labels, num_classes).double()
    hits, actual, predicted = matrix.diag(), matrix.sum(1), matrix.sum(0)
    present = actual > 0
    recall = hits[present] / actual[present]
    seen = present | (predicted > 0)
    f1 = 2 * hits[seen] / (actual[seen] + predicted[seen])
    return {"acc": (hits.sum() / matrix.sum()).item(), "balanced_acc": recall.mean().item(),
            "macro_f1": f1.mean().item()}
