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
from .round_table import (
    GENERAL_RADIUS,
    HEIGHT,
    SPECIALIZED_RADIUS,
    Z_TOLERANCE,
    RoundTable,
    _on_disc,
    _uniform_disc,
)

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


def homes(domain: str, count: int, seed: int = 0, family: str = "box") -> list:
    """`count` homes of `family` drawn with `seed`; the "box" family starts with the thesis's home."""
    rng = np.random.default_rng(seed)
    if family == "box":
        regions = [thesis_region(domain)] + [draw_region(domain, rng) for _ in range(count - 1)]
        return [home_domain(domain, r, "thesis" if i == 0 else f"home{i}") for i, r in enumerate(regions)]
    return [home_domain(domain, draw_home(domain, family, rng), f"{family}{i}") for i in range(count)]


# ---------------------------------------------------------------------------------------------------
# Homes that look like homes: mixtures of places (docs/domains.md, "Home families").
#
# A real home keeps plates on two shelves, cups on a tray and by the sink. A home is then a weighted
# mixture of 1..4 regions of very different sizes: boxes (table: rectangles), discs, thin slabs (a
# shelf board) and L-shaped unions. Three families are kept apart:
#   - "box": the thesis's family (one box / one disc, above), a member of the fleet too;
#   - "fleet": what the home-aware prior trains on (a share of "box" homes, the rest mixtures);
#     validation homes are the same family drawn from another seed;
#   - "multi": mixtures of 2..4 regions (the multi-region test group, the fleet's kinds, unseen draws);
#   - "held_out": shape kinds no model trains on: balls and rotated bands in the cabinet, rings and
#     rotated strips on the table, and five or six small clusters (more parts than any fleet home).
FAMILIES = ("box", "fleet", "multi", "held_out")
FLEET_BOX_SHARE = 0.3  # fleet homes that are one box / one disc (the thesis's family)


@dataclass(frozen=True)
class BallRegion:
    """A ball (cabinet) in the family's frame; held out of the fleet."""

    centre: tuple
    radius: float

    def contains(self, local: np.ndarray) -> np.ndarray:
        return np.linalg.norm(local - np.asarray(self.centre), axis=-1) <= self.radius

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        direction = rng.normal(size=(n, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        return np.asarray(self.centre) + direction * self.radius * rng.uniform(0, 1, (n, 1)) ** (1 / 3)


@dataclass(frozen=True)
class RotatedBoxRegion:
    """A box turned by `yaw` about the vertical axis (half sizes; z half 0 = on the table); held out."""

    centre: tuple
    half: tuple
    yaw: float

    def _to_box(self, local):
        d = np.asarray(local, dtype=np.float64) - np.asarray(self.centre)
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1], d[..., 2]], axis=-1)

    def contains(self, local: np.ndarray) -> np.ndarray:
        half = np.asarray(self.half) + np.array([0.0, 0.0, Z_TOLERANCE if self.half[2] == 0 else 0.0])
        return np.all(np.abs(self._to_box(local)) <= half, axis=-1)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        u = rng.uniform(-1, 1, size=(n, 3)) * np.asarray(self.half)
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return np.asarray(self.centre) + np.stack([c * u[:, 0] - s * u[:, 1], s * u[:, 0] + c * u[:, 1], u[:, 2]], 1)


@dataclass(frozen=True)
class RingRegion:
    """An annulus on the table (centre offset, inner and outer radius); held out of the fleet."""

    centre: tuple
    inner: float
    outer: float

    def contains(self, local: np.ndarray) -> np.ndarray:
        r = np.hypot(local[..., 0] - self.centre[0], local[..., 1] - self.centre[1])
        return (r >= self.inner) & (r <= self.outer) & (np.abs(local[..., 2]) <= Z_TOLERANCE)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        r = np.sqrt(rng.uniform(self.inner**2, self.outer**2, n))
        theta = rng.uniform(0, 2 * math.pi, n)
        return np.stack([self.centre[0] + r * np.cos(theta), self.centre[1] + r * np.sin(theta), np.zeros(n)], 1)


@dataclass(frozen=True)
class MixtureRegion:
    """A home of several places: each observation comes from part i with probability weights[i]."""

    parts: tuple
    weights: tuple

    def contains(self, local: np.ndarray) -> np.ndarray:
        return np.any([p.contains(local) for p in self.parts], axis=0)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        which = rng.choice(len(self.parts), size=n, p=np.asarray(self.weights) / np.sum(self.weights))
        out = np.zeros((n, 3))
        for i, part in enumerate(self.parts):
            chosen = which == i
            if chosen.any():
                out[chosen] = part.sample(int(chosen.sum()), rng)
        return out


def _table_rect(rng, low_f: float, high_f: float, thin: bool = False) -> BoxRegion:
    """A rectangle on the table (z = 0) that fits inside the top; `thin`: a strip along one axis."""
    for _ in range(100):
        side = rng.uniform(low_f, high_f, size=2) * 2 * GENERAL_RADIUS
        if thin:
            side[rng.integers(2)] = rng.uniform(0.05, 0.25)
        low = rng.uniform(-GENERAL_RADIUS, GENERAL_RADIUS - side)
        corners = np.array([[low[0], low[1]], [low[0] + side[0], low[1]], [low[0], low[1] + side[1]],
                            low + side])
        if np.all(np.hypot(corners[:, 0], corners[:, 1]) <= GENERAL_RADIUS):
            return BoxRegion((low[0], low[1], -Z_TOLERANCE), (low[0] + side[0], low[1] + side[1], Z_TOLERANCE))
    return BoxRegion((-0.5, -0.5, -Z_TOLERANCE), (0.5, 0.5, Z_TOLERANCE))


def _cabinet_box(rng, low_f: float, high_f: float) -> BoxRegion:
    full_low, full_high = GENERAL_BOX
    side = rng.uniform(low_f, high_f, size=3) * (full_high - full_low)
    low = full_low + rng.uniform(0.0, 1.0, size=3) * (full_high - full_low - side)
    return BoxRegion(tuple(low), tuple(low + side))


def _cabinet_slab(rng) -> BoxRegion:
    """A shelf board: most of the cabinet's width and depth, a thin layer in height."""
    full_low, full_high = GENERAL_BOX
    side = np.array([rng.uniform(0.5, 1.0), rng.uniform(0.5, 1.0), rng.uniform(0.02, 0.1)]) * (full_high - full_low)
    low = full_low + rng.uniform(0.0, 1.0, size=3) * (full_high - full_low - side)
    return BoxRegion(tuple(low), tuple(low + side))


def _table_disc(rng, low_f: float, high_f: float) -> DiscRegion:
    radius = rng.uniform(low_f, high_f) * GENERAL_RADIUS
    room = GENERAL_RADIUS - radius
    r, theta = room * math.sqrt(rng.uniform()), rng.uniform(0, 2 * math.pi)
    return DiscRegion((r * math.cos(theta), r * math.sin(theta)), float(radius))


def _l_shape(domain: str, rng) -> MixtureRegion:
    """Two boxes meeting at a corner (an L), weighted by their volumes so the L is filled evenly."""
    first = _cabinet_box(rng, 0.2, 0.6) if domain == "cabinet" else _table_rect(rng, 0.15, 0.4)
    low, high = np.array(first.low), np.array(first.high)
    axis = rng.integers(2)
    side = high - low
    grow = np.array(side)
    grow[axis] = side[axis] * rng.uniform(1.0, 2.0)
    other_low = np.array(low)
    other_high = low + grow
    other_high[1 - axis] = low[1 - axis] + side[1 - axis] * rng.uniform(0.2, 0.5)
    bound = GENERAL_BOX[1] if domain == "cabinet" else np.array([GENERAL_RADIUS, GENERAL_RADIUS, Z_TOLERANCE])
    other_high = np.minimum(other_high, bound)
    second = BoxRegion(tuple(other_low), tuple(other_high))
    volume = [float(np.prod(np.maximum(np.array(b.high) - np.array(b.low), 1e-3)[:2 if domain != "cabinet" else 3]))
              for b in (first, second)]
    return MixtureRegion((first, second), tuple(v / sum(volume) for v in volume))


def _fleet_part(domain: str, rng):
    """One place of a fleet home: a box / disc of any size, a thin slab or strip, or an L."""
    kind = rng.choice(["small", "large", "thin", "l"], p=[0.35, 0.25, 0.25, 0.15])
    if domain == "cabinet":
        if kind == "thin":
            return _cabinet_slab(rng)
        if kind == "l":
            return _l_shape(domain, rng)
        return _cabinet_box(rng, *((0.08, 0.35) if kind == "small" else (0.3, 0.8)))
    if kind == "thin":
        return _table_rect(rng, 0.2, 0.6, thin=True)
    if kind == "l":
        return _l_shape(domain, rng)
    if rng.random() < 0.5:
        return _table_disc(rng, *((0.05, 0.25) if kind == "small" else (0.25, 0.7)))
    return _table_rect(rng, *((0.05, 0.25) if kind == "small" else (0.2, 0.5)))


def _mixture(parts: list, rng) -> MixtureRegion | object:
    if len(parts) == 1:
        return parts[0]
    weights = rng.dirichlet(np.ones(len(parts))) * 0.8 + 0.2 / len(parts)  # no place is almost never used
    return MixtureRegion(tuple(parts), tuple(float(w) for w in weights))


def _held_out_part(domain: str, rng):
    if domain == "cabinet":
        if rng.random() < 0.5:
            radius = rng.uniform(0.1, 0.35)
            centre = rng.uniform(GENERAL_BOX[0] + radius, GENERAL_BOX[1] - radius)
            return BallRegion(tuple(centre), float(radius))
        half = np.array([rng.uniform(0.3, 0.8), rng.uniform(0.04, 0.12), rng.uniform(0.05, 0.3)])
        centre = np.array([*rng.uniform(-0.15, 0.15, 2), rng.uniform(half[2], 1.0 - half[2])])
        return RotatedBoxRegion(tuple(centre), tuple(half), float(rng.uniform(0.3, 1.3)))
    if rng.random() < 0.5:
        outer = rng.uniform(0.6, 1.5)
        room = GENERAL_RADIUS - outer
        r, theta = room * math.sqrt(rng.uniform()), rng.uniform(0, 2 * math.pi)
        return RingRegion((r * math.cos(theta), r * math.sin(theta)), float(outer * rng.uniform(0.5, 0.8)),
                          float(outer))
    half = (rng.uniform(0.5, 1.4), rng.uniform(0.05, 0.2), 0.0)
    r, theta = rng.uniform(0, GENERAL_RADIUS - half[0] - 0.2), rng.uniform(0, 2 * math.pi)
    return RotatedBoxRegion((r * math.cos(theta), r * math.sin(theta), 0.0), half, float(rng.uniform(0.3, 1.3)))


def _clusters(domain: str, rng) -> MixtureRegion:
    """Five or six small places (more than any fleet home has)."""
    count = int(rng.integers(5, 7))
    if domain == "cabinet":
        parts = [_cabinet_box(rng, 0.05, 0.12) for _ in range(count)]
    else:
        parts = [_table_disc(rng, 0.04, 0.1) for _ in range(count)]
    return _mixture(parts, rng)


def draw_home(domain: str, family: str, rng: np.random.Generator):
    """One home's region from `family` (FAMILIES; see above)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown home family {family!r}: use one of {FAMILIES}")
    if family == "box" or (family == "fleet" and rng.random() < FLEET_BOX_SHARE):
        return draw_region(domain, rng)
    if family == "held_out":
        kind = rng.choice(["shape", "two_shapes", "clusters"])
        if kind == "clusters":
            return _clusters(domain, rng)
        return _mixture([_held_out_part(domain, rng) for _ in range(1 if kind == "shape" else 2)], rng)
    low = 1 if family == "fleet" else 2
    return _mixture([_fleet_part(domain, rng) for _ in range(int(rng.integers(low, 5)))], rng)
