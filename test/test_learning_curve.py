"""The learning curve's parts: the home family, the exact Bayes limit, looks-to-find, the curve itself."""
import numpy as np
import pytest

from dualdiff_ros import serving
from dualdiff_ros.domains.cabinet import GENERAL_BOX
from dualdiff_ros.domains.homes import SIDE_FRACTION, BoxRegion, DiscRegion, home_domain, homes
from dualdiff_ros.domains.round_table import GENERAL_RADIUS
from dualdiff_ros.evaluation.bayes_limit import predictive
from dualdiff_ros.evaluation.learning_curve import (
    METRICS,
    CurveSettings,
    home_aware_samples,
    looks_to_find,
    observation_sequence,
    run_learning_curve,
)


@pytest.mark.parametrize("domain", ["cabinet", "round_table"])
def test_homes_lie_inside_the_furniture_and_their_data_inside_the_home(domain):
    family = homes(domain, 6, seed=3)
    assert family[0].name == "thesis"
    rng = np.random.default_rng(0)
    for home in family:
        c = home.sample_conditions(500, rng)
        t = home.sample_specialized_targets(c, rng)
        assert home.in_specialized_region(c, t).all()
        assert home.in_general_region(c, t).all()  # a home is part of the general distribution
        region = home.region
        if isinstance(region, BoxRegion):
            side = (np.array(region.high) - np.array(region.low)) / (GENERAL_BOX[1] - GENERAL_BOX[0])
            assert ((side >= SIDE_FRACTION[0] - 1e-9) & (side <= SIDE_FRACTION[1] + 1e-9)).all()
        else:
            assert SIDE_FRACTION[0] * GENERAL_RADIUS <= region.radius <= GENERAL_RADIUS
            assert np.hypot(*region.centre) + region.radius <= GENERAL_RADIUS + 1e-9
    assert len({str(h.region) for h in family}) == len(family)  # distinct homes


def _importance_accuracy(domain, true_region, observed, draws=1_000_000, seed=1):
    """The predictive's accuracy by importance sampling from the family's own definition, vectorized.

    Regions are drawn as the family says (domains/homes.py), weighted by the likelihood of the
    observations (area or volume ^ -N where they all fit); independent of the grid posterior.
    """
    rng = np.random.default_rng(seed)
    n = len(observed)
    lo_f, hi_f = SIDE_FRACTION
    if domain == "cabinet":  # the family draws each axis independently: so do the posterior and predictive
        low, high = GENERAL_BOX
        accuracy = 1.0
        for a in range(3):
            side = rng.uniform(lo_f, hi_f, draws) * (high[a] - low[a])
            lo = low[a] + rng.uniform(0, 1, draws) * (high[a] - low[a] - side)
            fits = (lo <= observed[:, a].min()) & (lo + side >= observed[:, a].max())
            overlap = np.clip(np.minimum(lo + side, true_region.high[a]) - np.maximum(lo, true_region.low[a]), 0,
                              None) / side
            w = np.where(fits, side ** -float(n), 0.0)
            accuracy *= np.sum(w * overlap) / w.sum()
        return float(accuracy)
    else:
        radius = rng.uniform(lo_f, hi_f, draws) * GENERAL_RADIUS
        r = (GENERAL_RADIUS - radius) * np.sqrt(rng.uniform(0, 1, draws))
        phi = rng.uniform(0, 2 * np.pi, draws)
        centre = np.stack([r * np.cos(phi), r * np.sin(phi)], 1)
        far = np.max(np.linalg.norm(centre[:, None, :] - observed[None, :, :2], axis=2), axis=1)
        fits = far <= radius
        k = 32  # uniform points of each drawn disc, checked against the true one
        rho, ang = radius[:, None] * np.sqrt(rng.uniform(0, 1, (draws, k))), rng.uniform(0, 2 * np.pi, (draws, k))
        px, py = centre[:, :1] + rho * np.cos(ang), centre[:, 1:] + rho * np.sin(ang)
        acc = (np.hypot(px - true_region.centre[0], py - true_region.centre[1]) <= true_region.radius).mean(1)
        size = np.pi * radius ** 2
    w = np.where(fits, size ** -float(n), 0.0)
    return float(np.sum(w * acc) / w.sum())


@pytest.mark.parametrize("domain,true_region", [
    ("cabinet", BoxRegion((-1.0, -1.0, 0.0), (0.0, 0.0, 0.5))),
    ("round_table", DiscRegion((0.5, -0.3), 1.2)),
])
def test_the_grid_posterior_matches_importance_sampling_from_the_family(domain, true_region):
    rng = np.random.default_rng(0)
    observed = true_region.sample(3, rng)
    grid = true_region.contains(predictive(domain, observed, 100_000, np.random.default_rng(2))).mean()
    reference = _importance_accuracy(domain, true_region, observed, draws=2_000_000 if domain == "cabinet" else 200_000)
    assert abs(grid - reference) < 0.02, (grid, reference)


@pytest.mark.parametrize("domain,region", [("cabinet", BoxRegion((0.0, -0.5, 0.2), (0.6, 0.3, 0.7))),
                                           ("round_table", DiscRegion((-0.8, 0.4), 1.0))])
def test_the_limit_sharpens_with_observations(domain, region):
    home = home_domain(domain, region)
    rng = np.random.default_rng(0)
    acc = []
    for n in (0, 4, 64):
        c = home.sample_conditions(max(n, 1), rng)
        observed = home.region_frame(c, home.sample_specialized_targets(c, rng))[:n]
        acc.append(home.region.contains(predictive(domain, observed, 5000, rng)).mean())
    assert acc[0] < acc[1] < acc[2] and acc[2] > 0.9


def test_the_labelled_part_reference_reads_each_place_on_its_own_and_only_boxes_and_discs():
    """Two shelves: each shelf's predictive from its own points, mixed by their shares; none for a ring."""
    from dualdiff_ros.domains.homes import MixtureRegion, RingRegion
    from dualdiff_ros.evaluation.bayes_limit import labelled_part_predictive

    low, high = BoxRegion((0.05, 0.05, 0.1), (0.6, 0.4, 0.15)), BoxRegion((0.1, 0.05, 0.7), (0.5, 0.45, 0.74))
    shelves = MixtureRegion((low, high), (0.75, 0.25))
    rng = np.random.default_rng(0)
    accuracy = []
    for n in (4, 64):
        observed = shelves.sample(n, rng)
        draws = labelled_part_predictive("cabinet", shelves, observed, 4000, rng)
        accuracy.append(shelves.contains(draws).mean())
        share_high = high.contains(observed).mean()
        assert abs(high.contains(draws).mean() - share_high) < 0.05   # mixed by the observed shares
    assert accuracy[0] < accuracy[1] and accuracy[1] > 0.85
    # the gap between the shelves (z 0.15 .. 0.7) is never proposed once each shelf has its points
    assert ((draws[:, 2] > 0.2) & (draws[:, 2] < 0.65)).mean() < 0.01
    table = MixtureRegion((DiscRegion((0.5, 0.2), 0.3), BoxRegion((-1.0, -0.6, -0.01), (-0.2, -0.4, 0.01))), (0.5, 0.5))
    observed = table.sample(64, rng)
    draws = labelled_part_predictive("round_table", table, observed, 4000, rng)
    assert table.contains(draws).mean() > 0.85 and np.all(draws[:, 2] == 0)
    assert labelled_part_predictive("round_table", RingRegion((0, 0), 0.5, 1.0), observed, 10, rng) is None
    assert labelled_part_predictive("cabinet", shelves, np.zeros((0, 3)), 10, rng) is None


def test_looks_to_find_counts_until_the_first_hit_and_charges_a_miss_the_cap():
    inside = np.array([[True, False, True], [False, False, True], [False, False, False]])
    np.testing.assert_array_equal(looks_to_find(inside, 3), [1, 3, 3])
    np.testing.assert_array_equal(looks_to_find(inside, 2), [1, 2, 2])


def test_the_first_observations_do_not_depend_on_the_largest_count_asked_for():
    home = homes("cabinet", 2)[1]
    short_c, short_t = observation_sequence(home, 1, 0, 16)
    long_c, long_t = observation_sequence(home, 1, 0, 128)
    assert len(short_c) == len(long_c) == 128 and len(observation_sequence(home, 1, 0, 500)[0]) == 500
    np.testing.assert_array_equal(short_c[:8], long_c[:8])
    np.testing.assert_array_equal(short_t[:8], long_t[:8])
    assert home.in_specialized_region(long_c, long_t).all()


def test_a_home_domain_keeps_the_general_data():
    home = home_domain("cabinet", BoxRegion((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)))
    a = home.general_dataset(50, 3)
    b = homes("cabinet", 1)[0].general_dataset(50, 3)
    np.testing.assert_array_equal(a.targets, b.targets)


def test_the_quick_curve_has_every_row_and_the_cold_start_is_the_prior(tmp_path):
    result = run_learning_curve(tmp_path, CurveSettings.quick(cutoffs=(0.6,)))
    rows = result["rows"]
    for n in (0, 2, 8):
        names = {r["row"] for r in rows if r["observations"] == n and r["home"] == "thesis"}
        trained = {"scratch", "fine_tuned", "proposer_cut0.6", "labelled_parts"} if n else set()
        want = {"general", "proposer", "limit", "oracle"} | trained
        assert names == want, (n, names)
    for r in rows:
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["coverage"] <= 1 and 1 <= r["looks_to_find"] <= 6
        oracle = next(o for o in rows if o["row"] == "oracle" and o["home"] == r["home"])
        assert r["coverage_vs_oracle"] == pytest.approx(r["coverage"] / oracle["coverage"])
    assert all(r["accuracy"] == 1.0 and r["looks_to_find"] == 1.0 for r in rows if r["row"] == "oracle")
    cold = {r["row"]: r for r in rows if r["observations"] == 0 and r["home"] == "thesis"}
    assert cold["proposer"]["accuracy"] == cold["general"]["accuracy"]
    assert (tmp_path / "learning_curve_cabinet.png").stat().st_size > 10_000
    assert "| 8 | limit |" in (tmp_path / "results.md").read_text()


def test_the_context_summary_is_permutation_invariant_and_null_when_empty():
    from dualdiff_ros.learning.in_context import SUMMARY_SIZE, summary

    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 3))
    np.testing.assert_allclose(summary(x), summary(x[rng.permutation(7)]))
    np.testing.assert_array_equal(summary(np.zeros((0, 3))), np.zeros(SUMMARY_SIZE))
    assert summary(x)[0] > summary(x[:2])[0] > 0  # the count grows with the context
    np.testing.assert_allclose(summary(x)[1:4], x.min(0))


def test_fleet_rows_summarize_other_observations_of_the_same_home():
    from dualdiff_ros.learning.in_context import SUMMARY_SIZE, fleet_rows

    c, t = fleet_rows("cabinet", n_homes=30, points_per_home=20, rows_per_home=10, seed=1)
    assert c.shape == (300, 3 + SUMMARY_SIZE) and t.shape == (300, 3)
    local = t - c[:, :3]
    has_context = c[:, 3] > 0
    assert 0.05 < 1 - has_context.mean() < 0.3  # a share of the rows sees the null context
    # a home's region is a box: the row's own target lies inside the box of its home, which its
    # context bounds from inside, so the context's min/max are inside the general box
    lo, hi = c[has_context, 4:7], c[has_context, 7:10]
    assert (lo <= hi).all() and (lo >= GENERAL_BOX[0] - 1e-9).all() and (hi <= GENERAL_BOX[1] + 1e-9).all()
    assert ((local >= GENERAL_BOX[0] - 1e-9) & (local <= GENERAL_BOX[1] + 1e-9)).all()


def test_the_curve_can_run_the_home_aware_prior(tmp_path):
    settings = CurveSettings.quick(observations=(0, 4), homes=1, context_guidance=(1.0, 3.0))
    result = run_learning_curve(tmp_path, settings)
    names = {r["row"] for r in result["rows"] if r["observations"] == 4}
    assert {"home_aware", "home_aware_w3"} <= names


def test_the_curve_reads_a_multi_place_home_place_by_place_as_the_service_does(tmp_path):
    from dualdiff_ros.evaluation.learning_curve import served_row
    from dualdiff_ros.learning import places

    settings = CurveSettings.quick(observations=(0, 30), homes=2, family="multi", context_guidance=(1.0, 1.5),
                                   context_places=True, skip_scratch=True)
    result = run_learning_curve(tmp_path, settings)
    at = [r for r in result["rows"] if r["observations"] == 30]
    assert {"home_aware_places", "home_aware_places_w1.5", "served", "labelled_parts"} <= {r["row"] for r in at}
    assert not any(r["row"].startswith("home_aware_places") for r in result["rows"] if r["observations"] == 0)
    split = [places.split(home.region_frame(*observation_sequence(home, i, 0, 128))[:30]).max()
             for i, home in enumerate(homes("cabinet", 2, 0, "multi"))]
    for name, home_split in zip(sorted({r["home"] for r in at}), split):
        rows = {r["row"]: r for r in at if r["home"] == name}
        same = rows["home_aware_places"]["accuracy"] == rows["home_aware"]["accuracy"]
        assert same == (home_split == 0)  # a home of one place is read as before; of several, not
    assert served_row("home_aware", 30) == "home_aware_places_w1.5"


def test_a_fine_tune_of_the_home_aware_prior_keeps_its_condition_and_composes_with_it(tmp_path):
    from dualdiff_ros.diffusion.composition import check_compatible
    from dualdiff_ros.domains.homes import homes
    from dualdiff_ros.evaluation.learning_curve import train_home_aware_prior, tune_home_aware

    settings = CurveSettings.quick(observations=(0, 4), homes=1, context_guidance=(1.5,), context_tuning=True)
    result = run_learning_curve(tmp_path, settings)
    at = {r["row"]: r for r in result["rows"] if r["observations"] == 4}
    assert {"home_aware_w1.5", "home_aware_tuned_w1.5", "home_aware_joint_w1.5"} <= set(at)
    assert not any(r["row"].startswith("home_aware_tuned") for r in result["rows"] if r["observations"] == 0)
    for name in ("home_aware_tuned_w1.5", "home_aware_joint_w1.5"):
        assert 0 <= at[name]["accuracy"] <= 1 and 1 <= at[name]["looks_to_find"] <= settings.looks

    prior = train_home_aware_prior(settings)
    home = homes(settings.domain, 1, 0)[0]
    rng = np.random.default_rng(0)
    c = home.sample_conditions(4, rng)
    tuned = tune_home_aware(prior, home, c, home.sample_specialized_targets(c, rng), settings, seed=1)
    check_compatible(prior, tuned)  # one condition (pose + summary), one normalizer: they compose
    assert tuned.metadata["droppable_condition"] == prior.metadata["droppable_condition"]


def test_distinct_rows_spread_the_looks_by_the_separation_asked_for(tmp_path):
    from dualdiff_ros.diffusion.proposer import Proposer
    from dualdiff_ros.evaluation.learning_curve import propose_all
    from dualdiff_ros.model_store import train_general

    settings = CurveSettings.quick(observations=(0,), homes=1, min_separation=0.3)
    result = run_learning_curve(tmp_path, settings)
    assert "proposer_distinct" in {r["row"] for r in result["rows"]}

    home = homes("cabinet", 1, 0)[0]
    data = home.general_dataset(2000, 0)
    general = train_general("cabinet", data.conditions, data.targets, settings.recipe, 0, False)
    test = home.sample_conditions(5, np.random.default_rng(1))
    spread = propose_all(Proposer(), general, None, test, 4, 0, min_separation=0.8)
    plain = propose_all(Proposer(), general, None, test, 4, 0)
    assert spread.shape == plain.shape == (5, 4, 3)

    def closest(props):
        return np.linalg.norm(props[:, None] - props[None], axis=-1)[np.triu_indices(4, 1)].min()

    assert min(closest(p) for p in spread) >= 0.8  # 16 drawn in a 2 x 2 x 1 box: 4 that far apart exist
    assert min(closest(p) for p in plain) < 0.8     # without the field, some do lie closer


def test_pseudo_observations_raise_only_the_count_at_most_doubling_it_and_not_past_the_trained_range():
    from dualdiff_ros.learning.in_context import (
        MAX_CONTEXT,
        SUMMARY_SIZE,
        context_conditions,
        summary,
        with_pseudo_observations,
    )

    x = np.random.default_rng(1).normal(size=(8, 3))
    plain, told = summary(x), with_pseudo_observations(summary(x), 8, 8)
    np.testing.assert_allclose(told, summary(np.repeat(x, 2, axis=0)))  # 16 observations with the same extent
    assert told[0] > plain[0]
    np.testing.assert_array_equal(with_pseudo_observations(summary(x), 8, 0), plain)
    np.testing.assert_array_equal(with_pseudo_observations(np.zeros(SUMMARY_SIZE), 0, 16), np.zeros(SUMMARY_SIZE))
    few = summary(x[:2])  # two observations are told of at most two more, not sixteen
    np.testing.assert_allclose(with_pseudo_observations(few, 2, 16), summary(np.repeat(x[:2], 2, axis=0)))
    many = summary(np.repeat(x, 16, axis=0))  # 128 told of more stay at the trained MAX_CONTEXT
    assert with_pseudo_observations(many, 128, 10 * MAX_CONTEXT)[0] == pytest.approx(1.0)
    np.testing.assert_allclose(context_conditions(np.zeros((2, 3)), x, 8)[:, 3:], np.tile(told, (2, 1)))
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="pseudo-observations"):
            with_pseudo_observations(plain, 8, bad)


def test_the_curve_reuses_a_saved_home_aware_prior_and_adds_tempered_rows(tmp_path):
    from dualdiff_ros.evaluation.learning_curve import load_home_aware_prior, train_home_aware_prior
    from dualdiff_ros.model_store import save

    settings = CurveSettings.quick(observations=(0, 4), homes=1, context_guidance=(1.0,))
    save(train_home_aware_prior(settings), tmp_path / "home_aware.safetensors")
    save(train_home_aware_prior(settings, "summary"), tmp_path / "summary.safetensors")
    reused = CurveSettings.quick(observations=(0, 4), homes=1, context_guidance=(1.0,), context_pseudo=(8.0,),
                                 context_model=str(tmp_path / "home_aware.safetensors"), general_size=500,
                                 context_kinds=("set", "summary"), summary_model=str(tmp_path / "summary.safetensors"))
    rows = run_learning_curve(tmp_path / "curve", reused)["rows"]
    assert {"home_aware", "home_aware_summary", "home_aware_summary_p8", "served", "oracle"} <= {
        r["row"] for r in rows if r["observations"] == 4}
    cold = {r["row"]: r for r in rows if r["observations"] == 0}
    assert [cold["served"][k] for k in METRICS] == [cold["proposer"][k] for k in METRICS]
    # the tempered row is asked with another condition: other proposals from the same seed
    home, model = homes("cabinet", 1, 0)[0], load_home_aware_prior(tmp_path / "summary.safetensors", "cabinet")
    c, t = observation_sequence(home, 0, 0, 4)
    observed, poses = home.region_frame(c[:4], t[:4]), c[:8]
    plain, told = (home_aware_samples(model, home, observed, poses, 3, 7, 1.0, pseudo=p) for p in (0.0, 8.0))
    assert np.isfinite(told).all() and not np.allclose(plain, told)
    with pytest.raises(ValueError, match="home-aware prior of round_table"):
        load_home_aware_prior(tmp_path / "home_aware.safetensors", "round_table")


def test_the_served_row_asks_the_services_own_gate():
    """The curve's served row and the service decide with one function (serving.home_aware_answers)."""
    values = serving.defaults()
    top = values["home_aware.max_observations"]
    assert not serving.home_aware_answers(0, True, True, values)          # no observations: the proposer
    assert serving.home_aware_answers(1, True, True, values)
    assert not serving.home_aware_answers(top + 1, True, True, values)    # many, and a specialist: composed
    assert serving.home_aware_answers(top + 1, True, False, values)       # ... but none trained yet: the prior
    assert not serving.home_aware_answers(5, False, False, values)        # no home-aware prior loaded
    assert not serving.home_aware_answers(5, True, True, {**values, "home_aware.enabled": False})


def test_the_curve_through_the_nodes_is_compared_with_the_served_row(tmp_path):
    """`dualdiff adapt`'s offline column samples as the service does: pseudo-observations included."""
    from dualdiff_ros.evaluation.adaptation import SCORE_PROPOSALS, OfflineCurve
    from dualdiff_ros.evaluation.learning_curve import load_home_aware_prior, train_home_aware_prior
    from dualdiff_ros.model_store import save

    values = serving.defaults()
    assert values["home_aware.pseudo_observations"] > 0  # else the two below would not differ
    path = tmp_path / "models" / "cabinet" / "home_aware.safetensors"
    path.parent.mkdir(parents=True)
    save(train_home_aware_prior(CurveSettings.quick(homes=1, context_guidance=(1.0,)), "summary"), path)
    model, home = load_home_aware_prior(path, "cabinet"), homes("cabinet", 1, 0)[0]
    c, t = observation_sequence(home, 0, 0, 4)
    observed, poses = home.region_frame(c[:4], t[:4]), c[:6]
    offline = OfflineCurve(tmp_path / "models", "cabinet", home, poses, np.zeros((1, 3)), seed=5)
    got = offline.samples(observed)
    served = home_aware_samples(model, home, observed, poses, SCORE_PROPOSALS, 5, values["home_aware.guidance"],
                                pseudo=values["home_aware.pseudo_observations"])
    plain = home_aware_samples(model, home, observed, poses, SCORE_PROPOSALS, 5, values["home_aware.guidance"])
    assert got.shape == (6, SCORE_PROPOSALS, 3) and np.array_equal(got, served) and not np.allclose(got, plain)
    assert offline.samples(home.region_frame(c[:0], t[:0])) is None  # no observations: the proposer answers


def test_the_margin_sweep_replays_the_check_with_other_margins():
    from dualdiff_ros.evaluation.learning_curve import margin_sweep, served_row

    def row(name, accuracy, **extra):
        return {"home": "h", "observations": 8, "row": name, "accuracy": accuracy, "coverage": accuracy,
                "coverage_vs_oracle": accuracy, "looks_to_find": 1 / max(accuracy, 0.1), **extra}

    rows = [row("home_aware", 0.2), row("proposer", 0.9), row("fine_tuned", 0.7), row("general", 0.1),
            row("served", 0.2, check_scores={"home_aware": -3.0, "joint": -2.0, "specialized": -2.5, "general": -4.0})]
    got = {r["margin"]: r["accuracy"] for r in margin_sweep(rows, (0.0, 0.9, 1.5))}
    assert got == {0.0: 0.9, 0.9: 0.9, 1.5: 0.2}  # joint beats the prior by 1 nat: served below a margin of 1
    # the prior is replayed at the guidance the service uses at this N when the curve measured it
    guidance = serving.home_aware_guidance(8, serving.defaults())
    if guidance != 1:
        rows.append(row(f"home_aware_w{guidance:g}", 0.6))
        assert {r["margin"]: r["accuracy"] for r in margin_sweep(rows, (1.5,))} == {1.5: 0.6}
        rows.append(row(served_row("home_aware", 8), 0.65))   # read place by place, as served
        assert {r["margin"]: r["accuracy"] for r in margin_sweep(rows, (1.5,))} == {1.5: 0.65}


def test_a_new_robots_model_folder_has_the_priors_and_no_specialist(tmp_path):
    """An earlier `dualdiff adapt` run into the same folder trained a specialist: not this robot's."""
    from dualdiff_ros.evaluation.adaptation import priors_only

    source = tmp_path / "models" / "cabinet"
    source.mkdir(parents=True)
    for name in ("general", "home_aware", "specialized"):
        (source / f"{name}.safetensors").write_bytes(name.encode())
    robot = tmp_path / "robot"
    (robot / "cabinet").mkdir(parents=True)
    (robot / "cabinet" / "specialized.safetensors").write_bytes(b"an earlier run's")
    priors_only(tmp_path / "models", "cabinet", robot)
    assert sorted(p.name for p in (robot / "cabinet").iterdir()) == ["general.safetensors", "home_aware.safetensors"]
