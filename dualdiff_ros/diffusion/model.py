"""A trained diffusion model: denoiser + schedule + the normalizers it was trained with.

With `relative_targets` the model learns targets relative to the condition's first
target_dim numbers (the object's or the furniture's position): y_model = y - c[:d]. The
network then never has to learn the translation, only the shape of the answer around
the thing it is conditioned on (the thesis's robot data used object-frame offsets too).
"""
from __future__ import annotations

import copy
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .denoisers import StackedMLP, _BoundKernel, build_denoiser, stacked_kernel_plan
from .normalizer import Normalizer
from .schedules import NoiseSchedule


@dataclass
class DiffusionModel:
    """Everything needed to sample y | c. `metadata` travels into the checkpoint."""

    denoiser: nn.Module
    schedule: NoiseSchedule
    condition_normalizer: Normalizer | None
    target_normalizer: Normalizer
    architecture: dict
    metadata: dict = field(default_factory=dict)
    relative_targets: bool = False

    @classmethod
    def create(cls, architecture: dict, schedule: NoiseSchedule, target_normalizer: Normalizer,
               condition_normalizer: Normalizer | None, metadata: dict | None = None,
               relative_targets: bool = False, seed: int | None = None) -> "DiffusionModel":
        """Fresh, untrained model; `architecture` is {"name": ..., **options}.

        With relative_targets, `target_normalizer` must be fitted on relative targets
        (see `model_space_targets`). With `seed`, the initial weights come from it alone (torch's
        generator forked, so nothing else's random numbers move): one process and every rank of
        a torchrun start from the same weights, whatever drew random numbers before.
        """
        options = {k: v for k, v in architecture.items() if k != "name"}
        cond_dim = condition_normalizer.dim if condition_normalizer is not None else 0
        if relative_targets and cond_dim < target_normalizer.dim:
            raise ValueError("relative targets need a condition at least as long as the target")
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            denoiser = build_denoiser(architecture["name"], target_normalizer.dim, cond_dim,
                                      num_steps=schedule.num_steps, **options)
        if hasattr(denoiser, "use_schedule"):  # a network that reads alpha_bar_t (the set's kernel readout)
            denoiser.use_schedule(schedule.alphas_cumprod)
        return cls(denoiser, schedule, condition_normalizer, target_normalizer, dict(architecture),
                   dict(metadata or {}), relative_targets)

    @property
    def target_dim(self) -> int:
        return self.target_normalizer.dim

    @property
    def condition_dim(self) -> int:
        return self.condition_normalizer.dim if self.condition_normalizer is not None else 0

    def clone(self) -> "DiffusionModel":
        return DiffusionModel(copy.deepcopy(self.denoiser), self.schedule, self.condition_normalizer,
                              self.target_normalizer, dict(self.architecture), copy.deepcopy(self.metadata),
                              self.relative_targets)

    def encode_targets(self, conditions, targets) -> torch.Tensor:
        """Raw targets -> normalized model-space float32 tensor."""
        y = model_space_targets(conditions, targets, self.relative_targets)
        return torch.as_tensor(self.target_normalizer.normalize(y), dtype=torch.float32)

    def decode_targets(self, conditions, y: torch.Tensor) -> np.ndarray:
        """Normalized model-space samples [n, d] -> raw targets (conditions: one row per sample)."""
        out = self.target_normalizer.denormalize(y.double().numpy())
        if self.relative_targets:
            out = out + np.asarray(conditions, dtype=np.float64)[:, : self.target_dim]
        return out

    def normalize_conditions(self, conditions) -> torch.Tensor:
        """Raw conditions [n, cond_dim] (numpy or tensor) -> normalized float32 tensor."""
        c = np.asarray(conditions, dtype=np.float64).reshape(len(conditions), -1)
        if c.shape[1] != self.condition_dim:
            raise ValueError(f"condition has {c.shape[1]} numbers, this model needs {self.condition_dim}")
        if self.condition_normalizer is not None:
            c = self.condition_normalizer.normalize(c)
        return torch.as_tensor(c, dtype=torch.float32)

    @torch.inference_mode()
    def eps(self, y_t: torch.Tensor, t: int, c_norm: torch.Tensor) -> torch.Tensor:
        """Noise prediction at integer step t for a batch (normalized space)."""
        tt = torch.full((len(y_t),), t, dtype=torch.long)
        return self.denoiser(y_t, tt, c_norm)


def null_condition(model: DiffusionModel, c_norm: torch.Tensor) -> torch.Tensor | None:
    """`c_norm` with the model's droppable condition block set to its "absent" value, or None.

    A model trained with a block of its condition zeroed for part of the rows (navigate-to: the
    map flag and patch) records the block's columns as metadata["droppable_condition"] = [start,
    stop]; the absent value is raw 0 in the model's normalized units.
    """
    block = model.metadata.get("droppable_condition")
    if not block or model.condition_normalizer is None:
        return None
    start, stop = int(block[0]), int(block[1])
    null = c_norm.clone()
    zeros = model.condition_normalizer.normalize(np.zeros(model.condition_dim))[start:stop]
    null[:, start:stop] = torch.as_tensor(zeros, dtype=null.dtype)
    return null


def noise_predictor(models: list[DiffusionModel], conditions: list[torch.Tensor], guidance: float = 1.0):
    """A function (y, t) -> eps of each model [n_models, B, d] for fixed normalized conditions.

    With `guidance` w != 1, a model with a droppable condition block (`null_condition`) is asked
    twice, with and without the block, and answers eps(c0) + w (eps(c) - eps(c0)): classifier-free
    guidance (Ho & Salimans, 2022) towards what the block says. Conditions whose block is already
    absent are asked once (the two would agree). w = 1 is the plain conditional model.
    """
    plan_models, plan_conditions, pairs = [], [], []
    for m, c in zip(models, conditions):
        null = null_condition(m, c) if guidance != 1.0 else None
        if null is None or torch.equal(null, c):
            pairs.append((len(plan_models), None))
            plan_models.append(m)
            plan_conditions.append(c)
        else:
            pairs.append((len(plan_models), len(plan_models) + 1))
            plan_models += [m, m]
            plan_conditions += [c, null]
    predict = _plain_predictor(plan_models, plan_conditions)
    if len(plan_models) == len(models):
        return predict
    w = float(guidance)

    def guided(y: torch.Tensor, t: int) -> torch.Tensor:
        eps = predict(y, t)
        return torch.stack([eps[i] if j is None else torch.lerp(eps[j], eps[i], w) for i, j in pairs])
    return guided


def _plain_predictor(models: list[DiffusionModel], conditions: list[torch.Tensor]):
    """The unguided predictor: one StackedMLP where it can, else one forward pass per model.

    Models whose networks are ConditionalMLPs of one shape run as one StackedMLP (one batched
    matmul per layer, time embeddings and condition projections computed once).
    """
    nets, conditions = zip(*(plain_network(m.denoiser, c) for m, c in zip(models, conditions)))
    try:
        if any(isinstance(net, _BoundKernel) for net in nets):
            return stacked_kernel_plan(list(nets), stacked_plan)
        stacked = stacked_plan(list(nets)).bind(list(conditions))
    except ValueError:
        def each(y: torch.Tensor, t: int) -> torch.Tensor:
            with torch.inference_mode():
                tt = torch.full((len(y),), t, dtype=torch.long)
                return torch.stack([net(y, tt, c) for net, c in zip(nets, conditions)])
        return each
    return stacked


def plain_network(net: nn.Module, c_norm: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
    """(network, condition) to run at every step: a set-conditioned net's trunk on its encoded set.

    The set's encoding is the same at every step: encode once per request, not once per step.
    """
    if hasattr(net, "for_sampling"):
        return net.for_sampling(c_norm)
    return net, c_norm


_PLANS: OrderedDict = OrderedDict()
_PLAN_CACHE_SIZE = 8


def stacked_plan(nets: list[nn.Module]) -> StackedMLP:
    """The StackedMLP of these networks, reused while none of their weights has changed.

    Building one (stacking weights, embedding every timestep) costs about a millisecond, a tenth
    of a served request, and a request needs up to three. A plan is reused only while the same
    network objects hold the same parameter tensors at the same in-place version: training,
    LoRA wrapping or loading new weights all change that key, so a stale plan is never served.
    """
    key = tuple((id(p), p._version) for net in nets for p in net.parameters())
    ids = tuple(id(net) for net in nets)
    entry = _PLANS.get(ids)
    if entry is not None:
        refs, cached_key, plan = entry
        if cached_key == key and all(r() is net for r, net in zip(refs, nets)):
            _PLANS.move_to_end(ids)
            return plan
    plan = StackedMLP(*nets)
    _PLANS[ids] = ([weakref.ref(net) for net in nets], key, plan)
    while len(_PLANS) > _PLAN_CACHE_SIZE:
        _PLANS.popitem(last=False)
    return plan


def model_space_targets(conditions, targets, relative: bool) -> np.ndarray:
    """Targets as the model sees them (before normalization): raw, or minus the condition's position."""
    targets = np.asarray(targets, dtype=np.float64)
    if not relative:
        return targets
    return targets - np.asarray(conditions, dtype=np.float64)[:, : targets.shape[1]]
