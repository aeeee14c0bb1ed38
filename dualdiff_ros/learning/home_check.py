"""An answer that checks itself: which way of answering explains this home's own observations best.

A home-aware prior trusts its reading of the home's observations; a specialist trusts the few
points it was trained on; the general prior knows nothing of the home. Each can be wrong for a
home unlike the ones it learned from (two shelves read as one box centred on the gap). The robot
already holds evidence about every way it could answer: its stored observations. So, before
answering, every available way draws proposals and is scored by how well they explain the
home's observations, and the best one is served:

- score = mean log density of the observations under a Gaussian kernel density of the way's
  proposals, in the home's frame, with one bandwidth for every way (from the observations' own
  spread, so a way cannot win by a narrower kernel);
- every way is scored on the observations it has seen: the specialist was trained on them, the
  home-aware prior reads them all in its context. Like is compared with like. (Scoring the prior on
  folds it did not read, while the specialist's score stayed in-sample, served the specialist on
  homes where the kernel-reading prior answered better: docs/notes/2026-12-04-kernel-readout.md.
  `folds` >= 2 still scores a context reader that way.)
- a way other than the preferred one (the home-aware prior) must beat it by `margin` nats per
  observation to be served.

Pure numpy and the diffusion core: the service and the learning curve call the same `check`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

FOLDS = 0             # 0: in-sample (the prior reads every observation); K >= 2: K - 1 folds read, 1 scored
DRAWS = 64            # proposals per way (and per fold) the check draws
MIN_BANDWIDTH = 0.02  # metres: a floor, so a handful of coincident observations does not give h = 0


@dataclass
class Way:
    """One way of answering: `draw(context_local, n, seed)` -> proposals in the home's frame [n, 3].

    `reads_context`: the way reads the observations it is given (the home-aware prior); with
    folds >= 2 it is then scored on held-out folds, by default on every observation like the rest.
    """

    name: str
    draw: Callable[[np.ndarray, int, int], np.ndarray]
    reads_context: bool = False


@dataclass
class Verdict:
    """The way chosen, every way's score (nats per observation) and a sentence saying why."""

    chosen: str
    scores: dict = field(default_factory=dict)
    reason: str = ""


def bandwidth(observations: np.ndarray) -> np.ndarray:
    """Per-axis kernel width: Scott's rule on the observations, floored (one for every way)."""
    obs = np.asarray(observations, dtype=np.float64)
    n, d = obs.shape
    spread = obs.std(axis=0) if n > 1 else np.zeros(d)
    return np.maximum(spread * n ** (-1.0 / (d + 4)), MIN_BANDWIDTH)


def log_density(points: np.ndarray, samples: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Log of a Gaussian KDE of `samples` [m, d] (per-axis `width`) at `points` [n, d], stable for far points."""
    points, samples = np.asarray(points, dtype=np.float64), np.asarray(samples, dtype=np.float64)
    z = (points[:, None, :] - samples[None, :, :]) / width
    log_k = -0.5 * np.sum(z * z, axis=-1) - np.sum(np.log(width)) - 0.5 * points.shape[1] * math.log(2 * math.pi)
    top = log_k.max(axis=1, keepdims=True)
    return (top + np.log(np.mean(np.exp(log_k - top), axis=1, keepdims=True)))[:, 0]


def informative_axes(observations: np.ndarray) -> np.ndarray:
    """Axes along which the observations vary (a table top's height does not)."""
    obs = np.asarray(observations, dtype=np.float64)
    return (obs.max(axis=0) - obs.min(axis=0)) > 1e-6 if len(obs) > 1 else np.ones(obs.shape[1], dtype=bool)


def score_way(way: Way, observations: np.ndarray, seed: int, draws: int = DRAWS, folds: int = FOLDS) -> float:
    """Mean log density of the observations under the way's proposals (held out for context readers).

    Axes along which the observations do not vary (a table top's height) are left out: they carry
    no information, and a near-zero width there would reward a flat answer without limit.
    """
    obs = np.asarray(observations, dtype=np.float64)
    axes = informative_axes(obs)
    width = bandwidth(obs[:, axes])
    if not way.reads_context or folds < 2:  # in-sample: on the observations the way has seen
        samples = way.draw(obs, draws, seed)
        return float(np.mean(log_density(obs[:, axes], samples[:, axes], width)))
    k = min(folds, len(obs))
    if k < 2:  # one observation: nothing to hold out; the prior without it is scored on it
        samples = way.draw(obs[:0], draws, seed)
        return float(np.mean(log_density(obs[:, axes], samples[:, axes], width)))
    fold = np.arange(len(obs)) % k
    scores = []
    for i in range(k):
        samples = way.draw(obs[fold != i], draws, seed + i)
        scores.append(log_density(obs[fold == i][:, axes], samples[:, axes], width))
    return float(np.mean(np.concatenate(scores)))


def check(ways: list[Way], observations: np.ndarray, seed: int, preferred: str, margin: float,
          draws: int = DRAWS, folds: int = FOLDS) -> Verdict:
    """Score every way on the home's observations and choose: the best, unless `preferred` is within `margin`."""
    if not ways:
        raise ValueError("check needs at least one way of answering")
    obs = np.asarray(observations, dtype=np.float64).reshape(-1, 3)
    if len(obs) == 0:
        raise ValueError("check needs at least one observation of the home")
    scores = {w.name: score_way(w, obs, seed, draws, folds) for w in ways}
    finite = {k: v for k, v in scores.items() if math.isfinite(v)}
    if not finite:
        return Verdict(preferred if preferred in scores else ways[0].name, scores,
                       "no way gave a finite score: answered the preferred way unchecked")
    best = max(finite, key=finite.get)
    chosen = best
    if preferred in finite and best != preferred and finite[best] - finite[preferred] < margin:
        chosen = preferred
    shown = ", ".join(f"{k} {v:.2f}" for k, v in sorted(scores.items(), key=lambda kv: -kv[1]))
    why = ("it explains them best" if chosen == best else
           f"no other way explains them better by {margin:g} nats or more")
    return Verdict(chosen, scores, f"checked against this home's {len(obs)} observation(s): {chosen} answers, "
                                   f"{why} (log-likelihood per observation: {shown})")
