"""Transferability scores: LogME against a direct implementation of the paper, the CV scores on
separable vs shuffled labels, rank correlations, and input checks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from xferlab.scores import (
    SCORES,
    kendall_tau,
    knn_accuracy,
    linear_probe_accuracy,
    logme,
    weighted_tau,
)


def reference_logme(features: np.ndarray, labels: np.ndarray, tol: float = 1e-11) -> float:
    """LogME as the paper writes it (Algorithm 1, Eq. 2), with no SVD shortcut: D x D solves.

    Slow and straightforward on purpose; only for interior maxima (alpha, beta finite).
    """
    f = np.asarray(features, dtype=np.float64)
    n, d = f.shape
    ftf = f.T @ f
    s = np.clip(np.linalg.eigvalsh(ftf), 0.0, None)  # eigenvalues of F^T F, zeros included
    evidences = []
    for c in np.unique(labels):
        y = (labels == c).astype(np.float64)
        alpha, beta = 1.0, 1.0
        for _ in range(100_000):
            a = alpha * np.eye(d) + beta * ftf
            m = beta * np.linalg.solve(a, f.T @ y)
            gamma = np.sum(beta * s / (alpha + beta * s))
            new_alpha = gamma / (m @ m)
            new_beta = (n - gamma) / np.sum((y - f @ m) ** 2)
            done = abs(new_alpha - alpha) <= tol * alpha and abs(new_beta - beta) <= tol * beta
            alpha, beta = new_alpha, new_beta
            if done:
                break
        else:
            raise AssertionError("reference LogME did not converge")
        a = alpha * np.eye(d) + beta * ftf
        m = beta * np.linalg.solve(a, f.T @ y)
        evidence = (n / 2 * np.log(beta) + d / 2 * np.log(alpha) - n / 2 * np.log(2 * np.pi)
                    - beta / 2 * np.sum((y - f @ m) ** 2) - alpha / 2 * (m @ m)
                    - np.linalg.slogdet(a)[1] / 2)
        evidences.append(evidence / n)
    return float(np.mean(evidences))


def separable(n: int = 150, classes: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features = one-hot of the label (padded with 3 noise-only dimensions) + small noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    onehot = np.eye(classes + 3)[labels]
    return onehot + 0.05 * rng.standard_normal(onehot.shape), labels


def shuffled(labels: np.ndarray, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).permutation(labels)


# ------------------------------------------------------------------------------------- LogME


def test_logme_matches_reference_n_greater_than_d():
    # weak class signal in noise keeps every class's maximum interior (alpha, beta finite): with
    # none, alpha -> inf for some classes and the fixed point below would never settle
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 200)
    features = (rng.standard_normal((200, 16))
                + 0.3 * np.eye(4)[labels] @ rng.standard_normal((4, 16)))
    assert logme(features, labels) == pytest.approx(reference_logme(features, labels), abs=1e-6)


def test_logme_matches_reference_rank_deficient():
    # dead (all-zero) and duplicated units, as ReLU backbones produce: rank < D < N, so log|A| again
    # has zero eigenvalues of F^T F to count
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 150)
    features = (rng.standard_normal((150, 12))
                + 0.3 * np.eye(3)[labels] @ rng.standard_normal((3, 12)))
    features[:, :3] = 0.0
    features[:, 3] = features[:, 4]
    assert logme(features, labels) == pytest.approx(reference_logme(features, labels), abs=1e-6)


def test_logme_matches_reference_d_greater_than_n():
    # some class signal in noise: the maximum is interior (alpha, beta finite), and log|A| has
    # D - N zero eigenvalues that the official fixed-point code leaves out (thuml/LogME #23)
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 3
    features = (rng.standard_normal((60, 100))
                + 0.3 * np.eye(3)[labels] @ rng.standard_normal((3, 100)))
    assert logme(features, labels) == pytest.approx(reference_logme(features, labels), abs=1e-6)


def test_logme_labels_inside_feature_span_reach_the_beta_limit():
    # D > N, so every y lies in the span of F: as beta -> inf (no noise) the evidence tends to the
    # log likelihood of y ~ N(0, K / alpha), K = F F^T, at its best alpha = N / (y^T K^-1 y)
    rng = np.random.default_rng(3)
    n, labels = 40, np.arange(40) % 4
    features = np.eye(80)[labels] + 0.05 * rng.standard_normal((n, 80))
    k_inv = np.linalg.inv(features @ features.T)
    limits = []
    for c in range(4):
        y = (labels == c).astype(float)
        q = y @ k_inv @ y
        alpha = n / q
        # the limit is the maximum: at zero noise, adding noise variance lowers the likelihood
        assert alpha**2 * np.sum((k_inv @ y) ** 2) < alpha * np.trace(k_inv)
        limits.append((-n / 2 * np.log(2 * np.pi) + np.linalg.slogdet(k_inv)[1] / 2
                       + n / 2 * np.log(alpha) - alpha / 2 * q) / n)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither overflow nor "did not converge"
        assert logme(features, labels) == pytest.approx(np.mean(limits), abs=1e-6)


def test_logme_useless_features_reach_the_noise_only_limit():
    # features orthogonal to every class indicator: alpha -> inf, w = 0, y ~ N(0, |y|^2/N I)
    rng = np.random.default_rng(3)
    labels = np.arange(90) % 3
    onehot = np.eye(3)[labels]
    raw = rng.standard_normal((90, 10))
    features = raw - onehot @ np.linalg.lstsq(onehot, raw, rcond=None)[0]
    expected = np.mean([0.5 * np.log(90 / 30) - 0.5 * np.log(2 * np.pi) - 0.5] * 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert logme(features, labels) == pytest.approx(expected, abs=1e-6)


def test_logme_prefers_true_labels_and_ignores_label_dtype():
    features, labels = separable()
    true, fake = logme(features, labels), logme(features, shuffled(labels))
    assert np.isfinite(true) and np.isfinite(fake)
    assert true > fake + 1.0
    names = np.array(["cat", "dog", "eel", "fox", "gnu"])[labels]
    assert logme(features, names) == pytest.approx(true, abs=1e-12)


# ------------------------------------------------------------------------ CV accuracy scores


@pytest.mark.parametrize("score", [knn_accuracy, linear_probe_accuracy])
def test_cv_accuracy_separable_vs_shuffled(score):
    features, labels = separable()
    assert score(features, labels) >= 0.99
    assert score(features, shuffled(labels)) < 0.45  # chance is 0.2


@pytest.mark.parametrize("score", [knn_accuracy, linear_probe_accuracy])
def test_cv_accuracy_small_class_reduces_folds(score):
    features, labels = separable(n=40, classes=2)
    labels = labels.copy()
    labels[:2] = 2  # a third class of 2 samples: 5 folds become 2
    features[:2] = 0.0
    features[:2, 2] = 1.0  # ... far from the others, so it can still be recognised
    acc = score(features, labels, folds=5, seed=3)
    assert 0.9 <= acc <= 1.0
    assert score(features, labels, folds=5, seed=3) == acc  # seeded: reproducible


@pytest.mark.parametrize("score", [knn_accuracy, linear_probe_accuracy])
def test_cv_accuracy_rejects_a_one_sample_class(score):
    features, labels = separable(n=30, classes=3)
    labels = labels.copy()
    labels[0] = 7
    with pytest.raises(ValueError, match="class 7 has only 1 sample"):
        score(features, labels)


@pytest.mark.parametrize("score", list(SCORES.values()))
def test_scores_reject_mismatched_lengths(score):
    features, labels = separable(n=30, classes=3)
    with pytest.raises(ValueError, match="differ in length: 30 vs 29"):
        score(features, labels[:-1])


def test_scores_registry():
    assert list(SCORES) == ["logme", "knn", "linear_probe"]
    features, labels = separable(n=60, classes=3)
    for name, score in SCORES.items():
        assert isinstance(score(features, labels), float), name


# ----------------------------------------------------------------------- rank correlations


@pytest.mark.parametrize("tau", [kendall_tau, weighted_tau])
def test_tau_identical_and_reversed_orderings(tau):
    scores = np.array([0.1, 0.5, 0.3, 0.9, 0.7])
    results = 10 * scores + 3  # same order, different scale
    assert tau(scores, results) == pytest.approx(1.0)
    assert tau(scores, -results) == pytest.approx(-1.0)
    assert isinstance(tau(scores, results), float)


@pytest.mark.parametrize("tau", [kendall_tau, weighted_tau])
def test_tau_undefined_is_nan_and_lengths_checked(tau):
    assert np.isnan(tau([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    assert np.isnan(tau([1.0], [2.0]))
    with pytest.raises(ValueError, match="differ in length"):
        tau([1.0, 2.0], [1.0, 2.0, 3.0])
