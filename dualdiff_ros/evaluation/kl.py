r"""KL divergence between two point clouds: the k-NN estimator of Wang, Kulkarni & Verdú (2009).

For samples x_1..x_n ~ p and y_1..y_m ~ q in R^d,

    D(p || q) ~= (d / n) * sum_i log(nu_k(i) / rho_k(i)) + log(m / (n - 1))

where rho_k(i) is the distance from x_i to its k-th nearest neighbour among the other x's
and nu_k(i) its distance to the k-th nearest y. Divided by ln 2 for bits. The DualDiff
paper (through NPEET's `kldiv`) used k = 5 and the max-norm; the estimate is consistent
for any norm, but finite samples bias it, so every model's KL should be read beside the
same estimator's real-vs-real value (`real_vs_real_kl`), which the true KL = 0 would give.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

DEFAULT_K = 5


def _kth_neighbour_distance(points: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Max-norm distance from each query to its k-th nearest point (k counted from 1)."""
    dist, _ = cKDTree(points).query(queries, k=[k], p=np.inf, workers=1)
    return dist[:, 0]


def kl_divergence(p_samples, q_samples, k: int = DEFAULT_K, base: float = 2.0) -> float:
    """KL(p || q) from samples of p [n, d] and of q [m, d]; in bits by default.

    Zero distances (duplicate points) are floored at the smallest positive float, since the
    estimator assumes continuous densities; continuous data never hits the floor.
    """
    x = np.asarray(p_samples, dtype=np.float64)
    y = np.asarray(q_samples, dtype=np.float64)
    x, y = x.reshape(len(x), -1), y.reshape(len(y), -1)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"samples of p have {x.shape[1]} dimensions, samples of q {y.shape[1]}")
    n, m, d = len(x), len(y), x.shape[1]
    if k < 1 or k >= min(n, m + 1):
        raise ValueError(f"k={k} needs more samples than k (got n={n}, m={m})")
    tiny = np.finfo(np.float64).tiny
    rho = np.maximum(_kth_neighbour_distance(x, x, k + 1), tiny)  # +1: x_i is its own 0-th neighbour
    nu = np.maximum(_kth_neighbour_distance(y, x, k), tiny)
    nats = d * float(np.mean(np.log(nu) - np.log(rho))) + math.log(m / (n - 1))
    return nats / math.log(base)


def real_vs_real_kl(real: np.ndarray, real_independent: np.ndarray, k: int = DEFAULT_K) -> float:
    """The estimator's floor: KL between two independent samples of the same data (true KL is 0).

    Call it with the same sizes as the model comparison (e.g. 100k training points vs 10k
    points drawn with another seed) so the bias matches.
    """
    return kl_divergence(real, real_independent, k=k)
