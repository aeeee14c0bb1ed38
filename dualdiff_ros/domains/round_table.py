"""Round table (thesis §4.1.1) and the overlap family (§4.1.5): where on the table.

Condition: the table location (x, y, z), same range as the cabinet. Objects lie uniformly
on a horizontal disc centred `height` above the table location: radius 3 in general, a
radius-1 disc in this home. The overlap family moves the specialized disc's centre
sideways by `offset` (see OVERLAP_SETTINGS and docs/domains.md).

A target counts as on a disc when its horizontal distance to the disc centre is at most
the radius and its height is within Z_TOLERANCE of the disc's height.
"""
from __future__ import annotations

import math

import numpy as np

from .base import Domain

HEIGHT = 10.0
GENERAL_RADIUS = 3.0
SPECIALIZED_RADIUS = 1.0
Z_TOLERANCE = 0.1

# name -> centre distance between the general (r=3) and specialized (r=1) discs.
# "far" and "close" are edge gaps of 10 and 3 (disjoint); the rest overlap.
OVERLAP_SETTINGS = {
    "far": GENERAL_RADIUS + SPECIALIZED_RADIUS + 10.0,
    "close": GENERAL_RADIUS + SPECIALIZED_RADIUS + 3.0,
    "partial": 3.5,
    "strong": 2.6,
    "subset_shifted": 2.0,
    "subset": 0.0,
}


class RoundTable(Domain):
    name = "round_table"
    state_dim = 3
    target_dim = 3

    def __init__(self, specialized_offset: float = 0.0, name: str | None = None):
        self.specialized_offset = float(specialized_offset)
        if name:
            self.name = name

    def _specialized_centre(self, conditions):
        return conditions + np.array([self.specialized_offset, 0.0, HEIGHT])

    def _general_centre(self, conditions):
        return conditions + np.array([0.0, 0.0, HEIGHT])

    def sample_general_targets(self, conditions, rng):
        return self._general_centre(conditions) + _uniform_disc(len(conditions), GENERAL_RADIUS, rng)

    def sample_specialized_targets(self, conditions, rng):
        return self._specialized_centre(conditions) + _uniform_disc(len(conditions), SPECIALIZED_RADIUS, rng)

    def in_general_region(self, conditions, targets):
        return _on_disc(targets - self._general_centre(conditions), GENERAL_RADIUS)

    def in_specialized_region(self, conditions, targets):
        return _on_disc(targets - self._specialized_centre(conditions), SPECIALIZED_RADIUS)


def overlap_domain(setting: str) -> RoundTable:
    if setting not in OVERLAP_SETTINGS:
        raise ValueError(f"unknown overlap setting {setting!r}: use one of {list(OVERLAP_SETTINGS)}")
    return RoundTable(OVERLAP_SETTINGS[setting], name=f"overlap_{setting}")


def overlap_fraction(offset: float, r_small: float = SPECIALIZED_RADIUS, r_big: float = GENERAL_RADIUS) -> float:
    """Fraction of the specialized disc's area that lies inside the general disc."""
    d = abs(offset)
    if d >= r_small + r_big:
        return 0.0
    if d <= r_big - r_small:
        return 1.0
    a1 = r_small**2 * math.acos((d * d + r_small**2 - r_big**2) / (2 * d * r_small))
    a2 = r_big**2 * math.acos((d * d + r_big**2 - r_small**2) / (2 * d * r_big))
    a3 = 0.5 * math.sqrt((-d + r_small + r_big) * (d + r_small - r_big) * (d - r_small + r_big)
                         * (d + r_small + r_big))
    return (a1 + a2 - a3) / (math.pi * r_small**2)


def _uniform_disc(n, radius, rng):
    r = radius * np.sqrt(rng.uniform(0, 1, n))
    theta = rng.uniform(0, 2 * math.pi, n)
    return np.stack([r * np.cos(theta), r * np.sin(theta), np.zeros(n)], axis=1)


def _on_disc(offsets, radius):
    return (np.hypot(offsets[:, 0], offsets[:, 1]) <= radius) & (np.abs(offsets[:, 2]) <= Z_TOLERANCE)
