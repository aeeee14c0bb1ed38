"""Composed samplers on a product of two Gaussians, where the exact answer is known."""
from dataclasses import replace

import numpy as np
import pytest

from dualdiff_ros.diffusion.analytic import gaussian_model, gaussian_product
from dualdiff_ros.diffusion.composition import CompositionConfig, compose
from dualdiff_ros.diffusion.proposer import FallbackPolicy, Proposer, calibrate_plausibility, default_composition
from dualdiff_ros.diffusion.sampling import SamplerConfig, sample
from dualdiff_ros.diffusion.schedules import NoiseSchedule

M1, S1, M2, S2 = [0.6, -0.3], [0.25, 0.4], [-0.2, 0.1], [0.3, 0.2]
EXACT_MEAN, EXACT_STD, EXACT_LOG_Z = gaussian_product(M1, S1, M2, S2)
EXACT_SAMPLER = SamplerConfig(variance="large", clip=None)


@pytest.fixture(scope="module")
def experts():
    schedule = NoiseSchedule("cosine", 100)
    return gaussian_model(M1, S1, schedule), gaussian_model(M2, S2, schedule)


def _compose(experts, **kw):
    return compose(*experts, np.zeros((4, 0)), 1500, CompositionConfig(sampler=EXACT_SAMPLER, **kw), seed=1)


def test_single_model_sampler_recovers_its_gaussian(experts):
    x = sample(experts[0], np.zeros((1, 0)), 20000, seed=0, sampler=EXACT_SAMPLER)[0]
    np.testing.assert_allclose(x.mean(0), M1, atol=0.02)
    np.testing.assert_allclose(x.std(0), S1, rtol=0.05)


@pytest.mark.parametrize("steps", [25, 50])
def test_dpm_solver_recovers_a_gaussian_in_few_steps(experts, steps):
    """The multistep solver on an exact model: few steps, right mean and spread."""
    dpm = SamplerConfig(method="dpm_solver", steps=steps, clip=None)
    x = sample(experts[0], np.zeros((1, 0)), 20000, seed=0, sampler=dpm)[0]
    np.testing.assert_allclose(x.mean(0), M1, atol=0.02)
    np.testing.assert_allclose(x.std(0), S1, rtol=0.05)


def test_smc_resampling_carries_the_solver_history(experts):
    dpm = SamplerConfig(method="dpm_solver", steps=0, clip=None)  # SMC weights need every step
    smc = compose(*experts, np.zeros((4, 0)), 1500, CompositionConfig(method="smc", sampler=dpm), seed=1)
    x = smc.samples.reshape(-1, 2)
    np.testing.assert_allclose(x.mean(0), EXACT_MEAN, atol=0.03)
    assert np.abs(x.std(0) - EXACT_STD).max() < 0.03


def test_plain_sum_is_biased_and_smc_corrects_it(experts):
    total = _compose(experts, method="sum").samples.reshape(-1, 2)
    smc = _compose(experts, method="smc", langevin_steps=1).samples.reshape(-1, 2)
    sum_err = np.abs(total.std(0) - EXACT_STD).max()
    smc_err = np.abs(smc.std(0) - EXACT_STD).max()
    assert sum_err > 0.02, "the thesis's sum should be measurably too narrow"
    assert smc_err < 0.015 and smc_err < sum_err / 2
    np.testing.assert_allclose(smc.mean(0), EXACT_MEAN, atol=0.03)


def test_smc_estimates_the_overlap(experts):
    comp = _compose(experts, method="smc")
    assert abs(np.median(comp.log_overlap) - EXACT_LOG_Z) < 0.3
    assert 0 < comp.ess_fraction.min() <= 1


def test_corrected_sampler_costs_at_most_twice_the_sum(experts):
    plain = _compose(experts, method="sum").model_evaluations
    corrected = _compose(experts, method="smc", langevin_steps=1).model_evaluations
    assert corrected <= 2 * plain


def test_overlap_drops_when_experts_separate():
    schedule = NoiseSchedule("cosine", 100)
    near = compose(gaussian_model([0.0], [0.1], schedule), gaussian_model([0.05], [0.1], schedule),
                   np.zeros((2, 0)), 500, CompositionConfig(sampler=EXACT_SAMPLER), seed=0)
    far = compose(gaussian_model([-0.8], [0.1], schedule), gaussian_model([0.8], [0.1], schedule),
                  np.zeros((2, 0)), 500, CompositionConfig(sampler=EXACT_SAMPLER), seed=0)
    assert np.median(far.log_overlap) < np.median(near.log_overlap) - 20


def _calibrated(mean, schedule):
    model = gaussian_model(mean, [0.1], schedule)
    own = sample(model, np.zeros((1, 0)), 2000, seed=11, sampler=EXACT_SAMPLER)[0]
    calibrate_plausibility(model, np.zeros((2000, 0)), own)
    return model


@pytest.mark.parametrize("special_mean,expect", [(0.8, "specialized"), (-0.75, "joint")])
def test_proposer_falls_back_only_when_experts_do_not_overlap(special_mean, expect):
    schedule = NoiseSchedule("cosine", 100)
    general, special = _calibrated([-0.8], schedule), gaussian_model([special_mean], [0.1], schedule)
    proposer = Proposer(sampler=EXACT_SAMPLER, policy=FallbackPolicy(min_agreement=0.5))
    out = proposer.propose(general, special, np.zeros(0), 64, "joint", seed=3)
    assert out.mode_used == expect
    assert ("fell back" in out.message) == (expect == "specialized")
    assert abs(out.targets.mean() - special_mean) < 0.1
    assert out.scores.shape == (64,)
    assert 0 <= out.diagnostics["general_agreement"] <= 1


def test_a_joint_clip_keeps_joint_proposals_in_the_general_datas_range():
    """The product of two experts whose overlap reaches past the general data's range ([-1, 1])."""
    schedule = NoiseSchedule("linear", 100)
    general, special = gaussian_model([0.7], [0.4], schedule), gaussian_model([1.1], [0.4], schedule)
    served = Proposer()
    bounded = Proposer(replace(default_composition(), sampler=replace(served.composition.sampler, clip=1.0)))
    joint = bounded.propose(general, special, np.zeros(0), 400, "joint", seed=2)
    assert joint.mode_used == "joint" and joint.targets.max() <= 1.0 + 1e-6
    # Off by default: it would pin disagreeing experts' proposals where the fallback check cannot see them.
    assert (served.propose(general, special, np.zeros(0), 400, "joint", seed=2).targets > 1.0).mean() > 0.1


@pytest.mark.parametrize("hint,passes", [(None, 2 * 65 + 35), (0.0, 200), (0.5, 2 * 50 + 50)])
def test_proposer_guides_as_long_as_the_priors_recipe_says(hint, passes):
    schedule = NoiseSchedule("cosine", 100)
    general, special = gaussian_model([0.0], [0.5], schedule), gaussian_model([0.2], [0.3], schedule)
    if hint is not None:
        general.metadata["serving"] = {"general_min_t_fraction": hint}
    every_level = replace(default_composition(), sampler=EXACT_SAMPLER)
    out = Proposer(every_level, EXACT_SAMPLER).propose(general, special, np.zeros(0), 8, "joint", seed=1)
    assert out.diagnostics["model_evaluations"] == passes
    fixed = Proposer(composition=CompositionConfig(method="sum", general_min_t_fraction=0.0, sampler=EXACT_SAMPLER),
                     sampler=EXACT_SAMPLER)
    assert fixed.propose(general, special, np.zeros(0), 8, "joint", seed=1).diagnostics["model_evaluations"] == 200


def test_guidance_is_set_in_one_place_and_the_composition_follows_it():
    served = Proposer()
    assert served.composition.sampler.guidance == served.sampler.guidance == 1.5
    unguided = served.with_guidance(1.0)
    assert unguided.composition.sampler.guidance == unguided.sampler.guidance == 1.0
    assert unguided.composition.sampler.steps == served.composition.sampler.steps  # nothing else changes
    given = Proposer(composition=CompositionConfig(sampler=EXACT_SAMPLER), sampler=replace(EXACT_SAMPLER, guidance=2.0))
    assert given.composition.sampler.guidance == 2.0 and given.composition.sampler.clip is None
    assert replace(given, sampler=replace(given.sampler, guidance=3.0)).composition.sampler.guidance == 3.0


def test_weights_validate():
    with pytest.raises(ValueError, match="weights"):
        CompositionConfig(weight_general=-1).validate(100)


def test_smc_refuses_strided_steps():
    """With 40 of 100 steps its weights skip most of the trajectory: a wrong mean (measured 0.23 vs 0.27)."""
    strided = CompositionConfig(method="smc", sampler=SamplerConfig(method="dpm_solver", steps=40))
    with pytest.raises(ValueError, match="sampler.steps 0"):
        strided.validate(100)
    CompositionConfig(method="sum", sampler=SamplerConfig(method="dpm_solver", steps=40)).validate(100)


@pytest.mark.parametrize("cond_dim", [3, 0])
def test_stacked_experts_match_separate_passes(cond_dim):
    import torch

    from dualdiff_ros.diffusion.denoisers import ConditionalMLP, StackedMLP

    torch.manual_seed(0)
    a, b = ConditionalMLP(3, cond_dim, width=32, depth=2), ConditionalMLP(3, cond_dim, width=32, depth=2)
    for net in (a, b):  # non-trivial norms, so a swapped weight would show
        for p in net.parameters():
            p.data.add_(0.1 * torch.randn_like(p))
    y = torch.randn(16, 3)
    ca, cb = torch.randn(16, cond_dim), torch.randn(16, cond_dim)
    both, alone = StackedMLP(a, b).bind([ca, cb]), StackedMLP(b).bind([cb])
    for t in (0, 37, 99):
        tt = torch.full((16,), t)
        ea, eb = both(y, t)
        torch.testing.assert_close(ea, a(y, tt, ca), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(eb, b(y, tt, cb), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(alone(y, t)[0], b(y, tt, cb), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="one shape"):
        StackedMLP(a, ConditionalMLP(3, cond_dim, width=16, depth=2))


def test_stacked_plans_are_reused_only_while_the_weights_are_unchanged():
    import torch

    from dualdiff_ros.diffusion.denoisers import ConditionalMLP
    from dualdiff_ros.diffusion.lora import add_lora, merge_lora
    from dualdiff_ros.diffusion.model import stacked_plan

    torch.manual_seed(1)
    a, b = ConditionalMLP(3, 3, width=16, depth=1), ConditionalMLP(3, 3, width=16, depth=1)
    y, c, tt = torch.randn(4, 3), torch.randn(4, 3), torch.full((4,), 5)

    def served(*nets):
        return stacked_plan(list(nets)).bind([c] * len(nets))(y, 5)

    plan = stacked_plan([a, b])
    assert stacked_plan([a, b]) is plan and stacked_plan([b, a]) is not plan
    with torch.no_grad():  # an optimizer step or an EMA update changes the weights in place
        b.head[2].weight.mul_(3.0)
    torch.testing.assert_close(served(a, b)[1], b(y, tt, c), atol=1e-5, rtol=1e-5)
    add_lora(a, rank=2)  # new modules, then their update folded back in place
    with torch.no_grad():
        a.input.up.normal_()
    merge_lora(a)
    torch.testing.assert_close(served(a, b)[0], a(y, tt, c), atol=1e-5, rtol=1e-5)


def test_noise_predictor_runs_other_architectures_one_by_one():
    import torch

    from dualdiff_ros.diffusion.model import DiffusionModel, noise_predictor
    from dualdiff_ros.diffusion.normalizer import Normalizer

    general = DiffusionModel.create({"name": "resmlp", "width": 16, "depth": 1, "embedding": 8},
                                    NoiseSchedule("linear", 20), Normalizer([0, 0, 0], [1, 2, 3]),
                                    Normalizer([-4, -4, 0], [6, 6, 3]), {})
    c = torch.randn(5, general.condition_dim)
    y = torch.randn(5, general.target_dim)
    (eps,) = noise_predictor([general], [c])(y, 3)
    torch.testing.assert_close(eps, general.eps(y, 3, c))


def test_joint_plausibility_check_equals_one_model_at_a_time():
    from dualdiff_ros.diffusion.model import DiffusionModel
    from dualdiff_ros.diffusion.normalizer import Normalizer
    from dualdiff_ros.diffusion.proposer import denoising_error, denoising_errors

    def model():
        return DiffusionModel.create({"name": "mlp", "width": 16, "depth": 1}, NoiseSchedule("linear", 20),
                                     Normalizer([0, 0, 0], [1, 2, 3]), Normalizer([-4, -4, 0], [6, 6, 3]), {})
    a, b = model(), model()
    targets = np.random.default_rng(0).uniform(0, 1, (12, 3))
    both = denoising_errors([a, b], [1.0, 2.0, 0.5], targets, seed=4)
    for m, err in zip((a, b), both):
        np.testing.assert_allclose(err, denoising_error(m, [1.0, 2.0, 0.5], targets, seed=4), rtol=1e-5)
    assert not np.allclose(both[0], both[1])


def _weighted_product(a, b):
    """Mean and std of N(M1, S1^2)^a * N(M2, S2^2)^b (a Gaussian: the precisions add, weighted)."""
    p1, p2 = a / np.square(S1), b / np.square(S2)
    prec = p1 + p2
    return (p1 * np.asarray(M1) + p2 * np.asarray(M2)) / prec, np.sqrt(1 / prec)


def test_sum_refuses_weights_it_would_ignore():
    with pytest.raises(ValueError, match="no effect with composition method 'sum'"):
        CompositionConfig(method="sum", weight_general=0.5).validate(100)
    CompositionConfig(method="weighted", weight_general=0.5).validate(100)


@pytest.mark.parametrize("a, b", [(0.5, 1.5), (2.0, 1.0)])
def test_smc_samples_the_weighted_product(experts, a, b):
    """The weights are exponents: SMC lands on p_g^a p_s^b, not on the unweighted product."""
    mean, std = _weighted_product(a, b)
    comp = _compose(experts, method="smc", weight_general=a, weight_specialized=b)
    x = comp.samples.reshape(-1, 2)
    np.testing.assert_allclose(x.mean(0), mean, atol=0.03)
    assert np.abs(x.std(0) - std).max() < 0.03
    assert np.abs(mean - EXACT_MEAN).max() > 0.05, "the test must tell weighted from unweighted"
