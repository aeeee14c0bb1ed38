"""The proposer every learned one must beat: uniform samples on a ring around the object."""
from __future__ import annotations

import numpy as np

from ..navigate_to import ring
from .scene import REACH, ROBOT_RADIUS


def ring_proposer(states: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``[n, k, 2]`` ring samples for the simulator's robot (navigate_to.ring): what every model must beat."""
    return ring(states, k, rng, ROBOT_RADIUS, REACH)
