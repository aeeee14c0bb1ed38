"""Noise schedules and the single-step DDPM / DDIM updates every sampler is built from.

Timesteps are integers 0..T-1 as in diffusers: index t holds beta_t and the cumulative
signal factor alpha_bar_t. The step functions take their Gaussian noise as an argument so
that composed samplers (SMC, correctors) and tests control every random draw.
"""
from __future__ import annotations

import math

import numpy as np
import torch

SCHEDULES = ("linear", "cosine")


class NoiseSchedule:
    """betas, alphas and cumulative alphas for T steps (float64, on the CPU)."""

    def __init__(self, kind: str = "cosine", num_steps: int = 100,
                 beta_start: float | None = None, beta_end: float | None = None):
        if kind not in SCHEDULES:
            raise ValueError(f"unknown noise schedule {kind!r}: use one of {SCHEDULES}")
        if not 2 <= int(num_steps) <= 10000:
            raise ValueError(f"num_steps={num_steps} is out of range: use 2..10000")
        self.kind = kind
        self.num_steps = int(num_steps)
        # Linear betas default to the continuous VP range (0.1, 20) spread over T steps, so
        # alpha_bar_T ~ 0 for any T. The DDPM paper's 1e-4..0.02 only reaches noise at T ~ 1000
        # (with T = 100 it leaves alpha_bar_T = 0.37: samples start far from N(0, I)).
        self.beta_start = float(beta_start) if beta_start is not None else 0.1 / self.num_steps
        self.beta_end = float(beta_end) if beta_end is not None else 20.0 / self.num_steps
        if kind == "linear":
            betas = torch.linspace(self.beta_start, self.beta_end, self.num_steps, dtype=torch.float64)
        else:
            betas = _cosine_betas(self.num_steps)
        self.betas = betas
        self.alphas = 1.0 - betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        # Python floats for the sampling loop: every tensor lookup is an indexing op plus a
        # conversion (a few microseconds), and each reverse step needs several.
        self._betas = betas.tolist()
        self._alpha_bars = self.alphas_cumprod.tolist()

    def beta(self, t: int) -> float:
        return self._betas[t]

    def alpha_bar(self, t: int) -> float:
        """alpha_bar_t as a float; t < 0 is the clean data (1.0)."""
        return self._alpha_bars[t] if t >= 0 else 1.0

    def to_dict(self) -> dict:
        return {"kind": self.kind, "num_steps": self.num_steps,
                "beta_start": self.beta_start, "beta_end": self.beta_end}

    @classmethod
    def from_dict(cls, d: dict) -> "NoiseSchedule":
        return cls(d["kind"], d["num_steps"], d.get("beta_start"), d.get("beta_end"))

    def add_noise(self, y0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Forward process q(y_t | y_0) for integer timesteps t (one per row)."""
        ab = self.alphas_cumprod.to(y0.dtype)[t].unsqueeze(-1)
        return ab.sqrt() * y0 + (1 - ab).sqrt() * noise

    def linspace_timesteps(self, num_inference_steps: int) -> list[int]:
        """DPM-Solver timesteps, diffusers' "linspace" spacing: T - 1 down; the last step reaches the clean sample."""
        if not 1 <= num_inference_steps <= self.num_steps:
            raise ValueError(f"num_inference_steps={num_inference_steps} must be in 1..{self.num_steps}")
        spaced = np.linspace(0, self.num_steps - 1, num_inference_steps + 1).round()[::-1][:-1]
        return list(dict.fromkeys(int(t) for t in spaced))  # rounding can repeat a step when N ~ T

    def fine_tail_timesteps(self, num_inference_steps: int, fine_steps: int) -> list[int]:
        """Strided steps over the noisy part, then each of the last `fine_steps` levels one by one.

        A strided ancestral step drops the spread of the clean sample the model is unsure of,
        which concentrates the samples; measured on the cabinet and round table, that harm comes
        almost entirely from the last ~10 % of the schedule (docs/RESULTS.md, section 3). So the
        first num_inference_steps - fine_steps steps are spread evenly from T - 1 down to
        fine_steps (just T - 1 when that is one step) and the rest take every level to the clean sample.
        """
        if not 1 <= fine_steps < min(num_inference_steps, self.num_steps):
            raise ValueError(f"fine_steps={fine_steps} must be in 1..{min(num_inference_steps, self.num_steps) - 1}"
                             f" (below the {num_inference_steps} inference steps)")
        coarse = np.linspace(self.num_steps - 1, fine_steps, num_inference_steps - fine_steps).round()
        return list(dict.fromkeys(int(t) for t in coarse)) + list(range(fine_steps - 1, -1, -1))

    def ddim_timesteps(self, num_inference_steps: int) -> list[int]:
        """Evenly spaced ("leading") timesteps, high to low, as diffusers' DDIMScheduler."""
        if not 1 <= num_inference_steps <= self.num_steps:
            raise ValueError(f"num_inference_steps={num_inference_steps} must be in 1..{self.num_steps}")
        ratio = self.num_steps // num_inference_steps
        return [i * ratio for i in range(num_inference_steps)][::-1]


def _cosine_betas(num_steps: int, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal's cosine schedule (diffusers' "squaredcos_cap_v2")."""
    def f(u):
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
    betas = [min(1 - f((i + 1) / num_steps) / f(i / num_steps), max_beta) for i in range(num_steps)]
    return torch.tensor(betas, dtype=torch.float64)


def ddpm_step(schedule: NoiseSchedule, y_t: torch.Tensor, eps: torch.Tensor, t: int,
              noise: torch.Tensor | None, variance: str = "small", clip: float | None = None) -> torch.Tensor:
    """Ancestral step y_t -> y_{t-1} (Ho et al. eq. 6-7); no noise is added at t = 0.

    Written through the predicted clean sample so that `clip` can bound it (diffusers'
    clip_sample): with the cosine schedule's first beta ~ 0.999 a slightly wrong eps is
    otherwise amplified 30x. variance "small" is the posterior variance (diffusers
    "fixed_small"), "large" is beta_t.
    """
    beta = schedule.beta(t)
    ab, ab_prev = schedule.alpha_bar(t), schedule.alpha_bar(t - 1)
    y0 = predicted_clean(y_t, eps, ab, clip)
    mean = (math.sqrt(ab_prev) * beta / (1 - ab)) * y0 + (math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab)) * y_t
    if t == 0 or noise is None:
        return mean
    return mean + math.sqrt(ddpm_variance(schedule, t, variance)) * noise


def predicted_clean(y_t: torch.Tensor, eps: torch.Tensor, ab: float, clip: float | None) -> torch.Tensor:
    y0 = (y_t - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
    return y0.clamp(-clip, clip) if clip else y0


def ddpm_variance(schedule: NoiseSchedule, t: int, variance: str = "small") -> float:
    beta = schedule.beta(t)
    if variance == "large":
        return beta
    if variance != "small":
        raise ValueError(f"unknown DDPM variance {variance!r}: use 'small' or 'large'")
    ab, ab_prev = schedule.alpha_bar(t), schedule.alpha_bar(t - 1)
    return max((1 - ab_prev) / (1 - ab) * beta, 1e-20)


def ddim_step(schedule: NoiseSchedule, y_t: torch.Tensor, eps: torch.Tensor, t: int, t_prev: int,
              eta: float, noise: torch.Tensor | None, clip: float | None = None) -> torch.Tensor:
    """DDIM update from t to t_prev (t_prev < 0 means the clean sample), Song et al. eq. 12.

    The served sampler's inner loop: written with fused in-place ops (about 7 per step instead
    of 12), since on 32 rows each op costs its dispatch, not its arithmetic.
    """
    ab, ab_prev = schedule.alpha_bar(t), schedule.alpha_bar(t_prev)
    signal, spread = math.sqrt(ab), math.sqrt(1 - ab)
    y0 = torch.sub(y_t, eps, alpha=spread).div_(signal)
    if clip:
        y0.clamp_(-clip, clip)
        eps = torch.sub(y_t, y0, alpha=signal).div_(spread)
    sigma = eta * math.sqrt((1 - ab_prev) / (1 - ab)) * math.sqrt(1 - ab / ab_prev)
    y_prev = torch.mul(eps, math.sqrt(max(1 - ab_prev - sigma**2, 0.0))).add_(y0, alpha=math.sqrt(ab_prev))
    if sigma > 0 and noise is not None:
        y_prev.add_(noise, alpha=sigma)
    return y_prev


def dpm_solver_step(schedule: NoiseSchedule, y_t: torch.Tensor, eps: torch.Tensor, t: int, t_prev: int,
                    noise: torch.Tensor | None, history: tuple | None = None, clip: float | None = None):
    """SDE-DPM-Solver++(2M) step from t to t_prev (Lu et al. 2022; diffusers' "sde-dpmsolver++", midpoint).

    Returns (y_prev, history for the next step). The first-order step is exactly the DDPM
    posterior step between t and t_prev; the second order corrects the predicted clean
    sample with its change since the previous step (`history`), which is what lets large
    strides keep the spread of the samples. t_prev < 0 returns the predicted clean sample.
    """
    ab = schedule.alpha_bar(t)
    alpha_s, sigma_s = math.sqrt(ab), math.sqrt(1 - ab)
    lam_s = math.log(alpha_s / sigma_s)
    y0 = predicted_clean(y_t, eps, ab, clip)
    if t_prev < 0:
        return y0, (y0, lam_s)
    ab_prev = schedule.alpha_bar(t_prev)
    alpha_t, sigma_t = math.sqrt(ab_prev), math.sqrt(1 - ab_prev)
    h = math.log(alpha_t / sigma_t) - lam_s
    target = y0
    if history is not None:
        y0_before, lam_before = history
        target = y0 + (0.5 * h / (lam_s - lam_before)) * (y0 - y0_before)
    decay = math.exp(-2.0 * h)
    y_prev = (sigma_t / sigma_s * math.exp(-h)) * y_t + (alpha_t * (1 - decay)) * target
    if noise is not None:
        y_prev = y_prev + (sigma_t * math.sqrt(1 - decay)) * noise
    return y_prev, (y0, lam_s)
