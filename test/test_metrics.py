"""Metrics on hand-made point sets, including the collapse that accuracy alone rewards."""
import numpy as np
import pytest

from dualdiff_ros.domains import get_domain
from dualdiff_ros.evaluation import metrics


def test_accuracy_and_out_of_range_distance():
    cab = get_domain("cabinet")
    c = np.zeros((2, 3))
    samples = np.array([[[-0.5, -0.5, 0.2], [3.0, 4.0, 0.0]], [[-0.2, -0.1, 0.1], [-0.3, -0.3, 0.3]]])
    assert metrics.accuracy(cab, c, samples) == 0.75
    assert metrics.out_of_range_distance(cab, c, samples) == pytest.approx(5.0)


def test_precision_recall_catch_collapse_and_spread():
    rng = np.random.default_rng(0)
    real = rng.uniform(0, 1, (2000, 2))
    same = rng.uniform(0, 1, (2000, 2))
    collapsed = np.full((2000, 2), 0.5) + rng.normal(0, 1e-4, (2000, 2))
    shifted = same + 2.0
    p, r = metrics.precision_recall(real, same)
    assert p > 0.9 and r > 0.9
    p, r = metrics.precision_recall(real, collapsed)
    assert p > 0.9 and r < 0.05
    p, r = metrics.precision_recall(real, shifted)
    assert p < 0.01 and r < 0.01


def test_precision_recall_match_brute_force():
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(300, 2)), rng.normal(0.5, 1.2, size=(300, 2))
    k = 3

    def brute(ref, q):
        d_ref = np.linalg.norm(ref[:, None] - ref[None], axis=-1)
        radii = np.sort(d_ref, axis=1)[:, k]
        d = np.linalg.norm(q[:, None] - ref[None], axis=-1)
        return np.mean(np.any(d <= radii[None], axis=1))

    p, r = metrics.precision_recall(real, fake, k)
    assert p == pytest.approx(brute(real, fake))
    assert r == pytest.approx(brute(fake, real))
