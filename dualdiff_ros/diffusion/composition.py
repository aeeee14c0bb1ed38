"""Sampling the product of a general prior and a specialized model, with diagnostics.

Three ways (the math and what goes wrong: docs/composition.md):
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
    # Feynman-Kac weights are computed only for steps whose beta (1 - ab_t / ab_t_prev for a strided
    # step) is at most this: one coarse step (cosine: beta up to 0.999) would blow the weights up.
    # This is not only near-pure noise: the linear schedule at T = 100 has betas 0.001..0.2, so its
    # upper half (t >= 50) is never weighted, and strided steps exceed 0.1 sooner.
    max_weight_beta: float = 0.1

    def validate(self, num_train_steps: int):
        if self.method not in METHODS:
            raise ValueError(f"composition method {self.method!r}: use one of {METHODS}")
        if self.weight_general < 0 or self.weight_specialized < 0 or \
                self.weight_general + self.weight_specialized <= 0:
            raise ValueError(f"weights ({self.weight_general}, {self.weight_specialized}) must be >= 0 "
                             "and not both 0")
        if self.method == "sum" and (self.weight_general, self.weight_specialized) != (1.0, 1.0):
            raise ValueError(f"weights ({self.weight_general}, {self.weight_specialized}) have no effect with "
                             "composition method 'sum' (the thesis's plain sum, weights 1): use method "
                             "'weighted' or 'smc' for a weighted product")
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
    """Sample p_g^a * p_s^b for each condition: `num_samples` particles per condition, one batch.

    1. Start: particles from N(0, I / (a + b)) (N(0, I) for "sum", the thesis's Algorithm 2).
    2. Predict: both experts' noise predictions in one stacked pass while t is above
       general_min_t_fraction of T; below it the specialized model refines alone.
    3. Combine: eps = a * eps_g + b * eps_s.
    4. Step: one ancestral step of the sampler ("smc" first reweights and resamples, and may add
       Langevin corrector steps after it).
    5. Diagnostics: effective sample size, overlap estimate, the experts' cosine (`_Trace`).
    """
    config = serving_composition(config or CompositionConfig(), general)
    check_compatible(general, specialized)
    schedule = general.schedule
    config.validate(schedule.num_steps)
    n_c, k, d = len(conditions), int(num_samples), general.target_dim
    a, b = config.weight_general, config.weight_specialized
    gen = torch.Generator().manual_seed(int(seed))
    cg, cs = repeat_conditions(general, conditions, k), repeat_conditions(specialized, conditions, k)
    w = config.sampler.guidance
    both, alone = noise_predictor([general, specialized], [cg, cs], w), noise_predictor([specialized], [cs], w)
    # 1. start
    y = torch.randn((n_c * k, d), generator=gen) * (1.0 if config.method == "sum" else 1.0 / math.sqrt(a + b))
    trace = _Trace(n_c, k, d, a, b, config.max_weight_beta)
    particles = _Particles(n_c, k, _log_z_prior(a, b, d)) if config.method == "smc" else None
    memory: dict = {}
    for t, t_prev in config.sampler.timesteps(schedule):
        guided = a > 0 and t >= config.general_min_t_fraction * schedule.num_steps
        # 2. predict, 3. combine
        if guided:
            experts = both(y, t)
            trace.record(experts, schedule.alpha_bar(t), schedule.alpha_bar(t_prev))
            eps = torch.add(experts[1] * b if b != 1 else experts[1], experts[0], alpha=a)
        else:
            eps = alone(y, t)[0]
            eps = eps * b if b != 1 else eps
            trace.evaluations += 1
        if particles is not None:
            idx = particles.reweight_and_resample(trace.last_increment() if guided else None,
                                                  config.resample_threshold, gen)
            y, eps = y[idx], eps[idx]
            reorder_memory(memory, idx)
        # 4. step
        y = config.sampler.step(schedule, y, eps, t, t_prev, torch.randn(y.shape, generator=gen), memory)
        if config.langevin_steps and guided and t_prev >= config.langevin_min_t_fraction * schedule.num_steps:
            y = _langevin(both, schedule, y, t_prev, a, b, config, gen)
            trace.evaluations += 2 * config.langevin_steps
    if particles is not None:
        y = y[particles.resample_all(gen)]
    # 5. diagnostics
    ess, log_overlap, cosine = trace.diagnostics(particles)
    samples = general.decode_targets(np.repeat(np.asarray(conditions), k, axis=0), y).reshape(n_c, k, d)
    return Composition(samples, ess, log_overlap, cosine, trace.evaluations)


class _Trace:
    """What the experts said along the way: their Gram matrix per particle, for weights and diagnostics.

    Without SMC the Feynman-Kac weights change nothing in the samples; they are summed up only
    once, after the loop, for the ESS and overlap diagnostics.
    """

    def __init__(self, n_c: int, k: int, d: int, a: float, b: float, max_weight_beta: float):
        self.n_c, self.k, self.d, self.a, self.b = n_c, k, d, a, b
        self.max_weight_beta = max_weight_beta
        self.grams: list[torch.Tensor] = []
        self.betas: list[tuple[float, float]] = []
        self.evaluations = 0

    def record(self, experts: torch.Tensor, ab: float, ab_prev: float) -> None:
        self.grams.append(torch.einsum("ibd,jbd->bij", experts, experts))
        beta = 1.0 - ab / ab_prev
        # Steps whose beta exceeds max_weight_beta contribute no weight (see CompositionConfig).
        self.betas.append((beta if beta <= self.max_weight_beta else 0.0, 1.0 - ab))
        self.evaluations += 2

    def last_increment(self) -> torch.Tensor:
        """Log-weight increment [n_c, k] of the step just recorded."""
        inc = _log_weight_increment(self.grams[-1].unsqueeze(0), self.betas[-1:], self.a, self.b, self.d)
        return inc.view(self.n_c, self.k)

    def diagnostics(self, particles: "_Particles | None") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(smallest ESS/K along the path, log overlap estimate, mean cosine) per condition."""
        n_c, k = self.n_c, self.k
        if particles is not None:
            ess, log_w, log_z = particles.ess_min, particles.final_log_w, particles.log_z
        else:
            ess = torch.ones(n_c, dtype=torch.float64)
            log_w = torch.zeros(n_c, k, dtype=torch.float64)
            log_z = torch.full((n_c,), _log_z_prior(self.a, self.b, self.d), dtype=torch.float64)
            if self.grams:
                path = torch.cumsum(_log_weight_increment(torch.stack(self.grams), self.betas, self.a, self.b,
                                                          self.d), dim=0)
                ess = _ess_fraction(path.view(-1, n_c, k)).min(0).values.clamp(max=1.0)
                log_w = path[-1].view(n_c, k)
        cosine = _mean_cosine(torch.stack(self.grams), n_c, k) if self.grams else torch.zeros(n_c, dtype=torch.float64)
        log_overlap = log_z + torch.logsumexp(log_w, dim=1) - math.log(k)
        return ess.numpy(), log_overlap.numpy(), cosine.numpy()


class _Particles:
    """SMC state per condition: log-weights, the running log-normalizer, the smallest ESS seen."""

    def __init__(self, n_c: int, k: int, log_z0: float):
        self.log_w = torch.zeros(n_c, k, dtype=torch.float64)
        self.log_z = torch.full((n_c,), log_z0, dtype=torch.float64)
        self.ess_min = torch.ones(n_c, dtype=torch.float64)
        self.final_log_w = self.log_w

    def reweight_and_resample(self, increment: torch.Tensor | None, threshold: float, gen) -> torch.Tensor:
        """Add a step's log-weights, then resample the conditions whose ESS/K fell below threshold."""
        if increment is not None:
            self.log_w = self.log_w + increment
        self.ess_min = torch.minimum(self.ess_min, _ess_fraction(self.log_w))
        idx, self.log_w, self.log_z = _maybe_resample(self.log_w, self.log_z, threshold, gen)
        return idx

    def resample_all(self, gen) -> torch.Tensor:
        """The final resampling of every condition; the weights before it feed the overlap estimate."""
        self.final_log_w = self.log_w
        idx, self.log_w, _ = _maybe_resample(self.log_w, self.log_z, 1.0 + 1e-9, gen)
        return idx


def _log_weight_increment(gram: torch.Tensor, betas: list, a: float, b: float, d: int) -> torch.Tensor:
    """Feynman-Kac log-weight increments [steps, particles] for sampling p_g^a p_s^b with the weighted score.

    From the VP Fokker-Planck equation of each noised marginal: the weighted-score SDE
    misses a*b*<s_g, s_s> + (a^2 - a)/2 |s_g|^2 + (b^2 - b)/2 |s_s|^2 - (a + b - 1) d / 2
    per unit of beta (the last term, the same for every particle, matters only for the
    overlap estimate). For a = b = 1 the particle-dependent part is <s_g, s_s>
    (docs/composition.md). `gram` [steps, particles, 2, 2] holds the noise predictions'
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


def _langevin(both, schedule, y, t, a, b, config, gen):
    """Unadjusted Langevin steps on the weighted score at level t (Song et al.'s step-size rule).

    `both` is compose's predictor of the two experts (noise_predictor), guidance included.
    """
    var = 1.0 - schedule.alpha_bar(t)
    for _ in range(config.langevin_steps):
        experts = both(y, t)
        score = -(a * experts[0] + b * experts[1]) / math.sqrt(var)
        z = torch.randn(y.shape, generator=gen)
        # Norms averaged over the batch, as in Song et al.: per-sample norms explode near modes.
        step = 2 * (config.langevin_snr * z.norm(dim=-1).mean() / score.norm(dim=-1).mean().clamp_min(1e-12)) ** 2
        y = y + step * score + math.sqrt(2 * step) * z
    return y
