"""A trained diffusion model: denoiser + schedule + the normalizers it was trained with."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .denoisers import build_denoiser
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

    @classmethod
    def create(cls, architecture: dict, schedule: NoiseSchedule, target_normalizer: Normalizer,
               condition_normalizer: Normalizer | None, metadata: dict | None = None) -> "DiffusionModel":
        """Fresh, untrained model; `architecture` is {"name": ..., **options}."""
        options = {k: v for k, v in architecture.items() if k != "name"}
        cond_dim = condition_normalizer.dim if condition_normalizer is not None else 0
        denoiser = build_denoiser(architecture["name"], target_normalizer.dim, cond_dim,
                                  num_steps=schedule.num_steps, **options)
        return cls(denoiser, schedule, condition_normalizer, target_normalizer, dict(architecture),
                   dict(metadata or {}))

    @property
    def target_dim(self) -> int:
        return self.target_normalizer.dim

    @property
    def condition_dim(self) -> int:
        return self.condition_normalizer.dim if self.condition_normalizer is not None else 0

    def clone(self) -> "DiffusionModel":
        return DiffusionModel(copy.deepcopy(self.denoiser), self.schedule, self.condition_normalizer,
                              self.target_normalizer, dict(self.architecture), copy.deepcopy(self.metadata))

    def normalize_conditions(self, conditions) -> torch.Tensor:
        """Raw conditions [n, cond_dim] (numpy or tensor) -> normalized float32 tensor."""
        c = np.asarray(conditions, dtype=np.float64).reshape(len(conditions), -1)
        if c.shape[1] != self.condition_dim:
            raise ValueError(f"condition has {c.shape[1]} numbers, this model needs {self.condition_dim}")
        if self.condition_normalizer is not None:
            c = self.condition_normalizer.normalize(c)
        return torch.as_tensor(c, dtype=torch.float32)

    @torch.no_grad()
    def eps(self, y_t: torch.Tensor, t: int, c_norm: torch.Tensor) -> torch.Tensor:
        """Noise prediction at integer step t for a batch (normalized space)."""
        tt = torch.full((len(y_t),), t, dtype=torch.long)
        return self.denoiser(y_t, tt, c_norm)
