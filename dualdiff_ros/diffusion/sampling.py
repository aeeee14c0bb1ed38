"""Drawing samples from one model: ancestral DDPM, DDIM or SDE-DPM-Solver++, for many conditions at once."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .model import DiffusionModel, noise_predictor
from .schedules import ddim_step, ddpm_step, dpm_solver_step

METHODS = ("ddpm", "ddim", "dpm_solver")
STARTS = ("noise", "matched")


MAX_GUIDANCE = 20.0


@dataclass
class SamplerConfig:
    """Which reverse process to run. DDIM with eta > 0 stays stochastic (needed for products).

    "dpm_solver" is the stochastic second-order multistep solver (SDE-DPM-Solver++ 2M). It keeps
    more of the samples' spread per step than strided DDIM; at 50 steps it matched 100 DDPM steps
    on the cabinet and lost coverage on the round table (docs/RESULTS.md, section 3).
    """

    method: str = "ddpm"       # "ddpm", "ddim" or "dpm_solver"
    # DDIM / DPM-Solver: at most this many reverse steps; 0 (or at least the schedule's T) = every
    # level. An upper bound, so one setting serves models with short and long schedules alike.
    steps: int = 0
    # DDIM / DPM-Solver: take the last fine_steps levels one by one and stride over the rest
    # (NoiseSchedule.fine_tail_timesteps); 0 = evenly spaced steps throughout.
    fine_steps: int = 0
    eta: float = 1.0           # DDIM stochasticity (0 = deterministic)
    variance: str = "small"    # DDPM variance: "small" (posterior) or "large" (beta_t)
    # Bound on the predicted clean sample, normalized units (the general data spans [-1, 1]): a safety
    # net against the cosine schedule's first steps (beta ~ 0.999) amplifying a bad eps; None = off.
    clip: float | None = 10.0
    # Where the reverse chain starts. "noise": N(0, I), right when alpha_bar_T ~ 0 (every schedule
    # this product trains with). "matched": the forward process's own marginal at T for Gaussian data
    # with the training targets' mean and covariance, N(sqrt(ab_T) mu, ab_T Sigma + (1 - ab_T) I).
    # It matters for schedules that stop short of noise: the DualDiff template's (ab_T = 0.37)
    # starts its chain far too narrow, which is most of its KL on line (docs/dualdiff-2d.md).
    start: str = "noise"
    # Classifier-free guidance scale on a model's droppable condition block (navigate-to: the map);
    # 1 = the conditional model as trained, 0 = the block ignored (model.noise_predictor).
    guidance: float = 1.0

    def validate(self, num_train_steps: int):
        if self.method not in METHODS:
            raise ValueError(f"sampler method {self.method!r}: use one of {METHODS}")
        if self.steps < 0:
            raise ValueError(f"sampler steps={self.steps} must be >= 0 (0 = every level of the schedule)")
        if self.fine_steps < 0:
            raise ValueError(f"fine_steps={self.fine_steps} must be >= 0")
        if self.fine_steps:
            if self.method == "ddpm" or self.steps == 0:
                raise ValueError(f"fine_steps={self.fine_steps} needs a strided sampler: method ddim or dpm_solver "
                                 "with steps > 0 (ddpm takes every step already)")
            if self.fine_steps >= self.steps:
                raise ValueError(f"fine_steps={self.fine_steps} must be below steps={self.steps}")
        if not 0 <= self.eta <= 1:
            raise ValueError(f"eta={self.eta} must be in [0, 1]")
        if not (math.isfinite(self.guidance) and 0 <= self.guidance <= MAX_GUIDANCE):
            raise ValueError(f"guidance={self.guidance} must be in [0, {MAX_GUIDANCE}] (1 = no guidance)")
        if self.start not in STARTS:
            raise ValueError(f"sampler start {self.start!r}: use one of {STARTS}")

    def timesteps(self, schedule) -> list[tuple[int, int]]:
        """(t, t_prev) pairs from noise to data; t_prev = -1 marks the final clean step."""
        steps = self.steps if self.steps < schedule.num_steps else 0
        if self.method == "ddpm":
            ts = list(range(schedule.num_steps - 1, -1, -1))
        elif self.fine_steps and steps:
            ts = schedule.fine_tail_timesteps(steps, self.fine_steps)
        elif self.method == "ddim":
            ts = schedule.ddim_timesteps(steps or schedule.num_steps)
        else:
            ts = schedule.linspace_timesteps(steps or schedule.num_steps)
        return list(zip(ts, ts[1:] + [-1]))

    def step(self, schedule, y, eps, t, t_prev, noise, memory: dict | None = None):
        """One reverse step. `memory` (one dict per sampling run) carries a multistep solver's history."""
        if self.method == "ddpm":
            return ddpm_step(schedule, y, eps, t, noise, self.variance, self.clip)
        if self.method == "ddim":
            return ddim_step(schedule, y, eps, t, t_prev, self.eta, noise, self.clip)
        memory = {} if memory is None else memory
        y, memory["history"] = dpm_solver_step(schedule, y, eps, t, t_prev, noise, memory.get("history"), self.clip)
        return y


def reorder_memory(memory: dict, index: torch.Tensor) -> None:
    """Keep a multistep solver's history with its particles when SMC resamples them."""
    if memory.get("history") is not None:
        y0, lam = memory["history"]
        memory["history"] = (y0[index], lam)


def repeat_conditions(model: DiffusionModel, conditions, num_samples: int) -> torch.Tensor:
    """Normalized conditions, each repeated num_samples times (row-major: condition, sample)."""
    c = model.normalize_conditions(conditions) if model.condition_dim else torch.zeros(len(conditions), 0)
    return c.repeat_interleave(num_samples, dim=0)


def target_moments(y: torch.Tensor) -> dict:
    """Mean and covariance of normalized training targets [n, d], as JSON-ready lists."""
    y = y.double()
    cov = torch.cov(y.T).reshape(y.shape[1], y.shape[1]) if len(y) > 1 else torch.zeros(y.shape[1], y.shape[1])
    return {"mean": y.mean(0).tolist(), "cov": cov.tolist()}


def initial_sample(model: DiffusionModel, n: int, start: str, gen: torch.Generator) -> torch.Tensor:
    """Draw n starting points y_T for the reverse chain (see SamplerConfig.start)."""
    z = torch.randn((n, model.target_dim), generator=gen)
    if start == "noise":
        return z
    moments = model.metadata.get("target_moments")
    if moments is None:
        raise ValueError("sampler start 'matched' needs the training targets' moments, which this model's "
                         "metadata lacks (trained before they were recorded): retrain it, or use start 'noise'")
    ab = model.schedule.alpha_bar(model.schedule.num_steps - 1)
    mean = math.sqrt(ab) * torch.tensor(moments["mean"], dtype=torch.float64)
    cov = ab * torch.tensor(moments["cov"], dtype=torch.float64) + (1 - ab) * torch.eye(model.target_dim,
                                                                                       dtype=torch.float64)
    return (mean + z.double() @ torch.linalg.cholesky(cov).T).float()


@torch.inference_mode()
def sample(model: DiffusionModel, conditions, num_samples: int, seed: int = 0,
           sampler: SamplerConfig | None = None) -> np.ndarray:
    """Samples [n_conditions, num_samples, target_dim] in raw (denormalized) units.

    Unconditional models take `conditions` as an [n, 0] array (or any length-n sequence).
    """
    sampler = sampler or SamplerConfig()
    sampler.validate(model.schedule.num_steps)
    gen = torch.Generator().manual_seed(int(seed))
    c = repeat_conditions(model, conditions, num_samples)
    y = initial_sample(model, len(c), sampler.start, gen)
    predict, memory = noise_predictor([model], [c], sampler.guidance), {}
    for t, t_prev in sampler.timesteps(model.schedule):
        eps = predict(y, t)[0]
        y = sampler.step(model.schedule, y, eps, t, t_prev, torch.randn(y.shape, generator=gen), memory)
    out = model.decode_targets(np.repeat(np.asarray(conditions), num_samples, axis=0), y)
    return out.reshape(len(conditions), num_samples, model.target_dim)
