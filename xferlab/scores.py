"""Transferability scores: how well a backbone's frozen features suit a target task.

Each score maps ``(features (N, D), labels (N,))`` to one float where higher means "more
transferable"; ``SCORES`` names them for the CLI. ``kendall_tau`` and ``weighted_tau`` then say
how well a score ranks backbones against their fine-tuned results.

Only numpy, scipy and scikit-learn: features are extracted elsewhere and arrive as arrays.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler, normalize

# The official code stops LogME's fixed point at a 1e-3 relative change of alpha/beta (or 11
# steps), which leaves the evidence off by ~1e-4. Each step costs O(rank), nothing next to the SVD,
# so we iterate until alpha and beta settle, or, when the maximum lies at alpha or beta = infinity
# (useless features; or labels inside the features' span, common when D >= N) and they drift
# geometrically towards it, until the evidence itself stops moving.
_LOGME_PARAM_TOL = 1e-10
_LOGME_EVIDENCE_TOL = 1e-13
_LOGME_MAX_ITER = 10_000
# Floor for the alpha/beta denominators, which only vanish on a drift to the boundary; the
# official code adds 1e-5 instead, which shifts every fixed point.
_TINY = 1e-300


def _check(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Features as finite float64 (N, D) and labels as (N,), or a ValueError saying what's wrong."""
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    if f.ndim != 2:
        raise ValueError(f"features must be 2-D (N, D), got shape {f.shape}")
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D (N,), got shape {y.shape}")
    if len(f) != len(y):
        raise ValueError(f"features and labels differ in length: {len(f)} vs {len(y)}")
    if len(y) == 0:
        raise ValueError("features and labels are empty")
    if not np.isfinite(f).all():
        raise ValueError("features contain NaN or inf")
    return f, y


def _max_evidence(sigma: np.ndarray, x2: np.ndarray, outside: float, n: int,
                  d: int) -> tuple[float, bool]:
    """Maximised log evidence of one target, from the nonzero eigenvalues ``sigma`` of F^T F,
    the squared coordinates ``x2`` of the target in F's left singular vectors, and the squared
    norm ``outside`` of its part orthogonal to them; also whether the iteration converged."""
    rank = len(sigma)
    alpha, beta = 1.0, 1.0  # the official starting point
    previous = -np.inf
    for _ in range(_LOGME_MAX_ITER):
        t = alpha / beta
        # fit_i + shrink_i = 1; both computed directly so neither loses digits as t -> 0 or inf
        fit, shrink = sigma / (sigma + t), t / (sigma + t)
        m2 = float((x2 * fit**2 / sigma).sum())  # m^T m
        res2 = float((x2 * shrink**2).sum()) + outside  # ||y - F m||^2
        # log|A| = sum over all D eigenvalues of F^T F, the D - rank zero ones included
        log_det_a = float(np.log(alpha + beta * sigma).sum()) + (d - rank) * np.log(alpha)
        evidence = (n / 2 * np.log(beta) + d / 2 * np.log(alpha) - n / 2 * np.log(2 * np.pi)
                    - beta / 2 * res2 - alpha / 2 * m2 - log_det_a / 2)
        if abs(evidence - previous) <= _LOGME_EVIDENCE_TOL * max(1.0, abs(evidence)):
            return evidence, True
        previous = evidence
        # MacKay's update; N - gamma = (N - rank) + sum(shrink) avoids cancelling when gamma ~ N
        gamma = float(fit.sum())
        new_alpha = gamma / max(m2, _TINY)
        new_beta = ((n - rank) + float(shrink.sum())) / max(res2, _TINY)
        if (abs(new_alpha - alpha) <= _LOGME_PARAM_TOL * alpha
                and abs(new_beta - beta) <= _LOGME_PARAM_TOL * beta):
            return evidence, True
        alpha, beta = new_alpha, new_beta
    return evidence, False


def logme(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME: mean over classes of the maximised log evidence / N of a Bayesian linear model.

    You, Liu, Wang & Long, "LogME: Practical Assessment of Pre-trained Models for Transfer
    Learning", ICML 2021. Each class k gets a one-hot target y_k and the model
    y_k = F w + noise, w ~ N(0, alpha^-1 I), noise ~ N(0, beta^-1 I); alpha and beta maximise

        L = N/2 log beta + D/2 log alpha - N/2 log 2pi - beta/2 ||y - F m||^2
            - alpha/2 m^T m - 1/2 log|alpha I + beta F^T F|        (m: posterior mean of w)

    by MacKay's fixed point gamma = sum_i sigma_i / (sigma_i + alpha/beta),
    alpha = gamma / m^T m, beta = (N - gamma) / ||y - F m||^2, with sigma_i the eigenvalues of
    F^T F. One thin SVD F = U S V^T serves every class: with x = U^T y, every quantity above is a
    sum over the singular values (the ``_fit_fixed_point`` variant of the official
    implementation, https://github.com/thuml/LogME/blob/main/LogME.py). Differences from it,
    all so that the result is the paper's Eq. 2 at its maximum:

    - log|A| counts the D - rank zero eigenvalues of F^T F as log(alpha) each; the official
      fixed-point code drops them, which is wrong when D > N (thuml/LogME issue #23, PR #24)
      and likewise when features are rank-deficient (dead or duplicated units);
    - the iteration runs until alpha and beta settle (1e-10 relative) or the evidence does
      (1e-13), not for at most 11 steps to a 1e-3 change, and adds no 1e-5 to the alpha/beta
      denominators. When the maximum lies at alpha -> inf (features useless for a class) or
      beta -> inf (class exactly in the features' span, usual for D >= N), alpha/beta diverge
      and the result is the limit of the evidence, which is finite; the official code stops
      wherever step 11 or its epsilon leaves it;
    - classes are the distinct label values (any dtype), not ``range(labels.max() + 1)``.

    Returns the mean over classes of evidence / N (float64 throughout); higher is better.
    """
    f, y = _check(features, labels)
    n, d = f.shape
    classes, y_idx = np.unique(y, return_inverse=True)

    # thin SVD of F: the nonzero eigenvalues of F^T F are s^2, their eigenvectors span U's columns
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    rank = int((s > s[0] * max(n, d) * np.finfo(np.float64).eps).sum()) if s.size else 0
    if rank == 0:
        raise ValueError("features have rank 0 (all zero): LogME is undefined")
    u, sigma = u[:, :rank], s[:rank] ** 2

    evidences = []
    for k in range(len(classes)):
        target = (y_idx == k).astype(np.float64)
        x = u.T @ target
        # the part of y outside the span of F is a residual no weight vector can reduce; taken
        # directly rather than as |y|^2 - |x|^2, which cancels to noise when y is in the span
        rest = target - u @ x
        outside = float(rest @ rest) if rank < n else 0.0
        evidence, converged = _max_evidence(sigma, x**2, outside, n, d)
        if not converged:
            warnings.warn(f"LogME: alpha/beta did not converge for class {classes[k].item()!r} in "
                          f"{_LOGME_MAX_ITER} steps", RuntimeWarning, stacklevel=2)
        evidences.append(evidence / n)
    return float(np.mean(evidences))


def _folds(labels: np.ndarray, folds: int, seed: int) -> StratifiedKFold:
    """Stratified folds, fewer when the smallest class can't fill ``folds`` of them."""
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        raise ValueError(f"need at least 2 classes to score, got {len(classes)}")
    if counts.min() < 2:
        small = classes[counts < 2].tolist()  # Python scalars: "class 7", not "np.int64(7)"
        raise ValueError(f"class {small[0]!r} has only 1 sample; cross-validation needs at least "
                         f"2 per class ({len(small)} such class(es))")
    # StratifiedKFold puts each class in every test fold, so a class of c samples allows c folds
    return StratifiedKFold(n_splits=min(folds, int(counts.min())), shuffle=True,
                           random_state=seed)


def knn_accuracy(features: np.ndarray, labels: np.ndarray, *, k: int = 5, folds: int = 5,
                 seed: int = 0) -> float:
    """Cross-validated k-NN accuracy with cosine distance (on L2-normalised features).

    Rows are L2-normalised, so Euclidean neighbours are exactly the cosine-nearest ones (and
    feature scale, which varies wildly between backbones, does not matter). Votes are uniform.
    Stratified ``folds``-fold CV, shuffled by ``seed``; ``folds`` shrinks to the smallest class
    size (at least 2). Returns the fraction of samples whose out-of-fold prediction is right.
    """
    f, y = _check(features, labels)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    cv = _folds(y, folds, seed)
    # tiny data sets: k can't exceed the smallest training split (sklearn would raise)
    k = min(k, min(len(train) for train, _ in cv.split(f, y)))
    knn = KNeighborsClassifier(n_neighbors=k, algorithm="brute")
    pred = cross_val_predict(knn, normalize(f), y, cv=cv)
    return float((pred == y).mean())


def linear_probe_accuracy(features: np.ndarray, labels: np.ndarray, *, folds: int = 5,
                          seed: int = 0, C: float = 1.0) -> float:
    """Cross-validated accuracy of a multinomial logistic regression on the features.

    Features are standardised inside each fold (a Pipeline, so test folds never leak into the
    scaler); L2 penalty with inverse strength ``C``, lbfgs. Same folds as ``knn_accuracy`` for
    equal ``folds``/``seed``. Returns the fraction of right out-of-fold predictions.
    """
    f, y = _check(features, labels)
    cv = _folds(y, folds, seed)
    # lbfgs fits the multinomial loss for >2 classes; 2000 steps is ample on standardised
    # ~1000 x 512 features (typically a few hundred)
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
    pred = cross_val_predict(probe, f, y, cv=cv)
    return float((pred == y).mean())


def _pair(scores: np.ndarray, results: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(scores, dtype=np.float64).ravel()
    r = np.asarray(results, dtype=np.float64).ravel()
    if len(x) != len(r):
        raise ValueError(f"scores and results differ in length: {len(x)} vs {len(r)}")
    return x, r


def kendall_tau(scores: np.ndarray, results: np.ndarray) -> float:
    """Kendall's tau-b between transferability scores and fine-tuned results (nan if undefined)."""
    x, r = _pair(scores, results)
    if len(x) < 2:
        return float("nan")
    with warnings.catch_warnings():  # constant input: nan is the answer, not a warning
        warnings.simplefilter("ignore")
        return float(stats.kendalltau(x, r).statistic)


def weighted_tau(scores: np.ndarray, results: np.ndarray) -> float:
    """Weighted Kendall tau (hyperbolic weights, top ranks count most), as the LogME paper used.

    ``scipy.stats.weightedtau`` with its defaults: averaged over ranking by either argument, so
    symmetric. nan if undefined (fewer than 2 items, or constant input).
    """
    x, r = _pair(scores, results)
    if len(x) < 2:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.weightedtau(x, r).statistic)


@dataclass(frozen=True)
class Score:
    """A transferability score, logged as rank/<name> and shown as `label` by `xferlab rank`."""

    label: str
    of: Callable[[np.ndarray, np.ndarray], float]  # (features, labels) -> higher is better

    def __call__(self, features: np.ndarray, labels: np.ndarray) -> float:
        return self.of(features, labels)


# The scores `xferlab rank` computes, in the order it shows them (sorted by the first)
SCORES = {
    "logme": Score("LogME", logme),
    "knn": Score("k-NN", knn_accuracy),
    "linear_probe": Score("probe", linear_probe_accuracy),
}
