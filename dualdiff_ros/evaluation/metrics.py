"""How good is a set of proposals for a set of conditions: accuracy, and coverage beside it.

Accuracy alone rewards collapsing onto one safe point, so it is always reported with
coverage: k-NN precision and recall (Kynkäänniemi et al. 2019) against true specialized
samples, both pooled in the condition's local frame (target minus condition).
"""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def accuracy(domain, conditions: np.ndarray, samples: np.ndarray) -> float:
    """Fraction of samples [n_c, k, d] inside the specialized region of their condition."""
    c, y = _flatten(conditions, samples)
    return float(np.mean(domain.in_specialized_region(c, y)))


def out_of_range_distance(domain, conditions: np.ndarray, samples: np.ndarray) -> float:
    """Thesis metric: mean distance from each out-of-range sample to its condition point (nan if none)."""
    c, y = _flatten(conditions, samples)
    outside = ~domain.in_specialized_region(c, y)
    if not outside.any():
        return float("nan")
    return float(np.linalg.norm(y[outside] - c[outside, : y.shape[1]], axis=1).mean())


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN balls.

    precision: fraction of fake points inside some real point's k-NN ball;
    recall: fraction of real points inside some fake point's k-NN ball.
    A generator that collapses onto one point gets recall ~ 0.
    """
    real, fake = np.asarray(real, float), np.asarray(fake, float)
    if len(real) <= k or len(fake) <= k:
        raise ValueError(f"precision/recall needs more than k={k} real and fake points")
    return _manifold_coverage(real, fake, k), _manifold_coverage(fake, real, k)


def coverage(real: np.ndarray, fake: np.ndarray, k: int = 5) -> float:
    """Coverage (Naeem et al. 2020): fraction of real points whose own k-NN ball holds a fake point.

    Stricter than recall: the balls are the real data's, so a few far-flung fakes cannot
    cover much. Two samples of one distribution score about 1 - 2^-k (0.97 for k = 5).
    """
    real, fake = np.asarray(real, float), np.asarray(fake, float)
    if len(real) <= k or len(fake) == 0:
        raise ValueError(f"coverage needs more than k={k} real points and some fake points")
    radii = cKDTree(real).query(real, k=k + 1)[0][:, -1]
    nearest_fake = cKDTree(fake).query(real, k=1)[0]
    return float(np.mean(nearest_fake <= radii))


def _manifold_coverage(reference: np.ndarray, queries: np.ndarray, k: int) -> float:
    tree = cKDTree(reference)
    radii = tree.query(reference, k=k + 1)[0][:, -1]  # k-th neighbour, skipping the point itself
    # A query is covered when its distance to some reference point is within that point's radius.
    # Check the nearest few reference points (covering ball centres are close to the query).
    dist, idx = tree.query(queries, k=min(32, len(reference)))
    return float(np.mean(np.any(dist <= radii[idx], axis=1)))


def local_samples(domain, conditions: np.ndarray, samples: np.ndarray) -> np.ndarray:
    c, y = _flatten(conditions, samples)
    return domain.local_frame(c, y)


def _flatten(conditions, samples):
    samples = np.asarray(samples, dtype=np.float64)
    n_c, k, d = samples.shape
    return np.repeat(np.asarray(conditions, dtype=np.float64), k, axis=0), samples.reshape(n_c * k, d)
