"""Homes: where one household keeps things, drawn from a family whose mixture is the general data.

The thesis has one home per domain (the cabinet's lower-left-front eighth, the round table's
radius-1 disc). A robot lands in a home it has never seen, so the learning curve is measured
over homes drawn from a family (docs/domains.md, "Home families"):

- cabinet: an axis-aligned box inside the cabinet's full box, each side independently a
  fraction U(0.3, 1.0) of the full side, placed uniformly where it fits;
- round table: a disc on the table, radius U(0.3, 1.0) x the table's, its centre uniform where
  the disc fits on the table.

The thesis's own home is a member of each family. `Home` is a Domain (same conditions, same
general data) whose specialized region is the home's, so every study and metric takes it as is.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .cabinet import GENERAL_BOX, SPECIALIZED_BOX, Cabinet
from .round_table import GENERAL_RADIUS, HEIGHT, SPECIALIZED_RADIUS, RoundTable, _on_disc, _uniform_disc

FAMILY_DOMAINS = ("cabinet", "round_table")
# Where a family's frame sits relative to the furniture's pose: the cabinet's corner, the table's top.
FRAME_ORIGIN = {"cabinet": np.zeros(3), "round_table": np.array([0.0, 0.0, HEIGHT])}
SIDE_FRACTION = (0.3, 1.0)  # a home's side (cabinet) or radius (round table) over the furniture's


@dataclass(frozen=True)
class BoxRegion:
    """A box in the cabinet's frame (offsets from its corner)."""

    low: tuple
    high: tuple

    def contains(self, local: np.ndarray) -> np.ndarray:
        return np.all((local >= np.asarray(self.low)) & (local <= np.asarray(self.high)), axis=-1)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(self.low, self.high, size=(n, len(self.low)))


@dataclass(frozen=True)
class DiscRegion:
    """A disc on the table: centre offset (dx, dy) from the table's centre, radius."""

    centre: tuple
    radius: float

    def contains(self, local: np.ndarray) -> np.ndarray:
        return _on_disc(local - np.array([*self.centre, 0.0]), self.radius)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.array([*self.centre, 0.0]) + _uniform_disc(n, self.radius, rng)


def home_frame(domain: str, conditions, targets) -> np.ndarray:
    """Observed targets as offsets in the family's frame (what the home-aware prior reads)."""
    if domain not in FRAME_ORIGIN:
        raise ValueError(f"no home family for {domain!r}: use one of {FAMILY_DOMAINS}")
    return np.asarray(targets, dtype=np.float64) - np.asarray(conditions, dtype=np.float64) - FRAME_ORIGIN[domain]


def thesis_region(domain: str):
    """The home of the thesis's specialized data, as a member of the family."""
    if domain == "cabinet":
        return BoxRegion(tuple(SPECIALIZED_BOX[0]), tuple(SPECIALIZED_BOX[1]))
    if domain == "round_table":
        return DiscRegion((0.0, 0.0), SPECIALIZED_RADIUS)
    raise ValueError(f"no home family for {domain!r}: use one of {FAMILY_DOMAINS}")


def draw_region(domain: str, rng: np.random.Generator):
    """One home's region from the family (see the module docstring)."""
    lo_f, hi_f = SIDE_FRACTION
    if domain == "cabinet":
        full_low, full_high = GENERAL_BOX
        side = rng.uniform(lo_f, hi_f, size=3) * (full_high - full_low)
        low = full_low + rng.uniform(0.0, 1.0, size=3) * (full_high - full_low - side)
        return BoxRegion(tuple(low), tuple(low + side))
    if domain == "round_table":
        radius = rng.uniform(lo_f, hi_f) * GENERAL_RADIUS
        room = GENERAL_RADIUS - radius
        r, theta = room * math.sqrt(rng.uniform()), rng.uniform(0, 2 * math.pi)
        return DiscRegion((r * math.cos(theta), r * math.sin(theta)), float(radius))
    raise ValueError(f"no home family for {domain!r}: use one of {FAMILY_DOMAINS}")


def home_domain(domain: str, region, name: str = ""):
    """The furniture domain with `region` as its specialized region (the general data unchanged)."""
    base = {"cabinet": Cabinet, "round_table": RoundTable}[domain]

    origin = FRAME_ORIGIN[domain]

    class Home(base):
        def region_frame(self, conditions, targets):
            """Targets as offsets in the family's frame (cabinet corner; table centre at its height)."""
            return np.asarray(targets) - np.asarray(conditions) - origin

        def from_region_frame(self, conditions, local):
            return np.asarray(conditions) + np.asarray(local) + origin

        def sample_specialized_targets(self, conditions, rng):
            return self.from_region_frame(conditions, region.sample(len(conditions), rng))

        def in_specialized_region(self, conditions, targets):
            return region.contains(self.region_frame(conditions, targets))

    home = Home()
    home.name = name or f"{domain}_home"
    home.region = region
    return home


def homes(domain: str, count: int, seed: int = 0) -> list:
    """The thesis's home first, then `count - 1` homes drawn from the family with `seed`."""
    rng = np.random.default_rng(seed)
    regions = [thesis_region(domain)] + [draw_region(domain, rng) for _ in range(count - 1)]
    return [home_domain(domain, r, "thesis" if i == 0 else f"home{i}") for i, r in enumerate(regions)]
