"""Where the reverse chain starts (N(0, I) or matched to the data) and which levels it visits."""
import numpy as np
import pytest
import torch

from dualdiff_ros.diffusion.analytic import gaussian_model
from dualdiff_ros.diffusion.composition import CompositionConfig, compose
from dualdiff_ros.diffusion.model import DiffusionModel
from dualdiff_ros.diffusion.normalizer import Normalizer
from dualdiff_ros.diffusion.sampling import SamplerConfig, sample
from dualdiff_ros.diffusion.schedules import NoiseSchedule
from dualdiff_ros.diffusion.training import TrainConfig, train

# The DualDiff template's schedule: it stops at alpha_bar_T = 0.37, far from noise.
SHORT = NoiseSchedule("linear", 100, 1e-4, 0.02)
MEAN, STD = np.array([2.0, -1.0]), np.array([2.0, 0.5])


def exact_model():
    model = gaussian_model(MEAN, STD, SHORT)
    model.metadata["target_moments"] = {"mean": MEAN.tolist(), "cov": np.diag(STD**2).tolist()}
    return model


def draw(model, start, n=20_000):
    return sample(model, np.zeros((1, 0)), n, seed=3, sampler=SamplerConfig(start=start, clip=None))[0]


def test_matched_start_recovers_the_data_where_the_noise_start_cannot():
    assert SHORT.alpha_bar(SHORT.num_steps - 1) > 0.3
    model = exact_model()
    matched, noise = draw(model, "matched"), draw(model, "noise")
    np.testing.assert_allclose(matched.mean(0), MEAN, atol=0.05)
    np.testing.assert_allclose(matched.std(0), STD, rtol=0.03)
    # With exact noise predictions the only error left is the start: N(0, I) is far too narrow
    # and centred wrongly for this schedule.
    assert np.abs(noise.std(0) - STD).max() > 0.3 and np.abs(noise.mean(0) - MEAN).max() > 0.3


def test_matched_start_equals_noise_start_when_the_schedule_reaches_noise():
    model = gaussian_model(MEAN, STD, NoiseSchedule("linear", 100))  # alpha_bar_T ~ 2e-5
    model.metadata["target_moments"] = {"mean": MEAN.tolist(), "cov": np.diag(STD**2).tolist()}
    np.testing.assert_allclose(draw(model, "matched", 2000), draw(model, "noise", 2000), atol=0.05)


def test_training_records_the_targets_moments_in_model_space():
    torch.manual_seed(0)
    data = np.random.default_rng(0).normal([1.0, 3.0], [0.5, 2.0], size=(4000, 2))
    norm = Normalizer.fit(data)
    model = DiffusionModel.create({"name": "mlp", "width": 16, "depth": 1}, SHORT, norm, None)
    train(model, None, data, TrainConfig(steps=2, batch_size=64, progress=False))
    moments = model.metadata["target_moments"]
    y = norm.normalize(data)
    np.testing.assert_allclose(moments["mean"], y.mean(0), atol=1e-6)
    np.testing.assert_allclose(moments["cov"], np.cov(y.T), atol=1e-6)


def test_matched_start_without_moments_names_the_fix():
    model = gaussian_model(MEAN, STD, SHORT)
    with pytest.raises(ValueError, match="retrain it, or use start 'noise'"):
        draw(model, "matched", 10)
    with pytest.raises(ValueError, match="use one of"):
        draw(model, "middle", 10)


def test_composition_refuses_a_matched_start():
    model = exact_model()
    config = CompositionConfig(method="sum", sampler=SamplerConfig(start="matched"))
    with pytest.raises(ValueError, match="a composition starts from noise"):
        compose(model, model, np.zeros((1, 0)), 4, config)


@pytest.mark.parametrize("steps,fine", [(25, 10), (20, 10), (11, 10), (100, 10), (5, 1)])
def test_fine_tail_timesteps_stride_the_noise_and_walk_the_tail(steps, fine):
    ts = NoiseSchedule("linear", 100).fine_tail_timesteps(steps, fine)
    assert len(ts) == len(set(ts)) and ts == sorted(ts, reverse=True)
    assert ts[0] == 99 and ts[-fine:] == list(range(fine - 1, -1, -1))
    assert len(ts) <= steps and (steps == 100 or len(ts) == steps)
    coarse = ts[:len(ts) - fine]
    strides = np.diff(coarse)
    assert coarse[-1] == fine or coarse == [99]  # down to the tail (one coarse step: just T - 1)
    assert len(strides) == 0 or np.ptp(strides) <= 1  # evenly spaced


@pytest.mark.parametrize("config,words", [
    (SamplerConfig(fine_steps=10), "ddpm takes every step"),
    (SamplerConfig(method="ddim", steps=0, fine_steps=10), "steps > 0"),
    (SamplerConfig(method="ddim", steps=10, fine_steps=10), "below steps=10"),
    (SamplerConfig(method="dpm_solver", steps=25, fine_steps=-1), ">= 0"),
])
def test_bad_fine_steps_name_the_problem(config, words):
    with pytest.raises(ValueError, match=words):
        config.validate(100)


def test_a_fine_tail_keeps_the_spread_that_even_strides_lose():
    """Exact noise predictions for narrow data: the sampler's own error is all that is left.

    Even 20-step strides drop the clean sample's uncertainty at every step and shrink the
    samples; taking the last 10 levels one by one keeps the spread of 100 DDPM steps.
    """
    model = gaussian_model(np.zeros(2), np.array([0.1, 0.1]), NoiseSchedule("linear", 100))

    def spread(config):
        return sample(model, np.zeros((1, 0)), 20_000, seed=1, sampler=config)[0].std(0).mean()

    every_step = spread(SamplerConfig())
    even = spread(SamplerConfig(method="ddim", steps=20))
    tail = spread(SamplerConfig(method="ddim", steps=20, fine_steps=10))
    assert even < 0.8 * every_step
    assert abs(tail - every_step) < 0.03 * every_step


def _conditioned_model(droppable: bool) -> DiffusionModel:
    """An untrained 2-d MLP conditioned on 4 numbers; the last 3 are a droppable block when asked."""
    torch.manual_seed(0)
    model = DiffusionModel.create({"name": "mlp", "width": 16, "depth": 1}, NoiseSchedule(num_steps=10),
                                  Normalizer([-1.0, -1.0], [1.0, 1.0]),
                                  Normalizer([0.0, 0.0, 0.0, 0.0], [2.0, 4.0, 4.0, 4.0]))
    if droppable:
        model.metadata["droppable_condition"] = [1, 4]
    return model


def test_guidance_mixes_the_conditional_and_the_block_free_predictions():
    from dualdiff_ros.diffusion.model import noise_predictor

    model = _conditioned_model(droppable=True)
    raw = np.array([[1.0, 3.0, 1.0, 2.0], [0.5, 0.0, 0.0, 0.0]])  # the second row has no block already
    c = model.normalize_conditions(raw)
    c0 = model.normalize_conditions(raw * np.array([1.0, 0.0, 0.0, 0.0]))
    y = torch.randn(2, 2, generator=torch.Generator().manual_seed(1))
    plain, free = model.eps(y, 5, c), model.eps(y, 5, c0)
    for w in (0.0, 1.0, 2.5):
        guided = noise_predictor([model], [c], w)(y, 5)[0]
        torch.testing.assert_close(guided, free + w * (plain - free), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(noise_predictor([model], [c0], 3.0)(y, 5)[0], free, rtol=1e-5, atol=1e-6)


def test_guidance_leaves_models_without_a_droppable_block_alone():
    from dualdiff_ros.diffusion.model import noise_predictor

    model = _conditioned_model(droppable=False)
    c = model.normalize_conditions(np.array([[1.0, 3.0, 1.0, 2.0]]))
    y = torch.randn(1, 2)
    torch.testing.assert_close(noise_predictor([model], [c], 4.0)(y, 3)[0], model.eps(y, 3, c))


def test_guidance_out_of_range_is_refused():
    with pytest.raises(ValueError, match="guidance"):
        SamplerConfig(guidance=-1.0).validate(10)
    with pytest.raises(ValueError, match="guidance"):
        SamplerConfig(guidance=float("nan")).validate(10)
