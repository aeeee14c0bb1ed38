"""The k-NN KL estimator on distributions whose KL is known in closed form.

Tolerances: over 20 seeds at n = m = 4000 points in 2-D the estimator's sd was 0.02-0.04
bits and its bias under 0.05 bits for these pairs, so 0.15 bits (identical pair: 0.08) is
about 4 sd plus the bias, with a fixed seed.
"""
import math

import numpy as np
import pytest

from dualdiff_ros.evaluation.kl import kl_divergence, real_vs_real_kl


def gaussian_kl_bits(mu, s):
    """KL(N(0, I) || N(mu, s^2 I)) in 2-D, in bits."""
    mu = np.asarray(mu, dtype=float)
    return 0.5 * (2 / s**2 + mu @ mu / s**2 - 2 + 2 * math.log(s**2)) / math.log(2)


@pytest.mark.parametrize("mu, s", [((1.0, 0.0), 1.0), ((0.0, 0.0), 2.0), ((0.5, 0.5), 1.5)])
def test_matches_closed_form_gaussian_kl(mu, s):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 2))
    y = rng.normal(size=(4000, 2)) * s + np.asarray(mu)
    assert kl_divergence(x, y) == pytest.approx(gaussian_kl_bits(mu, s), abs=0.15)


def test_identical_distributions_give_about_zero():
    rng = np.random.default_rng(1)
    assert abs(kl_divergence(rng.normal(size=(4000, 2)), rng.normal(size=(4000, 2)))) < 0.08
    assert abs(real_vs_real_kl(rng.normal(size=(4000, 2)), rng.normal(size=(2000, 2)))) < 0.08


def test_units_and_asymmetry():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(3000, 2)), rng.normal(size=(3000, 2)) * 2
    assert kl_divergence(x, y, base=math.e) == pytest.approx(kl_divergence(x, y) * math.log(2))
    # True values 2.33 and 0.92 bits. KL(wide || narrow) comes out low (~1.2): few q samples reach
    # p's tails, a known finite-sample underestimate; the ordering still holds.
    assert kl_divergence(y, x) > kl_divergence(x, y)


def test_disjoint_supports_give_a_large_value():
    rng = np.random.default_rng(3)
    assert kl_divergence(rng.uniform(size=(2000, 2)), rng.uniform(size=(2000, 2)) + 5) > 5


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="dimensions"):
        kl_divergence(np.zeros((10, 2)), np.zeros((10, 3)))
    with pytest.raises(ValueError, match="k="):
        kl_divergence(np.random.default_rng(0).normal(size=(4, 2)), np.zeros((10, 2)))
