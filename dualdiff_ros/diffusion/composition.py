"""Sampling the product of a general prior and a specialized model, with diagnostics.

Three ways (see docs/composition.md and ../shared/notes/composition.md):
- "sum": the thesis's Algorithm 2, exactly: start from N(0, I), add the two noise
  predictions, take an ordinary ancestral step. Biased: it follows the product of the
  *noised* marginals, not the noised product.
- "weighted": eps = w_g*eps_g + w_s*eps_s (geometric mixture p_g^w_g * p_s^w_s),
  started from N(0, I/(w_g + w_s)).
- "smc": the weighted proposal corrected by Feynman-Kac weights and per-condition
  resampling (Skreta et al. 2025), optionally with Langevin correctors (Du et al. 2023).

Both experts are evaluated once per step on the whole batch (every particle of every
condition). Every result carries diagnostics per condition: the effective sample size,
an estimate of log of the integral of p_g * p_s (the experts' overlap), and the mean cosine between
the experts' noise predictions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from .model import DiffusionModel, noise_predictor
from .sampling import SamplerConfig, reorder_memory, repeat_conditions

METHODS = ("sum", "weighted", "smc")


@dataclass
class CompositionConfig:
    method: str = "smc"
    weight_general: float = 1.0
    weight_specialized: float = 1.0
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    resample_threshold: float = 0.5      # resample a condition's particles when ESS/K falls below
    langevin_steps: int = 0              # ULA corrector steps per noise level (0 = none)
    langevin_snr: float = 0.1            # corrector step size, Song et al.'s signal-to-noise rule
    langevin_min_t_fraction: float = 0.2  # correct only at levels t >= this fraction of T
    general_min_t_fraction: float | None = 0.0  # below this fraction of T the specialized model refines
                                                # alone; None: the general prior's `serving` metadata says
    max_weight_beta: float = 0.1         # skip FK weights of larger-beta steps: near-pure noise, where
                                         # one coarse step (cosine: up to 0.999) would blow the weights up

    def validate(self, num_train_steps: int):
        if self.method not in METHODS:
            raise ValueError(f"composition method {self.method!r}: use one of {METHODS}")
        if self.weight_general < 0 or self.weight_specialized < 0 or \
                self.weight_general + self.weight_specialized <= 0:
            raise ValueError(f"weights ({self.weight_general}, {self.weight_specialized}) must be >= 0 "
                             "and not both 0")
        if not 0 < self.resample_threshold <= 1:
            raise ValueError(f"resample_threshold={self.resample_threshold} must be in (0, 1]")
        if self.langevin_steps < 0:
            raise ValueError(f"langevin_steps={self.langevin_steps} must be >= 0")
        if self.method == "smc" and self.sampler.method != "ddpm" and 0 < self.sampler.steps < num_train_steps:
            raise ValueError(f"composition method 'smc' with sampler.steps={self.sampler.steps}: the SMC weights "
                             "are exact only step by step; use sampler.steps 0 (every step) or method 'sum'")
        if self.general_min_t_fraction is not None and not 0 <= self.general_min_t_fraction <= 1:
            raise ValueError(f"general_min_t_fraction={self.general_min_t_fraction} must be in [0, 1] "
                             "(or unset: the general prior's recommendation)")
        if self.sampler.start != "noise":
            raise ValueError(f"sampler start {self.sampler.start!r} applies to one model; a composition starts "
                             "from noise (use start 'noise')")
        self.sampler.validate(num_train_steps)


@dataclass
class Composition:
    """Samples [n_conditions, k, target_dim] (raw units) and per-condition diagnostics."""

    samples: np.ndarray
    ess_fraction: np.ndarray      # smallest ESS/K seen along the trajectory, in (0, 1]
    log_overlap: np.ndarray       # estimate of log of the integral of p_g p_s (normalized units)
    score_cosine: np.ndarray      # mean cosine of eps_g and eps_s over steps and particles
    model_evaluations: int        # network passes per particle (both experts counted)


def check_compatible(general: DiffusionModel, specialized: DiffusionModel):
    """The two experts must predict noise in one space: same schedule, same target normalizer."""
    if general.schedule.to_dict() != specialized.schedule.to_dict():
        raise ValueError("general and specialized models use different noise schedules "
                         f"({general.schedule.to_dict()} vs {specialized.schedule.to_dict()}); retrain one")
    if general.target_normalizer.to_dict() != specialized.target_normalizer.to_dict():
        raise ValueError("general and specialized models use different target normalizers; train the "
                         "specialized model with the general data's normalizer")
    if general.relative_targets != specialized.relative_targets:
        raise ValueError("one model learns targets relative to the condition and the other does not; "
                         "train the specialized model from the general prior's settings")
    if general.condition_dim != specialized.condition_dim:
        raise ValueError(f"condition sizes differ: general {general.condition_dim}, "
                         f"specialized {specialized.condition_dim}")


DEFAULT_GENERAL_MIN_T_FRACTION = 0.35


def serving_composition(config: CompositionConfig, general: DiffusionModel) -> CompositionConfig:
    """`config` with an unset general_min_t_fraction taken from the general prior's metadata.

    Where the prior should stop guiding depends on the domain (measured, docs/RESULTS.md): the
    recipe that trains a prior records its measured best under metadata["serving"]; priors
    without one get DEFAULT_GENERAL_MIN_T_FRACTION.
    """
    if config.general_min_t_fraction is not None:
        return config
    hint = general.metadata.get("serving", {}).get("general_min_t_fraction", DEFAULT_GENERAL_MIN_T_FRACTION)
    return replace(config, general_min_t_fraction=float(hint))


@torch.inference_mode()
def compose(general: DiffusionModel, specialized: DiffusionModel, conditions, num_samples: int,
            config: CompositionConfig | None = None, seed: int = 0) -> Composition:
    config = serving_composition(config or CompositionConfig(), general)
    check_compatible(general, specialized)
    schedule = general.schedule
    config.validate(schedule.num_steps)
    n_c, k, d = len(conditions), int(num_samples), general.target_dim
    a, b = config.weight_general, config.weight_specialized
    if config.method == "sum":
        a = b = 1.0
    gen = torch.Generator().manual_seed(int(seed))
    cg = repeat_conditions(general, conditions, k)
    cs = repeat_conditions(specialized, conditions, k)
    init_std = 1.0 if config.method == "sum" else 1.0 / math.sqrt(a + b)
    y = torch.randn((n_c * k, d), generator=gen) * init_std
    log_w = torch.zeros(n_c, k, dtype=torch.float64)
    log_z = torch.full((n_c,), _log_z_prior(a, b, d), dtype=torch.float64)
    ess_min = torch.ones(n_c, dtype=torch.float64)
    # Per step with both experts: their Gram matrix per particle, and (beta, 1 - alpha_bar) for its weight.
    # Without resampling the weights are only diagnostics: they are summed up after the loop.
    grams, betas, evals, memory = [], [], 0, {}
    both, alone = noise_predictor([general, specialized], [cg, cs]), noise_predictor([specialized], [cs])
    a_full = a
    for t, t_prev in config.sampler.timesteps(schedule):
        a = a_full if t >= config.general_min_t_fraction * schedule.num_steps else 0.0
        ab = schedule.alpha_bar(t)
        ab_prev = schedule.alpha_bar(t_prev)
        if a:
            experts = both(y, t)
            grams.append(torch.einsum("ibd,jbd->bij", experts, experts))
            beta = 1.0 - ab / ab_prev
            betas.append((beta if beta <= config.max_weight_beta else 0.0, 1.0 - ab))
            evals += 2
            eps = torch.add(experts[1] * b if b != 1 else experts[1], experts[0], alpha=a)
        else:  # the specialist refines alone: the general is not evaluated
            eps = alone(y, t)[0]
            eps = eps * b if b != 1 else eps
            evals += 1
        if config.method == "smc":
            if a:
                log_w += _log_weight_increment(grams[-1].unsqueeze(0), betas[-1:], a, b, d).view(n_c, k)
            ess_min = torch.minimum(ess_min, _ess_fraction(log_w))
            idx, log_w, log_z = _maybe_resample(log_w, log_z, config.resample_threshold, gen)
            y, eps = y[idx], eps[idx]
            reorder_memory(memory, idx)
        y = config.sampler.step(schedule, y, eps, t, t_prev, torch.randn(y.shape, generator=gen), memory)
        if config.langevin_steps and t_prev >= config.langevin_min_t_fraction * schedule.num_steps and a:
            y = _langevin(general, specialized, y, t_prev, cg, cs, a, b, config, gen)
            evals += 2 * config.langevin_steps
    gram = torch.stack(grams) if grams else None  # [steps with both experts, particles, 2, 2]
    if config.method != "smc" and grams:
        log_w_path = torch.cumsum(_log_weight_increment(gram, betas, a_full, b, d), dim=0)
        ess_min = _ess_fraction(log_w_path.view(-1, n_c, k)).min(0).values.clamp(max=1.0)
        log_w = log_w_path[-1].view(n_c, k)
    cosine = _mean_cosine(gram, n_c, k) if grams else torch.zeros(n_c, dtype=torch.float64)
    log_z = log_z + torch.logsumexp(log_w, dim=1) - math.log(k)
    if config.method == "smc":
        idx, log_w, _ = _maybe_resample(log_w, log_z, 1.0 + 1e-9, gen)
        y = y[idx]
    samples = general.decode_targets(np.repeat(np.asarray(conditions), k, axis=0), y).reshape(n_c, k, d)
    return Composition(samples, ess_min.numpy(), log_z.numpy(), cosine.numpy(), evals)


def _log_weight_increment(gram: torch.Tensor, betas: list, a: float, b: float, d: int) -> torch.Tensor:
    """Feynman-Kac log-weight increments [steps, particles] for sampling p_g^a p_s^b with the weighted score.

    From the VP Fokker-Planck equation of each noised marginal: the weighted-score SDE
    misses a*b*<s_g, s_s> + (a^2 - a)/2 |s_g|^2 + (b^2 - b)/2 |s_s|^2 - (a + b - 1) d / 2
    per unit of beta (the last term, the same for every particle, matters only for the
    overlap estimate). For a = b = 1 the particle-dependent part is <s_g, s_s>
    (../shared/notes/composition.md). `gram` [steps, particles, 2, 2] holds the noise predictions'
    Gram matrix per particle and step (s = -eps / sqrt(1 - alpha_bar)); `betas` holds
    (beta, 1 - alpha_bar) per step, beta = 0 for steps whose weights are skipped.
    """
    gram = gram.double()
    beta, var = torch.tensor(betas, dtype=torch.float64).unsqueeze(-1).unbind(1)
    rate = a * b * gram[..., 0, 1] + (a * a - a) / 2 * gram[..., 0, 0] + (b * b - b) / 2 * gram[..., 1, 1]
    return beta * (rate / var - (a + b - 1) * d / 2)


def _mean_cosine(gram: torch.Tensor, n_c: int, k: int) -> torch.Tensor:
    """Mean cosine between the two experts' noise predictions per condition, over steps and particles."""
    gram = gram.double()
    cos = gram[..., 0, 1] / (gram[..., 0, 0] * gram[..., 1, 1]).sqrt().clamp_min(1e-12)
    return cos.view(len(gram), n_c, k).mean((0, 2))


def _log_z_prior(a: float, b: float, d: int) -> float:
    """Log of the integral of N(0,I)^a N(0,I)^b: where the overlap estimate starts at t = T."""
    return d * (1 - a - b) / 2 * math.log(2 * math.pi) - d / 2 * math.log(a + b)


def _ess_fraction(log_w: torch.Tensor) -> torch.Tensor:
    w = torch.softmax(log_w, dim=1)
    return 1.0 / (w * w).sum(1) / log_w.shape[1]


def _maybe_resample(log_w, log_z, threshold, gen):
    """Systematic resampling of the conditions whose ESS/K < threshold; returns flat indices."""
    n_c, k = log_w.shape
    need = _ess_fraction(log_w) < threshold
    idx = torch.arange(n_c * k).view(n_c, k)
    if need.any():
        rows = need.nonzero().squeeze(1)
        lw = log_w[rows]
        log_z = log_z.clone()
        log_z[rows] += torch.logsumexp(lw, dim=1) - math.log(k)
        cdf = torch.cumsum(torch.softmax(lw, dim=1), dim=1)
        u = (torch.rand(len(rows), 1, generator=gen, dtype=torch.float64) + torch.arange(k)) / k
        pick = torch.searchsorted(cdf, u).clamp(max=k - 1)
        idx[rows] = rows.unsqueeze(1) * k + pick
        log_w = log_w.clone()
        log_w[rows] = 0.0
    return idx.reshape(-1), log_w, log_z


def _langevin(general, specialized, y, t, cg, cs, a, b, config, gen):
    """Unadjusted Langevin steps on the weighted score at level t (Song et al.'s step-size rule)."""
    var = 1.0 - general.schedule.alpha_bar(t)
    for _ in range(config.langevin_steps):
        score = -(a * general.eps(y, t, cg) + b * specialized.eps(y, t, cs)) / math.sqrt(var)
        z = torch.randn(y.shape, generator=gen)
        # Norms averaged over the batch, as in Song et al.: per-sample norms explode near modes.
        step = 2 * (config.langevin_snr * z.norm(dim=-1).mean() / score.norm(dim=-1).mean().clamp_min(1e-12)) ** 2
        y = y + step * score + math.sqrt(2 * step) * z
    return y
