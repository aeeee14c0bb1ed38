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


def _echo_way(seen: list) -> home_check.Way:
    """A context reader that proposes the points it was given, recording each context it read."""
    def echo(context, n, seed):
        seen.append(context.copy())
        return context[np.arange(n) % max(len(context), 1)]
    return home_check.Way("echo", echo, reads_context=True)


def test_with_folds_a_context_reader_is_scored_on_observations_it_did_not_read():
    obs = np.random.default_rng(2).uniform(size=(10, 3))
    seen = []
    home_check.score_way(_echo_way(seen), obs, seed=0, folds=4)
    assert len(seen) == 4
    for context in seen:
        assert 0 < len(context) < len(obs)
    held_out = [{tuple(p) for p in obs} - {tuple(p) for p in c} for c in seen]
    assert set().union(*held_out) == {tuple(p) for p in obs}  # every observation scored once, unread


def test_by_default_a_context_reader_is_scored_in_sample_like_the_specialist():
    obs = np.random.default_rng(3).uniform(size=(10, 3))
    seen = []
    home_check.score_way(_echo_way(seen), obs, seed=0)
    assert len(seen) == 1 and np.array_equal(seen[0], obs)


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


def test_the_kernel_readout_is_the_posterior_over_the_points_of_a_blurred_set():
    """Against scipy: the posterior of "which point" under the forward process, per bandwidth."""
    from scipy.special import softmax
    from scipy.stats import multivariate_normal

    from dualdiff_ros.diffusion.denoisers import KernelReadout
    from dualdiff_ros.diffusion.schedules import NoiseSchedule

    schedule = NoiseSchedule("cosine", 50)
    readout = KernelReadout(3, 50)
    readout.use_schedule(schedule.alphas_cumprod)
    rng = np.random.default_rng(0)
    points = rng.uniform(-1, 1, size=(7, 3))
    y = rng.normal(size=(2, 3))
    t = np.array([3, 40])
    padded = np.concatenate([points, rng.normal(size=(5, 3))])   # five padding slots, never read
    mask = np.arange(12) < 7
    out = readout(torch.tensor(y, dtype=torch.float32), torch.tensor(t),
                  torch.tensor(np.stack([padded, padded]), dtype=torch.float32),
                  torch.tensor(np.stack([mask, mask]))).double().numpy()
    per = out.reshape(2, len(readout.bandwidths), 7)
    for row in range(2):
        a = schedule.alpha_bar(int(t[row]))
        for k, h in enumerate(readout.bandwidths.tolist()):
            var = 1 - a + a * h ** 2
            logp = np.array([multivariate_normal(np.sqrt(a) * p, var * np.eye(3)).logpdf(y[row]) for p in points])
            mean = softmax(logp) @ points
            np.testing.assert_allclose(per[row, k, :3], mean, atol=2e-4)
            implied = np.clip((y[row] - np.sqrt(a) * mean) / np.sqrt(1 - a), -5, 5)
            np.testing.assert_allclose(per[row, k, 3:6], implied, atol=2e-3)
    shuffled = readout(torch.tensor(y, dtype=torch.float32), torch.tensor(t),
                       torch.tensor(np.stack([padded[rng.permutation(7).tolist() + list(range(7, 12))]] * 2),
                                    dtype=torch.float32), torch.tensor(np.stack([mask, mask])))
    np.testing.assert_allclose(shuffled.double().numpy(), out, atol=1e-5)
    empty = readout(torch.tensor(y, dtype=torch.float32), torch.tensor(t), torch.zeros(2, 12, 3),
                    torch.zeros(2, 12, dtype=torch.bool))
    assert torch.equal(empty, torch.zeros_like(empty))


def test_a_kernel_prior_reads_points_in_its_targets_units_and_samples_as_it_trains(tmp_path):
    """The readout compares points with the noisy target: the two must share one normalization."""
    from dualdiff_ros.diffusion.checkpoint import load_checkpoint, save_checkpoint
    from dualdiff_ros.diffusion.model import plain_network
    from dualdiff_ros.domains.homes import FRAME_ORIGIN
    from dualdiff_ros.learning.in_context import context_conditions, train_prior
    from dualdiff_ros.recipes import home_aware_recipe

    for domain in ("cabinet", "round_table"):
        model = train_prior(domain, home_aware_recipe("quick"), (12, 24, 8), 0, "set", "fleet", False, "kernel")
        assert model.architecture["name"] == "set_kernel"
        c = np.array([[0.4, -0.2, 0.3], [1.0, 0.5, 0.0]])
        local = np.array([[0.1, 0.05, 0.2], [-0.1, 0.2, 0.0]])
        cn = model.normalize_conditions(context_conditions(c[:1], local, kind="set"))
        target = model.encode_targets(c, c + FRAME_ORIGIN[domain] + local)
        torch.testing.assert_close(cn[0, 4:10].reshape(2, 3), target)
        net, encoded = plain_network(model.denoiser, cn.repeat(3, 1))
        y, t = torch.randn(3, 3), torch.tensor([0, 5, 19])
        torch.testing.assert_close(net(y, t, encoded), model.denoiser(y, t, cn.repeat(3, 1)))
    save_checkpoint(model, tmp_path / "prior.safetensors")
    loaded = load_checkpoint(tmp_path / "prior.safetensors")
    torch.testing.assert_close(loaded.denoiser.readout.alpha_bar, model.denoiser.readout.alpha_bar)
    torch.testing.assert_close(loaded.denoiser(y, t, cn.repeat(3, 1)), model.denoiser(y, t, cn.repeat(3, 1)))


def test_sampling_a_kernel_prior_with_guidance_runs_the_fast_plan_and_equals_the_forward_pass():
    """The stacked plan (one set and the null set, readout on the set's own points) = the network's forward."""
    from dualdiff_ros.diffusion.model import noise_predictor, null_condition
    from dualdiff_ros.learning.in_context import context_conditions, train_prior
    from dualdiff_ros.recipes import home_aware_recipe

    model = train_prior("cabinet", home_aware_recipe("quick"), (12, 24, 8), 0, "set", "fleet", False, "kernel")
    local = np.random.default_rng(1).uniform(0, 0.4, size=(9, 3))
    cn = model.normalize_conditions(context_conditions(np.tile([0.4, -0.2, 0.3], (5, 1)), local, kind="set"))
    predict = noise_predictor([model], [cn], guidance=1.5)
    y = torch.randn(5, 3)
    for t in (0, 7, 19):
        tt = torch.full((5,), t)
        expected = torch.lerp(model.denoiser(y, tt, null_condition(model, cn)), model.denoiser(y, tt, cn), 1.5)
        torch.testing.assert_close(predict(y, t)[0], expected, atol=1e-5, rtol=1e-4)
    # the plan itself (what the predictor above runs): each set read on its own points, the null set as zeros
    from dualdiff_ros.diffusion.denoisers import _BoundKernel, stacked_kernel_plan
    from dualdiff_ros.diffusion.model import plain_network

    bounds = [plain_network(model.denoiser, c)[0] for c in (cn, null_condition(model, cn))]
    eps = stacked_kernel_plan(bounds)(y, 7)
    torch.testing.assert_close(eps[1], model.denoiser(y, torch.full((5,), 7), null_condition(model, cn)),
                               atol=1e-5, rtol=1e-4)
    # a home read place by place: runs of rows that read one set each, in one batch
    other = model.normalize_conditions(context_conditions(np.tile([0.4, -0.2, 0.3], (3, 1)), local[:4], kind="set"))
    runs = torch.cat([cn, other])
    bound = plain_network(model.denoiser, runs)[0]
    assert [(a, b) for a, b, _ in bound.point_groups()] == [(0, 5), (5, 8)]
    y = torch.randn(8, 3)
    torch.testing.assert_close(stacked_kernel_plan([bound])(y, 7)[0], model.denoiser(y, torch.full((8,), 7), runs),
                               atol=1e-5, rtol=1e-4)
    with_null = torch.cat([cn, null_condition(model, cn)[:2], other])   # a run of rows that read no set
    bound = plain_network(model.denoiser, with_null)[0]
    assert [(a, b, p is None) for a, b, p in bound.point_groups()] == [(0, 5, False), (5, 7, True), (7, 10, False)]
    y = torch.randn(10, 3)
    torch.testing.assert_close(stacked_kernel_plan([bound])(y, 3)[0],
                               model.denoiser(y, torch.full((10,), 3), with_null), atol=1e-5, rtol=1e-4)
    alternating = torch.cat([cn[:1], other[:1]] * (_BoundKernel.MAX_GROUPS // 2 + 1))
    with pytest.raises(ValueError):  # rows that change sets too often take the batched forward pass
        stacked_kernel_plan([plain_network(model.denoiser, alternating)[0]])
