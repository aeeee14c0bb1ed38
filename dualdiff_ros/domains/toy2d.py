"""The four 2-D toy distributions of the DualDiff seed paper, generated exactly as its template did.

Each generator takes its own rng seed (42 in the paper) so that held-out and real-vs-real
samples are independent draws of the same distribution. Arrays are float64 [n, 2].
"""
from __future__ import annotations

import csv
from functools import cache
from importlib import resources

import numpy as np

TOY_DATASETS = ("circle", "dino", "line", "moons")
DEFAULT_SIZE = 100_000
DEFAULT_SEED = 42


def moons(n: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Two moons from sklearn (noise 0.03), stretched to roughly [-1.4, 3] x [-0.7, 2.9]."""
    from sklearn.datasets import make_moons  # heavy import, only needed here

    x, _ = make_moons(n_samples=n, random_state=seed, noise=0.03)
    x[:, 0] = (x[:, 0] + 0.3) * 2 - 1
    x[:, 1] = (x[:, 1] + 0.3) * 3 - 1
    return x


def line(n: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED) -> np.ndarray:
    """A uniform 4 x 8 rectangle (the template's "line")."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-0.5, 0.5, n)
    y = rng.uniform(-1, 1, n)
    return np.stack((x, y), axis=1) * 4


def circle(n: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED) -> np.ndarray:
    """16 tight clusters on a radius-3 ring plus one at the origin (not a continuous circle).

    Rounding a uniform grid coordinate to {-0.4, ..., 0.4} and normalising leaves 16 distinct
    directions; the grid's (0, 0) stays at the origin. A radial jitter of at most 0.03 (x3)
    makes each cluster a small disc.
    """
    rng = np.random.default_rng(seed)
    x = np.round(rng.uniform(-0.5, 0.5, n) / 2, 1) * 2
    y = np.round(rng.uniform(-0.5, 0.5, n) / 2, 1) * 2
    norm = np.sqrt(x**2 + y**2) + 1e-10
    x /= norm
    y /= norm
    theta = 2 * np.pi * rng.uniform(0, 1, n)
    r = rng.uniform(0, 0.03, n)
    x += r * np.cos(theta)
    y += r * np.sin(theta)
    return np.stack((x, y), axis=1) * 3


@cache
def dino_points() -> np.ndarray:
    """The 142 raw "dino" rows of the Datasaurus Dozen (x in ~[22, 98], y in ~[3, 100])."""
    text = resources.files("dualdiff_ros").joinpath("data/DatasaurusDozen.tsv").read_text()
    rows = [(float(r["x"]), float(r["y"])) for r in csv.DictReader(text.splitlines(), delimiter="\t")
            if r["dataset"] == "dino"]
    return np.array(rows)


def dino(n: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Dino rows resampled with replacement, N(0, 0.15^2) noise in raw units, scaled to ~[-4, 4]."""
    points = dino_points()
    rng = np.random.default_rng(seed)
    ix = rng.integers(0, len(points), n)
    x = points[ix, 0] + rng.normal(size=n) * 0.15
    y = points[ix, 1] + rng.normal(size=n) * 0.15
    x = (x / 54 - 1) * 4
    y = (y / 48 - 1) * 4
    return np.stack((x, y), axis=1)


_GENERATORS = {"circle": circle, "dino": dino, "line": line, "moons": moons}


def toy_dataset(name: str, n: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Points [n, 2] of a named toy distribution; seed 42 reproduces the paper's training set."""
    if name not in _GENERATORS:
        raise ValueError(f"unknown 2-D dataset {name!r}: use one of {list(TOY_DATASETS)}")
    if n < 1:
        raise ValueError(f"n={n} must be >= 1")
    return _GENERATORS[name](int(n), int(seed))
