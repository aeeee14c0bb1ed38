"""The Bayes limit of the learning curve: the exact posterior predictive of a home's region.

A robot that knew the home family (domains/homes.py) and saw N locations in the furniture's
frame could do no better on average than to propose from the posterior predictive
p(x | x_1..N) = E_{region ~ p(region | x_1..N)} [uniform(region)]. The family's parameters are
few, so the posterior is computed on a fine grid of them rather than by a sampler that could
be wrong for large N (where it is sharp):

- box (cabinet): independent per axis. Parametrized by the side s ~ U(0.3 W, W) and the
  position u ~ U(0, 1) of the box in the room left (lo = L + u (W - s)), the prior is uniform
  in (s, u), and the likelihood of N uniform points is s^-N if the box holds them all, else 0.
- disc (round table): radius r = f R, f ~ U(0.3, 1), centre uniform where the disc fits on the
  table (density 1 / pi (R - r)^2); likelihood r^-2N if the disc holds every point.

`temper` adds that much to the likelihood's power: a sharper posterior, more accuracy, less
coverage (the trade-off a proposer can make; the plain predictive is the row reported as the limit).

A home of several places (a mixture) has no grid-sized posterior: which observation came from which
place is unknown, and so is the number of places. `labelled_part_predictive` is a reference that is
told both, and the kind of each place (box or disc): each observed place's own predictive (the
families above with a broad size prior, PART_FRACTION), mixed by the places' observed shares. It
knows more than any robot can (the labels), so a method should not be expected to beat it much; it
is not a Bayes limit (the shares and sizes are not the fleet's prior), and there is none for the
held-out kinds (balls, rings, turned bands).
"""
from __future__ import annotations

import math

import numpy as np

from ..domains.cabinet import GENERAL_BOX
from ..domains.homes import SIDE_FRACTION
from ..domains.round_table import GENERAL_RADIUS

GRID = 400          # grid points per box parameter
DISC_GRID = (81, 120)  # centre points per axis, radius points of the disc family
PART_FRACTION = (0.01, 1.0)  # a place's side or radius over the furniture's: a shelf board to all of it


def box_predictive(local_obs: np.ndarray, n: int, rng: np.random.Generator, temper: float = 0.0) -> np.ndarray:
    """``[n, 3]`` draws of the predictive for the cabinet family given observations ``[N, 3]`` (cabinet frame)."""
    local_obs = np.asarray(local_obs, dtype=np.float64).reshape(-1, 3)
    out = np.empty((n, 3))
    for axis in range(3):
        out[:, axis] = _axis_predictive(local_obs[:, axis], GENERAL_BOX[0][axis], GENERAL_BOX[1][axis], n, rng,
                                        temper)
    return out


def _axis_predictive(x: np.ndarray, low: float, high: float, n: int, rng, temper: float,
                     fraction: tuple = SIDE_FRACTION) -> np.ndarray:
    width = high - low
    ds, du = width * (fraction[1] - fraction[0]) / GRID, 1.0 / GRID
    s = width * fraction[0] + (np.arange(GRID) + 0.5) * ds
    u = (np.arange(GRID) + 0.5) * du
    side, pos = np.meshgrid(s, u, indexing="ij")
    lo = low + pos * (width - side)
    log_w = -(len(x) + temper) * np.log(side)
    if len(x):
        log_w = np.where((lo <= x.min()) & (lo + side >= x.max()), log_w, -np.inf)
    if not np.isfinite(log_w).any():  # observations closer to the edge than the grid resolves
        miss = np.maximum(lo - x.min(), 0) + np.maximum(x.max() - lo - side, 0)
        log_w = -(len(x) + temper) * np.log(side) - 1e3 * miss
    w = np.exp(log_w - log_w.max()).ravel()
    cell = rng.choice(w.size, size=n, p=w / w.sum())
    si = side.ravel()[cell] + rng.uniform(-0.5, 0.5, n) * ds
    ui = pos.ravel()[cell] + rng.uniform(-0.5, 0.5, n) * du
    lo_i = low + np.clip(ui, 0, 1) * (width - si)
    return lo_i + rng.uniform(0, 1, n) * si


def disc_predictive(local_obs: np.ndarray, n: int, rng: np.random.Generator, temper: float = 0.0,
                    fraction: tuple = SIDE_FRACTION) -> np.ndarray:
    """``[n, 3]`` draws of the predictive for the round-table family (offsets from the table's centre, z = 0).

    The centre is gridded in x, y (the prior: uniform where the disc fits), twice: over the whole
    table, then over the box holding the first pass's posterior mass, so a sharp posterior (large
    N) is resolved as finely as a broad one.
    """
    xy = np.asarray(local_obs, dtype=np.float64).reshape(-1, 2 + 1)[:, :2]
    box = (-GENERAL_RADIUS, GENERAL_RADIUS, -GENERAL_RADIUS, GENERAL_RADIUS)
    for _ in range(2):
        cx, cy, radius, log_w, step = _disc_grid(xy, box, temper, fraction)
        keep = log_w > log_w.max() - 20  # cells within e^-20 of the best
        pad = 2 * step
        box = (cx[keep].min() - pad, cx[keep].max() + pad, cy[keep].min() - pad, cy[keep].max() + pad)
    w = np.exp(log_w - log_w.max()).ravel()
    cell = rng.choice(w.size, size=n, p=w / w.sum())
    jitter = rng.uniform(-0.5, 0.5, (n, 2)) * step
    r_i, cx_i, cy_i = radius.ravel()[cell], cx.ravel()[cell] + jitter[:, 0], cy.ravel()[cell] + jitter[:, 1]
    rho, phi = r_i * np.sqrt(rng.uniform(0, 1, n)), rng.uniform(0, 2 * math.pi, n)
    return np.stack([cx_i + rho * np.cos(phi), cy_i + rho * np.sin(phi), np.zeros(n)], axis=1)


def _disc_grid(xy: np.ndarray, box: tuple, temper: float, fraction: tuple = SIDE_FRACTION):
    """Centre x centre x radius grid over `box`: log posterior weights (unnormalized)."""
    gc, gr = DISC_GRID
    cx1 = np.linspace(box[0], box[1], gc)
    cy1 = np.linspace(box[2], box[3], gc)
    step = max(cx1[1] - cx1[0], cy1[1] - cy1[0])
    f = fraction[0] + (np.arange(gr) + 0.5) * (fraction[1] - fraction[0]) / gr
    far = np.zeros((gc, gc))
    CX2, CY2 = np.meshgrid(cx1, cy1, indexing="ij")
    for px, py in xy:  # the farthest observation from each candidate centre
        np.maximum(far, np.hypot(CX2 - px, CY2 - py), out=far)
    cx, cy, radius = np.meshgrid(cx1, cy1, f * GENERAL_RADIUS, indexing="ij")
    far = far[:, :, None]
    fits = np.hypot(cx, cy) <= GENERAL_RADIUS - radius
    # prior: radius fraction uniform, centre uniform over the disc of radius R - r it may take
    log_w = -2 * np.log(np.maximum(GENERAL_RADIUS - radius, 1e-9)) - (2 * len(xy) + temper) * np.log(radius)
    if len(xy):
        # where no cell holds every point (a resolution limit), the nearest misses are kept
        inside = fits & (far <= radius)
        log_w = np.where(inside, log_w, -np.inf) if inside.any() else \
            np.where(fits, log_w - 1e3 * np.maximum(far - radius, 0), -np.inf)
    else:
        log_w = np.where(fits, log_w, -np.inf)
    return cx, cy, radius, log_w, step


def predictive(domain: str, local_obs: np.ndarray, n: int, rng: np.random.Generator, temper: float = 0.0):
    """The predictive of `domain`'s home family (cabinet: box, round_table: disc), local frame."""
    if domain == "cabinet":
        return box_predictive(local_obs, n, rng, temper)
    if domain == "round_table":
        return disc_predictive(local_obs, n, rng, temper)
    raise ValueError(f"no Bayes limit for {domain!r}: use cabinet or round_table")


def _places(region) -> list | None:
    """The boxes and discs a home is made of (an L is two boxes); None if any place is another shape."""
    from ..domains.homes import BoxRegion, DiscRegion, MixtureRegion

    if isinstance(region, MixtureRegion):
        places = [_places(part) for part in region.parts]
        return None if any(p is None for p in places) else [leaf for p in places for leaf in p]
    return [region] if isinstance(region, (BoxRegion, DiscRegion)) else None


def _place_predictive(domain: str, place, local_obs: np.ndarray, n: int, rng) -> np.ndarray:
    """One place's predictive given its own observations (broad size prior, PART_FRACTION)."""
    from ..domains.homes import DiscRegion

    if isinstance(place, DiscRegion):
        return disc_predictive(local_obs, n, rng, fraction=PART_FRACTION)
    if domain == "cabinet":
        bounds = list(zip(GENERAL_BOX[0], GENERAL_BOX[1]))
    else:  # a rectangle on the table top (z = 0)
        bounds = [(-GENERAL_RADIUS, GENERAL_RADIUS)] * 2
    out = np.zeros((n, 3))
    for axis, (low, high) in enumerate(bounds):
        out[:, axis] = _axis_predictive(local_obs[:, axis], low, high, n, rng, 0.0, PART_FRACTION)
    return out


def labelled_part_predictive(domain: str, region, local_obs: np.ndarray, n: int,
                             rng: np.random.Generator) -> np.ndarray | None:
    """``[n, 3]`` draws of the labelled-part reference (module docstring), or None where it has no answer.

    None for a home with a place that is not a box or disc, or with no observation yet.
    """
    places = _places(region)
    obs = np.asarray(local_obs, dtype=np.float64).reshape(-1, 3)
    if places is None or len(obs) == 0:
        return None
    inside = np.stack([place.contains(obs) for place in places])          # [places, N]
    label = np.where(inside.any(axis=0), inside.argmax(axis=0), -1)       # the first place holding it
    counts = np.bincount(label[label >= 0], minlength=len(places)).astype(float)
    if counts.sum() == 0:
        return None
    which = rng.choice(len(places), size=n, p=counts / counts.sum())
    out = np.zeros((n, 3))
    for i in np.flatnonzero(counts):
        chosen = which == i
        if chosen.any():
            out[chosen] = _place_predictive(domain, places[i], obs[label == i], int(chosen.sum()), rng)
    return out
