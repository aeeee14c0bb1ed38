"""Cabinet (thesis §4.1.1): where are the plates, given where the cabinet is.

Condition: cabinet corner (x, y, z) uniform in (-4,-4,0)..(6,6,3). General plates lie
uniformly in the box (x-1, y-1, z)..(x+1, y+1, z+1); this home keeps them in the
lower-left-front eighth (x-1, y-1, z)..(x, y, z+0.5).
"""
from __future__ import annotations

import numpy as np

from .base import Domain

GENERAL_BOX = (np.array([-1.0, -1.0, 0.0]), np.array([1.0, 1.0, 1.0]))
SPECIALIZED_BOX = (np.array([-1.0, -1.0, 0.0]), np.array([0.0, 0.0, 0.5]))


class Cabinet(Domain):
    name = "cabinet"
    state_dim = 3
    target_dim = 3

    def sample_general_targets(self, conditions, rng):
        return conditions + rng.uniform(*GENERAL_BOX, size=conditions.shape)

    def sample_specialized_targets(self, conditions, rng):
        return conditions + rng.uniform(*SPECIALIZED_BOX, size=conditions.shape)

    def in_general_region(self, conditions, targets):
        return _in_box(targets - conditions, *GENERAL_BOX)

    def in_specialized_region(self, conditions, targets):
        return _in_box(targets - conditions, *SPECIALIZED_BOX)


def _in_box(offsets, low, high):
    return np.all((offsets >= low) & (offsets <= high), axis=-1)
