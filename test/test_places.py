"""The places of a home (learning/places.py): the split, the shares, the per-place draw."""
import numpy as np
import pytest

from dualdiff_ros.domains.homes import BoxRegion, DiscRegion, MixtureRegion, RingRegion
from dualdiff_ros.learning import places

LOW_SHELF = BoxRegion((-0.8, -0.8, 0.10), (0.8, 0.6, 0.14))
HIGH_SHELF = BoxRegion((-0.6, -0.8, 0.70), (0.7, 0.8, 0.74))


def test_two_shelves_are_two_places_and_the_bigger_share_comes_first():
    rng = np.random.default_rng(0)
    shelves = MixtureRegion((LOW_SHELF, HIGH_SHELF), (0.3, 0.7))
    points = shelves.sample(40, rng)
    labels = places.split(points)
    assert labels.max() == 1
    high = HIGH_SHELF.contains(points)
    assert (labels[high] == labels[high][0]).all() and (labels[~high] != labels[high][0]).all()
    assert np.bincount(labels)[0] >= np.bincount(labels)[1]


@pytest.mark.parametrize("region", [BoxRegion((-0.5, -0.5, 0.2), (0.5, 0.3, 0.8)),
                                    RingRegion((0.3, -0.2), 0.9, 1.4)])
def test_one_box_and_a_ring_stay_one_place(region):
    """No gap, no split: a leave-one-out likelihood does not reward cutting a place into pieces."""
    rng = np.random.default_rng(1)
    for n in (8, 32, 128):
        assert places.split(region.sample(n, rng)).max() == 0, n


def test_a_few_observations_are_one_place_and_small_clusters_are_found():
    rng = np.random.default_rng(2)
    clusters = MixtureRegion(tuple(DiscRegion(c, 0.15) for c in ((-2.0, 0.0), (0.0, 2.0), (2.0, -0.5))),
                             (1 / 3, 1 / 3, 1 / 3))
    assert places.split(clusters.sample(places.MIN_OBSERVATIONS - 1, rng)).max() == 0
    labels = places.split(clusters.sample(60, rng))
    assert labels.max() + 1 == 3 and np.bincount(labels).min() >= places.MIN_PER_PLACE


def test_the_leave_one_out_score_prefers_the_true_split_to_none_and_to_singletons():
    rng = np.random.default_rng(3)
    shelves = MixtureRegion((LOW_SHELF, HIGH_SHELF), (0.5, 0.5))
    points = shelves.sample(40, rng)
    truth = HIGH_SHELF.contains(points).astype(int)
    x = places.informative(points)
    one = places.leave_one_out_score(x, np.zeros(40, dtype=int))
    two = places.leave_one_out_score(x, truth)
    singletons = places.leave_one_out_score(x, np.arange(40))
    assert two > one > singletons


def test_proposals_are_shared_out_by_the_places_shares_each_with_its_own_observations():
    labels = np.array([0] * 6 + [1] * 3 + [2] * 1)
    counts = places.allocate(labels, 32)
    assert counts.sum() == 32 and list(counts) == [19, 10, 3]
    assert places.allocate(labels, 1).tolist() == [1, 0, 0]
    points = np.arange(30, dtype=float).reshape(10, 3)
    parts = places.shares(points, 32, labels)
    assert [m for _, m in parts] == [19, 10, 3]
    for place, (subset, _) in enumerate(parts):
        np.testing.assert_array_equal(subset, points[labels == place])
    assert [m for _, m in places.shares(points, 1, labels)] == [1]          # places with no share are left out
    one = places.shares(points, 5, np.zeros(10, dtype=int))               # one place: every point, every proposal
    assert len(one) == 1 and len(one[0][0]) == 10 and one[0][1] == 5


def test_repeated_points_are_split_without_dividing_by_zero():
    """A robot that finds the cup on the same two spots: zero-width places, finite scores, two places."""
    same = np.tile([[0.2, -0.1, 0.5]], (8, 1))
    assert places.split(same).tolist() == [0] * 8                       # no axis varies: one place
    two_spots = np.concatenate([same, np.tile([[0.9, 0.7, 0.1]], (5, 1))])
    labels = places.split(two_spots)
    assert labels.tolist() == [0] * 8 + [1] * 5
    assert np.isfinite(places.leave_one_out_score(places.informative(two_spots), labels))
