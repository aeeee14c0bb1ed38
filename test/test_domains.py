"""Domain geometry: samples land in their regions; overlap settings overlap as named."""
import numpy as np
import pytest

from dualdiff_ros.domains import get_domain
from dualdiff_ros.domains.round_table import OVERLAP_SETTINGS, overlap_fraction


@pytest.mark.parametrize("name", ["cabinet", "round_table"] + [f"overlap_{s}" for s in OVERLAP_SETTINGS])
def test_samples_lie_in_their_regions(name):
    domain = get_domain(name)
    rng = np.random.default_rng(0)
    c = domain.sample_conditions(2000, rng)
    assert (c.min(0) >= [-4, -4, 0]).all() and (c.max(0) <= [6, 6, 3]).all()
    assert domain.in_general_region(c, domain.sample_general_targets(c, rng)).all()
    assert domain.in_specialized_region(c, domain.sample_specialized_targets(c, rng)).all()


def test_cabinet_specialized_is_one_eighth_of_general():
    domain = get_domain("cabinet")
    rng = np.random.default_rng(1)
    c = domain.sample_conditions(20000, rng)
    frac = domain.in_specialized_region(c, domain.sample_general_targets(c, rng)).mean()
    assert frac == pytest.approx(1 / 8, abs=0.01)


def test_region_edges():
    cab = get_domain("cabinet")
    c = np.zeros((3, 3))
    y = np.array([[-0.5, -0.5, 0.25], [0.1, -0.5, 0.25], [-0.5, -0.5, 0.6]])
    assert cab.in_specialized_region(c, y).tolist() == [True, False, False]
    table = get_domain("round_table")
    y = np.array([[0.9, 0.0, 10.0], [1.1, 0.0, 10.0], [0.0, 0.0, 10.5]])
    assert table.in_specialized_region(c, y).tolist() == [True, False, False]


@pytest.mark.parametrize("setting,low,high", [("far", 0, 0), ("close", 0, 0), ("partial", 0.01, 0.5),
                                              ("strong", 0.5, 0.99), ("subset_shifted", 1, 1), ("subset", 1, 1)])
def test_overlap_settings_overlap_as_named(setting, low, high):
    frac = overlap_fraction(OVERLAP_SETTINGS[setting])
    assert low <= frac <= high
    domain = get_domain(f"overlap_{setting}")
    rng = np.random.default_rng(2)
    c = domain.sample_conditions(20000, rng)
    empirical = domain.in_general_region(c, domain.sample_specialized_targets(c, rng)).mean()
    assert empirical == pytest.approx(frac, abs=0.02)


def test_unknown_domain_lists_choices():
    with pytest.raises(ValueError, match="cabinet"):
        get_domain("kitchen")
