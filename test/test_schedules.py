"""Our schedules and steps against diffusers' reference schedulers."""
import pytest
import torch

from dualdiff_ros.diffusion.sampling import SamplerConfig
from dualdiff_ros.diffusion.schedules import NoiseSchedule, ddim_step, ddpm_step

diffusers = pytest.importorskip("diffusers")


@pytest.mark.parametrize("kind,name", [("linear", "linear"), ("cosine", "squaredcos_cap_v2")])
def test_alphas_cumprod_match_diffusers(kind, name):
    ours = NoiseSchedule(kind, 100, 1e-4, 0.02)
    ref = diffusers.DDPMScheduler(num_train_timesteps=100, beta_schedule=name, beta_start=1e-4, beta_end=0.02)
    torch.testing.assert_close(ours.betas.float(), ref.betas.float(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(ours.alphas_cumprod.float(), ref.alphas_cumprod.float(), rtol=1e-5, atol=1e-7)


def test_default_linear_schedule_reaches_noise():
    assert float(NoiseSchedule("linear", 100).alphas_cumprod[-1]) < 1e-3
    assert float(NoiseSchedule("linear", 100, 1e-4, 0.02).alphas_cumprod[-1]) > 0.3  # the template's flaw


@pytest.mark.parametrize("variance,diffusers_variance", [("small", "fixed_small"), ("large", "fixed_large")])
@pytest.mark.parametrize("t", [99, 50, 1, 0])
def test_ddpm_step_matches_diffusers(variance, diffusers_variance, t):
    ours = NoiseSchedule("linear", 100, 1e-4, 0.02)
    ref = diffusers.DDPMScheduler(num_train_timesteps=100, beta_schedule="linear", beta_start=1e-4,
                                  beta_end=0.02, clip_sample=False, variance_type=diffusers_variance)
    gen = torch.Generator().manual_seed(3)
    y, eps = torch.randn(16, 3, generator=gen), torch.randn(16, 3, generator=gen)
    noise_gen = torch.Generator().manual_seed(7)
    expected = ref.step(eps, t, y, generator=noise_gen).prev_sample
    noise = torch.randn(y.shape, generator=torch.Generator().manual_seed(7))
    got = ddpm_step(ours, y, eps, t, noise, variance)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_steps_match_diffusers(eta):
    ours = NoiseSchedule("cosine", 100)
    ref = diffusers.DDIMScheduler(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2",
                                  clip_sample=False, set_alpha_to_one=True)
    ref.set_timesteps(10)
    assert [int(t) for t in ref.timesteps] == ours.ddim_timesteps(10)
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(8, 2, generator=gen)
    y_ref = y.clone()
    steps = ours.ddim_timesteps(10)
    for i, t in enumerate(steps):
        eps = torch.sin(y * (i + 1))  # any fixed function of the state stands in for a network
        noise = torch.randn(y.shape, generator=gen)
        t_prev = steps[i + 1] if i + 1 < len(steps) else -1
        y = ddim_step(ours, y, eps, t, t_prev, eta, noise)
        y_ref = ref.step(torch.sin(y_ref * (i + 1)), t, y_ref, eta=eta, variance_noise=noise).prev_sample
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("num_inference_steps", [20, 25])
def test_dpm_solver_matches_diffusers_sde_dpmsolver_plus_plus(num_inference_steps):
    """A whole trajectory of the 2nd-order multistep SDE solver, first and final steps included."""
    ours = NoiseSchedule("linear", 100)
    ref = diffusers.DPMSolverMultistepScheduler(num_train_timesteps=100, beta_start=ours.beta_start,
                                                beta_end=ours.beta_end, algorithm_type="sde-dpmsolver++",
                                                solver_order=2)
    ref.set_timesteps(num_inference_steps)
    sampler = SamplerConfig(method="dpm_solver", steps=num_inference_steps, clip=None)
    pairs = sampler.timesteps(ours)
    assert [int(t) for t in ref.timesteps] == [t for t, _ in pairs]
    def eps(y, t, i):  # the exact noise prediction for data N(0, 0.5^2), perturbed per step
        ab = float(ours.alphas_cumprod[t])
        return (1 - ab) ** 0.5 * y / (0.25 * ab + 1 - ab) + 0.05 * torch.sin(y * (i + 1))

    gen = torch.Generator().manual_seed(0)
    y = torch.randn(8, 2, generator=gen, dtype=torch.float64)
    y_ref, memory = y.clone(), {}
    for i, (t, t_prev) in enumerate(pairs):
        noise = torch.randn(y.shape, generator=gen, dtype=torch.float64)
        y = sampler.step(ours, y, eps(y, t, i), t, t_prev, noise, memory)
        y_ref = ref.step(eps(y_ref, t, i), t, y_ref, variance_noise=noise).prev_sample
        torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5)  # diffusers keeps its schedule in float32


@pytest.mark.parametrize("n", [1, 7, 99, 100])
def test_dpm_solver_timesteps_descend_without_repeats(n):
    ts = NoiseSchedule("linear", 100).linspace_timesteps(n)
    assert ts[0] == 99 and all(a > b for a, b in zip(ts, ts[1:]))  # a repeat would divide by a zero step


def test_bad_schedule_names_the_choices():
    with pytest.raises(ValueError, match="linear"):
        NoiseSchedule("quadratic", 100)
    with pytest.raises(ValueError, match="num_steps"):
        NoiseSchedule("linear", 1)

