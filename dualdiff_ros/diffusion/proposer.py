"""From a condition to scored proposals: pick the sampler for the mode, check the experts agree.

`Proposer.propose` is what the placement service runs. In "joint" mode it composes the
general prior with the specialized model. The general prior then judges the composed
proposals: each one is noised a little and denoised; a proposal inside the prior's support
is denoised about as well as the prior's own training data (its 99th-percentile error is
calibrated once, at training time). When fewer than `min_agreement` of the proposals are
typical for the prior, the two experts do not overlap here: the proposer falls back to the
specialized model and says so, so a joint answer is never worse than the specialist's.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from .composition import CompositionConfig, compose
from .model import DiffusionModel, noise_predictor
from .sampling import SamplerConfig, repeat_conditions, sample

MODES = ("joint", "general", "specialized")
CHECK_FRACTION = 0.1     # plausibility is judged at this fraction of the noise schedule
CALIBRATION_QUANTILE = 0.99


@dataclass
class FallbackPolicy:
    """When a joint answer is not to be trusted, and what to return instead."""

    enabled: bool = True
    min_agreement: float = 0.5          # least fraction of joint proposals the prior must find typical
    fallback_mode: str = "specialized"

    def validate(self):
        if self.fallback_mode not in ("specialized", "general"):
            raise ValueError(f"fallback_mode={self.fallback_mode!r}: use 'specialized' or 'general'")
        if not 0.0 <= self.min_agreement <= 1.0:
            raise ValueError(f"min_agreement={self.min_agreement} must be in [0, 1]")


@dataclass
class Proposals:
    targets: np.ndarray               # [k, target_dim], raw units
    scores: np.ndarray                # [k], higher = more plausible
    mode_used: str
    message: str = ""
    diagnostics: dict = field(default_factory=dict)


def default_sampler() -> SamplerConfig:
    """The served reverse process: at most 30 steps, the last 10 noise levels taken one by one.

    Strided ancestral steps concentrate the samples, but almost only in the last ~10 % of the
    schedule; striding over the rest costs nothing measurable. On the cabinet and round table
    this matched 100 DDPM steps in accuracy and coverage at about a third of the network passes
    (docs/RESULTS.md, section 3). Models with at most 30 levels are sampled at every level.
    Guidance 1.5 on the map (navigate-to models only; no other model has a droppable block) raised
    the raw validity of demo-size navigate-to proposers by 0.02-0.03 over 1.0, and 2.0 fell back
    (docs/RESULTS.md, section 4).
    """
    return SamplerConfig(method="ddim", steps=30, fine_steps=10, eta=1.0, guidance=1.5)


def default_composition() -> CompositionConfig:
    """The served product: both experts at high and mid noise, the specialist refines alone.

    Measured best on the synthetic domains (docs/RESULTS.md): an exact product of two
    learned densities doubles the blur where their edges coincide and loses coverage. Where
    the general prior stops guiding is left to the prior's recipe (`serving_composition`):
    0.35 of T by default, 0 (the plain sum throughout) for navigate-to.
    """
    return CompositionConfig(method="sum", general_min_t_fraction=None, sampler=default_sampler())


@dataclass
class Proposer:
    """Proposals from one model or the composed two, with the fallback policy.

    Classifier-free guidance is set in one place, `sampler.guidance`: the composition samples
    with the same scale (set here on construction, `replace` included), so the product and a
    model alone never disagree on it.
    """

    composition: CompositionConfig = field(default_factory=default_composition)
    sampler: SamplerConfig = field(default_factory=default_sampler)
    policy: FallbackPolicy = field(default_factory=FallbackPolicy)

    def __post_init__(self):
        if self.composition.sampler.guidance != self.sampler.guidance:
            self.composition = replace(self.composition,
                                       sampler=replace(self.composition.sampler, guidance=self.sampler.guidance))

    def with_guidance(self, guidance: float) -> "Proposer":
        """This proposer with classifier-free guidance `guidance`, for one model alone and for the product."""
        return replace(self, sampler=replace(self.sampler, guidance=guidance))

    def passes_per_sample(self, schedule, mode: str = "joint", guided: bool = False) -> int:
        """Network passes one proposal can cost (each expert counted): what a request budget counts.

        The worst case: a joint request counts its composition, the agreement check and the
        fallback's own sampling; an unset general_min_t_fraction counts as guiding throughout.
        `guided`: the models have a droppable condition block, so guidance != 1 asks them twice.
        """
        guide = 2 if guided and self.sampler.guidance != 1 else 1  # asked with and without its block
        single = guide * len(self.sampler.timesteps(schedule)) + 1  # sampling + the plausibility score
        if (mode or "joint") != "joint":
            return single
        comp, n = self.composition, schedule.num_steps
        passes = 2  # both experts score the joint proposals
        for t, t_prev in comp.sampler.timesteps(schedule):
            both = t >= (comp.general_min_t_fraction or 0.0) * n
            passes += (2 if both else 1) * guide
            if comp.langevin_steps and both and t_prev >= comp.langevin_min_t_fraction * n:
                passes += 2 * comp.langevin_steps
        return passes + (single if self.policy.enabled else 0)

    def propose(self, general: DiffusionModel | None, specialized: DiffusionModel | None, condition,
                num_samples: int, mode: str = "joint", seed: int = 0) -> Proposals:
        """Proposals for one condition. ValueError for a bad mode; LookupError when a needed model is None."""
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
            return Proposals(targets, -denoising_error(model, cond, targets, seed), mode)
        comp = compose(general, specialized, cond, num_samples, self.composition, seed)
        targets = comp.samples[0]
        err_g, err_s = denoising_errors([general, specialized], cond, targets, seed)
        agreement = general_agreement(general, err_g)
        diag = {"ess_fraction": float(comp.ess_fraction[0]), "log_overlap": float(comp.log_overlap[0]),
                "score_cosine": float(comp.score_cosine[0]), "model_evaluations": comp.model_evaluations,
                "general_agreement": agreement}
        if self.policy.enabled and agreement < self.policy.min_agreement:
            fallback = self.policy.fallback_mode
            model = specialized if fallback == "specialized" else general
            targets = sample(model, cond, num_samples, seed, self.sampler)[0]
            msg = (f"the general prior finds only {agreement:.0%} of the joint proposals typical "
                   f"(< {self.policy.min_agreement:.0%}): the experts do not overlap here; fell back to {fallback}")
            return Proposals(targets, -denoising_error(model, cond, targets, seed), fallback, msg, diag)
        return Proposals(targets, -(err_g + err_s) / 2, "joint", "", diag)

    def propose_rows(self, model: DiffusionModel, conditions: np.ndarray, seed: int = 0) -> Proposals:
        """One proposal per condition row [n, c], from one model in one batch (a home read place by place)."""
        rows = np.asarray(conditions, dtype=np.float64)
        targets = sample(model, rows, 1, seed, self.sampler)[:, 0]
        return Proposals(targets, -denoising_error(model, rows, targets, seed), "specialized")


def denoising_error(model: DiffusionModel, condition, targets: np.ndarray, seed: int = 0) -> np.ndarray:
    """Squared error of the model's noise prediction for each target, noised to CHECK_FRACTION of T.

    A target the model finds typical is easy to denoise; one outside its support is not.
    `condition` is one row (shared) or one row per target.
    """
    return denoising_errors([model], condition, targets, seed)[0]


@torch.inference_mode()
def denoising_errors(models: list[DiffusionModel], condition, targets: np.ndarray, seed: int = 0) -> list[np.ndarray]:
    """`denoising_error` of several composable models (one schedule, one target space) in one batched pass."""
    model = models[0]
    targets = np.asarray(targets, dtype=np.float64)
    cond = np.asarray(condition, dtype=np.float64).reshape(-1, model.condition_dim) if model.condition_dim \
        else np.zeros((len(targets), 0))
    if len(cond) == 1:
        cond = np.repeat(cond, len(targets), axis=0)
    gen = torch.Generator().manual_seed(int(seed) + 7919)
    y0 = model.encode_targets(cond, targets)
    t = max(1, int(CHECK_FRACTION * model.schedule.num_steps))
    noise = torch.randn(y0.shape, generator=gen)
    y_t = model.schedule.add_noise(y0, noise, torch.full((len(y0),), t))
    conditions = [repeat_conditions(m, cond, 1) if m.condition_dim else torch.zeros(len(y0), 0) for m in models]
    eps = noise_predictor(models, conditions)(y_t, t)
    return list(((eps - noise) ** 2).sum(-1).numpy().astype(np.float32))


def calibrate_plausibility(model: DiffusionModel, conditions, targets, seed: int = 0, limit: int = 4096) -> dict:
    """The error quantile on the model's own training data; stored in its metadata at training time."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(targets), size=min(limit, len(targets)), replace=False)
    err = denoising_error(model, np.asarray(conditions)[idx], np.asarray(targets)[idx], seed)
    calibration = {"check_fraction": CHECK_FRACTION, "quantile": CALIBRATION_QUANTILE,
                   "error_threshold": float(np.quantile(err, CALIBRATION_QUANTILE))}
    model.metadata["plausibility"] = calibration
    return calibration


def general_agreement(general: DiffusionModel, errors: np.ndarray) -> float:
    """Fraction of proposals whose error under the prior is within its calibrated threshold (1 if uncalibrated)."""
    calibration = general.metadata.get("plausibility")
    if not calibration:
        return 1.0
    return float(np.mean(errors <= calibration["error_threshold"]))
