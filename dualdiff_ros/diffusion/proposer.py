"""From a condition to scored proposals: pick the sampler for the mode, watch the experts agree.

`propose` is what the placement service runs. In "joint" mode it composes the general prior
with the specialized model; when the diagnostics say the two experts do not overlap (their
product is nearly empty), it falls back to the specialized model, as the policy says,
so a joint answer is never worse than the better single expert.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .composition import Composition, CompositionConfig, compose
from .model import DiffusionModel
from .sampling import SamplerConfig, repeat_conditions, sample

MODES = ("joint", "general", "specialized")


@dataclass
class FallbackPolicy:
    """When joint sampling is not to be trusted, and what to return instead.

    The experts are judged not to overlap when the estimated log of the integral of
    p_g * p_s (normalized units) falls below `min_log_overlap`. That estimate is
    ~ -0.5 * d * log(4 * pi * s^2) for experts that agree and falls by half the squared
    distance between their supports (in units of their spread) as they separate.
    """

    enabled: bool = True
    min_log_overlap: float = -8.0
    fallback_mode: str = "specialized"

    def validate(self):
        if self.fallback_mode not in ("specialized", "general"):
            raise ValueError(f"fallback_mode={self.fallback_mode!r}: use 'specialized' or 'general'")

    def disagree(self, composition: Composition) -> bool:
        return bool(self.enabled and float(np.min(composition.log_overlap)) < self.min_log_overlap)


@dataclass
class Proposals:
    targets: np.ndarray               # [k, target_dim], raw units
    scores: np.ndarray                # [k], higher = more plausible
    mode_used: str
    message: str = ""
    diagnostics: dict = field(default_factory=dict)


@dataclass
class Proposer:
    composition: CompositionConfig = field(default_factory=lambda: CompositionConfig(method="smc"))
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    policy: FallbackPolicy = field(default_factory=FallbackPolicy)
    score_step_fraction: float = 0.1  # plausibility is judged at this noise level

    def propose(self, general: DiffusionModel | None, specialized: DiffusionModel | None, condition,
                num_samples: int, mode: str = "joint", seed: int = 0) -> Proposals:
        """Proposals for one condition. Raises ValueError for a bad mode or a missing model."""
        mode = mode or "joint"
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}: use one of {MODES} (empty = joint)")
        cond = np.asarray(condition, dtype=np.float64).reshape(1, -1)
        needed = {"joint": (general, specialized), "general": (general,), "specialized": (specialized,)}[mode]
        if any(m is None for m in needed):
            raise LookupError(f"mode {mode!r} needs a model that is not loaded")
        if mode != "joint":
            model = general if mode == "general" else specialized
            targets = sample(model, cond, num_samples, seed, self.sampler)[0]
            return Proposals(targets, self.plausibility([model], cond, targets, seed), mode)
        comp = compose(general, specialized, cond, num_samples, self.composition, seed)
        diag = {"ess_fraction": float(comp.ess_fraction[0]), "log_overlap": float(comp.log_overlap[0]),
                "score_cosine": float(comp.score_cosine[0]), "model_evaluations": comp.model_evaluations}
        if self.policy.disagree(comp):
            fallback = self.policy.fallback_mode
            model = specialized if fallback == "specialized" else general
            targets = sample(model, cond, num_samples, seed, self.sampler)[0]
            msg = (f"general and specialized models disagree (log overlap {diag['log_overlap']:.1f} < "
                   f"{self.policy.min_log_overlap}): fell back to {fallback}")
            return Proposals(targets, self.plausibility([model], cond, targets, seed), fallback, msg, diag)
        targets = comp.samples[0]
        return Proposals(targets, self.plausibility([general, specialized], cond, targets, seed), "joint", "",
                         diag)

    @torch.no_grad()
    def plausibility(self, models: list[DiffusionModel], condition, targets: np.ndarray, seed: int) -> np.ndarray:
        """Minus the denoising error of each target at a small noise level, summed over models.

        A target the models find typical is easy to denoise; one outside their support is not.
        """
        gen = torch.Generator().manual_seed(int(seed) + 1)
        first = models[0]
        y0 = first.encode_targets(np.repeat(condition, len(targets), axis=0), targets)
        t = max(1, int(self.score_step_fraction * first.schedule.num_steps))
        noise = torch.randn(y0.shape, generator=gen)
        y_t = first.schedule.add_noise(y0, noise, torch.full((len(y0),), t))
        err = torch.zeros(len(y0))
        for m in models:
            c = repeat_conditions(m, condition, len(y0))
            err += ((m.eps(y_t, t, c) - noise) ** 2).sum(-1)
        return (-err / len(models)).numpy().astype(np.float32)


def expected_log_overlap_scale(target_dim: int, spread: float) -> float:
    """Log of the integral of N(0, s^2 I)^2: the overlap of two identical experts of spread s."""
    return -0.5 * target_dim * math.log(4 * math.pi * spread**2)
