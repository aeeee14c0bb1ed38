"""The shape every domain shares: where conditions and targets come from, and what "right" means.

A domain generates (condition, target) pairs for a general prior and for a specialized
model, and can tell whether a target is inside the specialized region for a condition.
All arrays are float64 numpy, conditions [n, state_dim], targets [n, target_dim].
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Dataset:
    """Paired conditions and targets, plus where they came from (for checkpoint metadata)."""

    conditions: np.ndarray
    targets: np.ndarray
    name: str = ""

    def __post_init__(self):
        if self.conditions.ndim != 2 or self.targets.ndim != 2:
            raise ValueError("conditions and targets must be 2-D arrays")
        if len(self.conditions) != len(self.targets):
            raise ValueError(
                f"{len(self.conditions)} conditions but {len(self.targets)} targets: they must pair up"
            )

    def __len__(self) -> int:
        return len(self.targets)


class Domain:
    """Base class of the synthetic domains (cabinet, round table, overlap family).

    Subclasses set `name`, `state_dim`, `target_dim`, `condition_low`, `condition_high`
    and implement the two target samplers and the region tests.
    """

    name = "domain"
    state_dim = 3
    target_dim = 3
    condition_low = np.array([-4.0, -4.0, 0.0])
    condition_high = np.array([6.0, 6.0, 3.0])

    def sample_conditions(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(self.condition_low, self.condition_high, size=(n, self.state_dim))

    def sample_general_targets(self, conditions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def sample_specialized_targets(self, conditions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def in_specialized_region(self, conditions: np.ndarray, targets: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def in_general_region(self, conditions: np.ndarray, targets: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def local_frame(self, conditions: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Targets relative to their condition: the frame coverage metrics compare in."""
        return targets - conditions[:, : self.target_dim]

    def general_dataset(self, n: int, seed: int) -> Dataset:
        rng = np.random.default_rng(seed)
        c = self.sample_conditions(n, rng)
        return Dataset(c, self.sample_general_targets(c, rng), f"{self.name}/general/{n}/{seed}")

    def specialized_dataset(self, n: int, seed: int) -> Dataset:
        rng = np.random.default_rng(seed)
        c = self.sample_conditions(n, rng)
        return Dataset(c, self.sample_specialized_targets(c, rng), f"{self.name}/specialized/{n}/{seed}")
