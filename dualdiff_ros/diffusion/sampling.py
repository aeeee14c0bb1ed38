"""Drawing samples from one model: ancestral DDPM, DDIM or SDE-DPM-Solver++, for many conditions at once."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .model import DiffusionModel, noise_predictor
from .schedules import ddim_step, ddpm_step, dpm_solver_step

METHODS = ("ddpm", "ddim", "dpm_solver")


@dataclass
class SamplerConfig:
    """Which reverse process to run. DDIM with eta > 0 stays stochastic (needed for products).

    "dpm_solver" is the stochastic second-order multistep solver (SDE-DPM-Solver++ 2M). It keeps
    more of the samples' spread per step than strided DDIM; at 50 steps it matched 100 DDPM steps
    on the cabinet and lost coverage on the round table (docs/RESULTS.md, section 3).
    """

    method: str = "ddpm"       # "ddpm", "ddim" or "dpm_solver"
    steps: int = 0             # DDIM / DPM-Solver inference steps; 0 = all of the schedule's steps
    eta: float = 1.0           # DDIM stochasticity (0 = deterministic)
    variance: str = "small"    # DDPM variance: "small" (posterior) or "large" (beta_t)
    # Bound on the predicted clean sample, normalized units (the general data spans [-1, 1]): a safety
    # net against the cosine schedule's first steps (beta ~ 0.999) amplifying a bad eps; None = off.
    clip: float | None = 10.0

    def validate(self, num_train_steps: int):
        if self.method not in METHODS:
            raise ValueError(f"sampler method {self.method!r}: use one of {METHODS}")
        if not 0 <= self.steps <= num_train_steps:
            raise ValueError(f"sampler steps={self.steps} must be in 0..{num_train_steps}")
        if not 0 <= self.eta <= 1:
            raise ValueError(f"eta={self.eta} must be in [0, 1]")

    def timesteps(self, schedule) -> list[tuple[int, int]]:
        """(t, t_prev) pairs from noise to data; t_prev = -1 marks the final clean step."""
        if self.method == "ddpm":
            ts = list(range(schedule.num_steps - 1, -1, -1))
        elif self.method == "ddim":
            ts = schedule.ddim_timesteps(self.steps or schedule.num_steps)
        else:
            ts = schedule.linspace_timesteps(self.steps or schedule.num_steps)
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
    y = torch.randn((len(c), model.target_dim), generator=gen)
    predict, memory = noise_predictor([model], [c]), {}
    for t, t_prev in sampler.timesteps(model.schedule):
        eps = predict(y, t)[0]
        y = sampler.step(model.schedule, y, eps, t, t_prev, torch.randn(y.shape, generator=gen), memory)
    out = model.decode_targets(np.repeat(np.asarray(conditions), num_samples, axis=0), y)
    return out.reshape(len(conditions), num_samples, model.target_dim)
