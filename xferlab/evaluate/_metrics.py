"""Classification and calibration metrics: accuracy, balanced accuracy, macro-F1, NLL, ECE,
Brier score, and temperature scaling.

On an imbalanced set (elpv: 71% functional cells) accuracy alone rewards predicting the majority
class; balanced accuracy (the mean per-class recall) and macro-F1 do not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


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


# Calibration: does the model know when it is wrong? The conventions of Guo et al. (ICML 2017,
# "On Calibration of Modern Neural Networks"): top-label confidence, 15 equal-width bins.
ECE_BINS = 15


@dataclass(frozen=True)
class Reliability:
    """Per confidence bin (equal width over [0, 1]): mean confidence, accuracy and count."""

    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray

    @property
    def ece(self) -> float:
        """Expected calibration error: the count-weighted mean |accuracy - confidence|."""
        return float((self.count * np.abs(self.accuracy - self.confidence)).sum()
                     / max(1, self.count.sum()))


def reliability(logits: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS) -> Reliability:
    """The reliability diagram's bins of softmax(logits) against labels (empty bins count 0)."""
    confidence, pred = logits.float().softmax(1).max(1)
    correct = (pred == labels).double()
    # a confidence of exactly 1.0 belongs in the last bin, as in Guo et al.'s code
    index = (confidence.double() * bins).long().clamp(max=bins - 1)
    count = torch.bincount(index, minlength=bins).double()
    mean_conf, acc = (torch.bincount(index, weights=w, minlength=bins) / count.clamp(min=1)
                      for w in (confidence.double(), correct))
    return Reliability(mean_conf.numpy(), acc.numpy(), count.long().numpy())


def calibration(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """`nll` (mean negative log-likelihood), `ece` and `brier` (mean squared error of the
    probability vector against the one-hot label, summed over classes)."""
    logits, labels = logits.float(), labels.long()
    probs = logits.softmax(1)
    onehot = F.one_hot(labels, logits.shape[1]).float()
    return {"nll": F.cross_entropy(logits, labels).item(),
            "ece": reliability(logits, labels).ece,
            "brier": ((probs - onehot) ** 2).sum(1).mean().item()}


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Temperature scaling (Guo et al. 2017): the T > 0 minimising the NLL of logits / T on a
    held-out split. One parameter, so it changes confidence, never the prediction. Fitted in
    log T (positive by construction) with L-BFGS, as a convex 1-D problem converges in a few
    steps; starts at T = 1."""
    logits, labels = logits.detach().double(), labels.long()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.exp().item())
