"""The answer check (learning/home_check.py), the set encoder and the home families, without ROS."""
import numpy as np
import pytest
import torch

from dualdiff_ros.diffusion.denoisers import SetConditionedMLP
from dualdiff_ros.domains.cabinet import GENERAL_BOX
from dualdiff_ros.domains.homes import FAMILIES, BoxRegion, MixtureRegion, homes
from dualdiff_ros.learning import home_check
from dualdiff_ros.learning.in_context import MAX_CONTEXT, SET_SIZE, set_block, summary

SHELVES = MixtureRegion((BoxRegion((-1.0, -1.0, 0.05), (1.0, 1.0, 0.1)),
                         BoxRegion((-1.0, -1.0, 0.85), (1.0, 1.0, 0.9))), (0.5, 0.5))


def _draw_from(region):
    return lambda context, n, seed: region.sample(n, np.random.default_rng(seed))


def test_the_check_serves_the_way_that_explains_the_observations():
    obs = SHELVES.sample(32, np.random.default_rng(0))
    one_box = BoxRegion(tuple(obs.min(0)), tuple(obs.max(0)))  # what a summary of two shelves describes
    ways = [home_check.Way("one_box", _draw_from(one_box)), home_check.Way("shelves", _draw_from(SHELVES)),
            home_check.Way("collapsed", lambda c, n, s: np.tile(obs[0], (n, 1)))]
    verdict = home_check.check(ways, obs, seed=1, preferred="one_box", margin=0.0)
    assert verdict.chosen == "shelves" and "shelves" in verdict.reason
    assert verdict.scores["shelves"] > verdict.scores["one_box"] > verdict.scores["collapsed"]
    # the preferred way keeps the answer unless another beats it by the margin
    gap = verdict.scores["shelves"] - verdict.scores["one_box"]
    assert home_check.check(ways, obs, 1, "one_box", margin=gap + 1.0).chosen == "one_box"


def test_a_way_that_reads_the_context_is_scored_on_observations_it_did_not_read():
    obs = np.random.default_rng(2).uniform(size=(10, 3))
    seen = []

    def echo(context, n, seed):
        seen.append(context.copy())
        return context[np.arange(n) % max(len(context), 1)]

    home_check.score_way(home_check.Way("echo", echo, reads_context=True), obs, seed=0, folds=4)
    assert len(seen) == 4
    for context in seen:
        assert 0 < len(context) < len(obs)
    held_out = [{tuple(p) for p in obs} - {tuple(p) for p in c} for c in seen]
    assert set().union(*held_out) == {tuple(p) for p in obs}  # every observation scored once, unread


def test_the_check_refuses_nonsense_and_survives_a_broken_way():
    with pytest.raises(ValueError):
        home_check.check([], np.zeros((3, 3)), 0, "a", 0.0)
    with pytest.raises(ValueError):
        home_check.check([home_check.Way("a", _draw_from(SHELVES))], np.zeros((0, 3)), 0, "a", 0.0)
    broken = home_check.Way("broken", lambda c, n, s: np.full((n, 3), np.nan))
    good = home_check.Way("good", _draw_from(SHELVES))
    assert home_check.check([broken, good], SHELVES.sample(8, np.random.default_rng(0)), 0, "broken", 0.5).chosen \
        == "good"


def test_the_set_encoder_is_permutation_invariant_ignores_padding_and_tells_shapes_a_summary_cannot():
    torch.manual_seed(0)
    net = SetConditionedMLP(3, 3 + SET_SIZE, state_dim=3, set_size=MAX_CONTEXT, width=32, depth=1)
    rng = np.random.default_rng(0)
    centre = np.array([0.0, 0.0, 0.475])  # the two shelves mirror each other about it
    half = SHELVES.sample(10, rng)
    shelves = np.concatenate([half, 2 * centre - half])
    block = set_block(shelves)
    shuffled = set_block(shelves[rng.permutation(20)])
    padded = block.copy()
    padded[1 + 20 * 3:] = rng.normal(size=padded.size - 61)  # garbage past the count is never read
    # one box with the same count, min, max and mean: the summary cannot tell it from the shelves
    low, high = shelves.min(0), shelves.max(0)
    inside = rng.uniform(low, high, size=(9, 3))
    box = np.concatenate([[low, high], inside, 2 * centre - inside])
    state = np.zeros(3)
    enc = {k: net.encode(torch.tensor(np.concatenate([state, b])[None], dtype=torch.float32))
           for k, b in {"set": block, "shuffled": shuffled, "padded": padded, "box": set_block(box)}.items()}
    torch.testing.assert_close(enc["set"], enc["shuffled"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(enc["set"], enc["padded"])
    np.testing.assert_allclose(summary(shelves), summary(box), atol=1e-12)
    assert (enc["set"] - enc["box"]).abs().max() > 1e-3
    empty = net.encode(torch.tensor(np.concatenate([state, set_block(np.zeros((0, 3)))])[None], dtype=torch.float32))
    assert torch.isfinite(empty).all()


def test_every_home_family_stays_inside_the_furniture_and_the_held_out_kinds_are_new():
    rng = np.random.default_rng(0)
    kinds = {}
    for family in FAMILIES:
        for domain in ("cabinet", "round_table"):
            for home in homes(domain, 12, 3, family):
                c = home.sample_conditions(300, rng)
                t = home.sample_specialized_targets(c, rng)
                assert home.in_specialized_region(c, t).all() and home.in_general_region(c, t).mean() > 0.98
                parts = home.region.parts if isinstance(home.region, MixtureRegion) else (home.region,)
                kinds.setdefault(family, set()).update(type(p).__name__ for p in parts)
                if family == "multi":
                    assert isinstance(home.region, MixtureRegion) and len(home.region.parts) >= 2
    assert {"BallRegion", "RingRegion", "RotatedBoxRegion"} & kinds["held_out"]
    assert not {"BallRegion", "RingRegion", "RotatedBoxRegion"} & (kinds["fleet"] | kinds["multi"])
    assert (np.asarray(GENERAL_BOX[0]) <= 0).all()
