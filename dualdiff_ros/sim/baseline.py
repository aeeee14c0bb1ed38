"""The proposer every learned one must beat: uniform samples on a ring around the object."""
from __future__ import annotations

import numpy as np

from .scene import REACH, ROBOT_RADIUS


def ring_proposer(states: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``[n, k, 2]`` uniform-area samples of the ring where a facing robot reaches the object.

    Inner radius clears the object's short side, outer radius still reaches it. It sees the
    state only (centre and size), never the clutter, just like a learned proposer.
    """
    states = np.asarray(states, dtype=np.float64).reshape(-1, 10)
    half = np.minimum(states[:, 2], states[:, 3]) / 2
    r0, r1 = ROBOT_RADIUS + half, REACH + half
    u = rng.uniform(size=(len(states), k))
    radius = np.sqrt(r0[:, None] ** 2 + u * (r1[:, None] ** 2 - r0[:, None] ** 2))
    angle = rng.uniform(-np.pi, np.pi, size=(len(states), k))
    return states[:, None, :2] + radius[..., None] * np.stack([np.cos(angle), np.sin(angle)], axis=-1)
