"""The places of a home: its observations split where a gap separates them.

A home keeps its plates on two shelves. The home-aware prior reads the set of a home's
observations, and for a set that spans two places it also proposes in the gap between them (a
smooth network finds it hard to put no density between two groups of points), more so the more
places there are. Asked about each place on its own (a one-place home, where it is close to the
Bayes limit) and mixed by the places' shares of the observations, it leaves the gap empty.

The split is chosen by the leave-one-out log-likelihood of a mixture of boxes: each place a
uniform box over its points' range widened by the unbiased (m + 1) / (m - 1), weighted by its
share, plus a small uniform background so that a point outside its place's box is unlikely, not
impossible; leave-one-out, so that making every point its own place is not rewarded, and a BIC
charge per place, so that a disc is not cut into boxes for a sliver of likelihood. The candidate
splits come from two searches: single-linkage clustering (scipy) cut into 1..MAX_PLACES places
(places apart in every direction), and a greedy split of a place at the widest gap along one axis
(two shelves: far apart in height, while a few points on a wide shelf are far apart from each
other too, which single linkage cuts first). Only axes along which the observations vary count
(a table top's height does not). A box is a model of a place for choosing the split only: each
place's proposals come from the prior, which knows discs, strips and L shapes.

Pure numpy and scipy: the placement service, its answer check and the learning curve share it.
"""
from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage

MAX_PLACES = 6          # the most places a home is split into
MIN_OBSERVATIONS = 6    # fewer observations: one place (too few points to tell a gap from chance)
MIN_PER_PLACE = 3       # a place needs this many observations (fewer: its box is a guess)
BACKGROUND = 0.02       # the share of the likelihood spread uniformly over all observations' box
MIN_SIDE = 0.01         # metres: a place's box is at least this wide along every axis


def informative(points: np.ndarray) -> np.ndarray:
    """The observations along the axes on which they vary."""
    x = np.asarray(points, dtype=np.float64)
    return x[:, np.ptp(x, axis=0) > 1e-6] if len(x) > 1 else x


def _widened_box(low: np.ndarray, high: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The unbiased support of `count` uniform points with this range: (m + 1) / (m - 1) x the range."""
    grow = (high - low) / np.maximum(count - 1, 1)[..., None]
    side = np.maximum(high - low + 2 * grow, MIN_SIDE)
    centre = (low + high) / 2
    return centre - side / 2, centre + side / 2


def leave_one_out_score(x: np.ndarray, labels: np.ndarray) -> float:
    """Mean log-likelihood of each observation under the mixture of boxes fitted without it."""
    n, d = x.shape
    everything = _widened_box(x.min(0), x.max(0), np.array(n))
    background = BACKGROUND / np.prod(everything[1] - everything[0])
    density = np.zeros(n)
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        pts = x[idx]
        m = len(pts) - 1                      # the place's points without the one left out
        if m < 2:
            continue
        order = np.sort(pts, axis=0)
        low = np.where(pts == order[0], order[1], order[0])      # the min without this point
        high = np.where(pts == order[-1], order[-2], order[-1])  # the max without this point
        lo, hi = _widened_box(low, high, np.full(len(pts), m))
        inside = np.all((pts >= lo) & (pts <= hi), axis=1)
        density[idx] = inside * (m / (n - 1)) / np.prod(hi - lo, axis=1)
    return float(np.mean(np.log((1 - BACKGROUND) * density + background)))


def penalized_score(x: np.ndarray, labels: np.ndarray) -> float:
    """leave_one_out_score less a BIC charge per place ((2 d + 1) / 2 log N over N, per observation)."""
    n, d = x.shape
    return leave_one_out_score(x, labels) - (labels.max() + 1) * (2 * d + 1) * np.log(n) / (2 * n)


def _linkage_splits(x: np.ndarray, max_places: int):
    tree = linkage(x, "single")
    for k in range(2, max_places + 1):
        yield fcluster(tree, k, "maxclust") - 1


def _gap_splits(labels: np.ndarray, x: np.ndarray):
    """Every split of one place at the widest gap between its sorted coordinates along one axis."""
    for place in range(labels.max() + 1):
        idx = np.flatnonzero(labels == place)
        if len(idx) < 2 * MIN_PER_PLACE:
            continue
        for axis in range(x.shape[1]):
            order = idx[np.argsort(x[idx, axis], kind="stable")]
            gaps = np.diff(x[order, axis])[MIN_PER_PLACE - 1:len(idx) - MIN_PER_PLACE]
            cut = MIN_PER_PLACE + int(np.argmax(gaps))
            out = labels.copy()
            out[order[cut:]] = labels.max() + 1
            yield out


def _greedy_gap_split(x: np.ndarray, max_places: int) -> tuple[np.ndarray, float]:
    labels = np.zeros(len(x), dtype=int)
    best = penalized_score(x, labels)
    while labels.max() + 1 < max_places:
        tried = [(penalized_score(x, c), c) for c in _gap_splits(labels, x)]
        if not tried:
            break
        score, candidate = max(tried, key=lambda sc: sc[0])
        if score <= best + 1e-9:
            break
        best, labels = score, candidate
    return labels, best


def split(points: np.ndarray, max_places: int = MAX_PLACES) -> np.ndarray:
    """Place labels 0..K-1 of the observations [N, d] (0 the place with most observations)."""
    x = informative(points)
    n = len(x)
    if n < MIN_OBSERVATIONS or x.shape[1] == 0:
        return np.zeros(n, dtype=int)
    max_places = min(max_places, n // MIN_PER_PLACE)
    labels, best = _greedy_gap_split(x, max_places)
    for cut in _linkage_splits(x, max_places):
        if np.bincount(cut).min() >= MIN_PER_PLACE:
            score = penalized_score(x, cut)
            if score > best + 1e-9:
                best, labels = score, cut
    sizes = np.bincount(labels)
    rank = np.argsort(-sizes, kind="stable")
    return np.argsort(rank)[labels]


def several(points: np.ndarray) -> np.ndarray | None:
    """The place labels when the observations make two or more places; None for one place."""
    labels = split(points)
    return labels if labels.max(initial=0) > 0 else None


def allocate(labels: np.ndarray, n: int) -> np.ndarray:
    """How many of n proposals each place gets: its share of the observations (largest remainders)."""
    share = np.bincount(labels) / len(labels)
    counts = np.floor(share * n).astype(int)
    left = n - counts.sum()
    counts[np.argsort(-(share * n - counts), kind="stable")[:left]] += 1
    return counts


def shares(points: np.ndarray, n: int, labels: np.ndarray | None = None) -> list[tuple[np.ndarray, int]]:
    """(a place's observations, how many of n proposals it gets) for every place given some; one place: all."""
    points = np.asarray(points, dtype=np.float64)
    labels = split(points) if labels is None else labels
    if len(points) == 0 or labels.max(initial=0) == 0:
        return [(points, n)]
    return [(points[labels == place], int(m)) for place, m in enumerate(allocate(labels, n)) if m]
