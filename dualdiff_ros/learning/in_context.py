"""A home-aware general prior: it reads the home's observations from its condition, no training needed.

Trained on fleet data grouped by home (domains/homes.py, `fleet_rows`), the denoiser sees, beside
the furniture's pose, a summary of other observations from the same home: how many there are, and
their per-axis minimum, maximum and mean in the furniture's frame. The summary is a fixed
permutation-invariant set encoding, not a learned one: for the cabinet family (uniform boxes) the
count, minimum and maximum are the sufficient statistics of the home, so nothing a learned encoder
could extract is lost; for the round table they bound the disc. A share of the rows sees no
context (count 0, all zeros): the plain prior, and the "null" of classifier-free guidance, whose
scale sharpens the prior towards the context (a tempered posterior, SamplerConfig.guidance).

Pseudo-observations temper it more faithfully: telling the prior a home has N + tau observations
with the same minimum, maximum and mean is, for a uniform box, exactly the likelihood s^-(N + tau)
of the posterior raised to the power (N + tau) / N, so it sharpens towards the observed extent
where data is scarce and fades by itself as N grows (`with_pseudo_observations`). The added count is
capped at N (at most a doubling of the evidence): one or two observations say little about a home's
extent, and telling the prior they were ten shrinks its proposals onto them (measured, issue 14).

A robot then specializes at inference time: the N-th observation changes the next answer.

The summary is sufficient for one box only: two shelves have the whole cabinet as their bounding
box and a mean in the empty middle. The default context is therefore the set itself ("set"): up
to MAX_CONTEXT observations in the furniture's frame, read by a learned DeepSets encoder and,
at every denoising step, by a kernel readout of the points near the noisy target
(diffusion/denoisers.py `SetKernelMLP`), trained on fleet homes of many shapes (domains/homes.py,
family "fleet"). A pooled code of 128 points blurs small places and shapes it never trained on;
the readout keeps them, because it reads the points themselves (reader "kernel"; "pool" is the
pooled code alone). The summary stays as a measured alternative ("summary").
"""
from __future__ import annotations

import numpy as np

SUMMARY_SIZE = 10           # count, min (3), max (3), mean (3)
MAX_CONTEXT = 128           # count is given as log(1 + n) / log(1 + MAX_CONTEXT); the set holds at most this many
NO_CONTEXT_SHARE = 0.15     # training rows that see the null context
POINT_DIM = 3
CONTEXT_KINDS = ("set", "summary")
# How a "set" prior reads its points: "kernel" (pooled encoding + a per-step kernel readout of the
# points, diffusion/denoisers.py SetKernelMLP; the default) or "pool" (the pooled encoding only, SetConditionedMLP).
SET_READERS = ("kernel", "pool")
# The kernel readout's widths in normalized target units (the furniture spans -1..1): from a few
# millimetres on a cabinet (a shelf board, a thin strip on a table) to half the furniture.
KERNEL_BANDWIDTHS = (0.005, 0.01, 0.02, 0.05, 0.15, 0.4)
SET_SIZE = 1 + MAX_CONTEXT * POINT_DIM  # count / MAX_CONTEXT, then the points, zero-padded


MAX_CONTEXT_POINTS = 4 * MAX_CONTEXT  # points a home context carries (evenly spread): the set reads 128 of them


def context_points(local: np.ndarray, limit: int = MAX_CONTEXT_POINTS) -> np.ndarray:
    """At most `limit` of a home's observations [n, 3], evenly spread over the sequence (what a context carries)."""
    local = np.asarray(local, dtype=np.float64).reshape(-1, POINT_DIM)
    if len(local) <= limit:
        return local
    return local[np.linspace(0, len(local) - 1, limit).round().astype(int)]


def context_size(kind: str) -> int:
    """Numbers the context adds to the condition."""
    if kind not in CONTEXT_KINDS:
        raise ValueError(f"unknown home context {kind!r}: use one of {CONTEXT_KINDS}")
    return SET_SIZE if kind == "set" else SUMMARY_SIZE


def kept_points(local: np.ndarray) -> np.ndarray:
    """At most MAX_CONTEXT of a home's observations, evenly spread over the sequence when there are more.

    Deterministic, so the same observations give the same answer; spread over the sequence, so a
    home seen 1,000 times is still read from the whole of what the robot saw.
    """
    return context_points(local, MAX_CONTEXT)


def set_block(local: np.ndarray) -> np.ndarray:
    """``[SET_SIZE]``: the count over MAX_CONTEXT, then the (kept) points, zero-padded."""
    points = kept_points(local)
    out = np.zeros(SET_SIZE)
    out[0] = len(points) / MAX_CONTEXT
    out[1:1 + points.size] = points.reshape(-1)
    return out


def context_block(kind: str, local: np.ndarray) -> np.ndarray:
    """The home's observations as the home-aware prior of this kind reads them."""
    context_size(kind)
    return set_block(local) if kind == "set" else summary(local)


def model_context_kind(model) -> str:
    """The context a home-aware prior reads ("set" or "summary"; priors before the set encoder: summary)."""
    return str(model.metadata.get("context", {}).get("kind", "summary"))


def count_feature(count: float) -> float:
    """The summary's count entry: log(1 + n) / log(1 + MAX_CONTEXT), n clamped to the trained range."""
    return float(np.log1p(min(max(count, 0.0), MAX_CONTEXT)) / np.log1p(MAX_CONTEXT))


def summary(local: np.ndarray) -> np.ndarray:
    """``[SUMMARY_SIZE]`` of observations ``[n, 3]`` in the furniture's frame; zeros for n = 0."""
    local = np.asarray(local, dtype=np.float64).reshape(-1, 3)
    if len(local) == 0:
        return np.zeros(SUMMARY_SIZE)
    return np.concatenate([[count_feature(len(local))], local.min(0), local.max(0), local.mean(0)])


def pseudo_used(count: int, pseudo: float) -> float:
    """The pseudo-observations added to `count` real ones: `pseudo`, but never more than `count`.

    The cap keeps the tempering at most a doubling of the evidence, so a home seen once or twice is
    not treated as well known (module docstring).
    """
    if not (np.isfinite(pseudo) and pseudo >= 0):
        raise ValueError(f"pseudo-observations {pseudo}: give a finite count >= 0 (0 = the plain posterior)")
    return float(min(pseudo, max(count, 0)))


def with_pseudo_observations(home_summary: np.ndarray, count: int, pseudo: float) -> np.ndarray:
    """`home_summary` of `count` observations, told there are ``count + pseudo_used(count, pseudo)``.

    The same extent and mean: a tempered posterior (module docstring), proposals keep closer to where
    the home's objects were seen. A home with no observations keeps the null context.
    """
    out = np.array(home_summary, dtype=np.float64)
    if count > 0:
        out[0] = count_feature(count + pseudo_used(count, pseudo))
    return out


def context_conditions(conditions: np.ndarray, local_context: np.ndarray, pseudo: float = 0.0,
                       kind: str = "summary") -> np.ndarray:
    """Request conditions ``[m, 3]`` with one home's observations ``[n, 3]`` appended as its context.

    `pseudo` > 0 adds pseudo-observations (`with_pseudo_observations`; the summary only: a set is
    what was seen, nothing more).
    """
    local_context = np.reshape(local_context, (-1, POINT_DIM))
    if kind == "summary":
        block = with_pseudo_observations(summary(local_context), len(local_context), pseudo)
    else:
        block = context_block(kind, local_context)
    return np.concatenate([np.asarray(conditions, dtype=np.float64), np.tile(block, (len(conditions), 1))], axis=1)


def fleet_rows(domain: str, n_homes: int, points_per_home: int, rows_per_home: int, seed: int,
               kind: str = "summary", family: str = "box"):
    """(conditions [rows, 3 + context_size(kind)], targets [rows, 3]) from homes drawn from `family`.

    Each row is one observation of a home, its condition the furniture's pose and the context of a
    random subset of the home's other observations: empty for NO_CONTEXT_SHARE of the rows, else of
    a size log-uniform in 1..MAX_CONTEXT, so a few observations are as well covered as many.
    """
    from ..domains.homes import draw_home, home_domain

    rng = np.random.default_rng(seed)
    conds = np.zeros((n_homes * rows_per_home, 3 + context_size(kind)))
    targets = np.zeros((n_homes * rows_per_home, 3))
    log_max = np.log(min(MAX_CONTEXT, points_per_home - 1))
    i = 0
    for _ in range(n_homes):
        home = home_domain(domain, draw_home(domain, family, rng))
        c = home.sample_conditions(points_per_home, rng)
        t = home.sample_specialized_targets(c, rng)
        local = home.region_frame(c, t)
        for row in rng.choice(points_per_home, size=rows_per_home, replace=rows_per_home > points_per_home):
            others = np.delete(np.arange(points_per_home), row)
            n = 0 if rng.random() < NO_CONTEXT_SHARE else int(np.exp(rng.uniform(0, log_max)))
            context = local[rng.choice(others, size=n, replace=False)]
            conds[i, :3], conds[i, 3:] = c[row], context_block(kind, context)
            targets[i] = t[row]
            i += 1
    return conds, targets


def home_aware_architecture(architecture: dict, kind: str, reader: str = "kernel") -> dict:
    """The recipe's network with the set encoder in front (kind "set"); the summary needs none."""
    if reader not in SET_READERS:
        raise ValueError(f"unknown set reader {reader!r}: use one of {SET_READERS}")
    if kind == "summary":
        return dict(architecture)
    if architecture.get("name", "mlp") != "mlp":
        raise ValueError(f"the set encoder runs in front of an 'mlp' network, not {architecture.get('name')!r}")
    out = {**architecture, "name": "set_mlp", "state_dim": 3, "set_size": MAX_CONTEXT, "point_dim": POINT_DIM}
    if reader == "kernel":
        out.update(name="set_kernel", bandwidths=list(KERNEL_BANDWIDTHS))
    return out


def home_aware_condition_normalizer(conditions: np.ndarray, kind: str, target_space=None):
    """The condition normalizer of a home-aware prior: a set's points share one scale per axis.

    Fitting each padded column on its own would give slot 5 and slot 90 different scales and
    break the encoder's permutation invariance; the count column is kept as is (it is a fraction).
    With `target_space` = (target normalizer, origin), the points are normalized exactly as the
    targets they are observations of (a point p is the target origin + p relative to the furniture):
    the kernel readout compares them with the noisy target, so they must share its units.
    """
    from ..diffusion.normalizer import Normalizer

    fitted = Normalizer.fit(conditions)
    if kind == "summary":
        return fitted
    low, high = fitted.low.copy(), fitted.high.copy()
    low[3], high[3] = -1.0, 1.0  # identity: the encoder reads the count from it
    if target_space is not None:
        targets, origin = target_space
        points_low, points_high = targets.low - origin, targets.high - origin
    else:
        block = conditions[:, 4:].reshape(len(conditions), MAX_CONTEXT, POINT_DIM)
        count = np.round(conditions[:, 3] * MAX_CONTEXT).astype(int)
        used = np.arange(MAX_CONTEXT)[None, :] < count[:, None]
        points = block[used] if used.any() else np.zeros((1, POINT_DIM))
        points_low, points_high = points.min(0), points.max(0)
    low[4:], high[4:] = np.tile(points_low, MAX_CONTEXT), np.tile(points_high, MAX_CONTEXT)
    return Normalizer(low, high)


def mark_context_block(model, kind: str = "summary") -> None:
    """Record where the context sits in the condition (the block guidance drops) and what it is."""
    state = model.condition_dim - context_size(kind)
    model.metadata["droppable_condition"] = [state, model.condition_dim]
    layout = "count,min3,max3,mean3" if kind == "summary" else f"count/{MAX_CONTEXT},points{MAX_CONTEXT}x3"
    model.metadata["context"] = {"kind": kind, "summary" if kind == "summary" else "set": layout,
                                 "max_context": MAX_CONTEXT}


def train_prior(domain: str, recipe, fleet: tuple[int, int, int], seed: int, kind: str = "set",
                family: str = "fleet", progress: bool = True, reader: str = "kernel"):
    """A home-aware prior of `domain`: `fleet` = (homes, observations per home, rows per home) of `family`.

    The one way `dualdiff train --home-aware`, the learning curve and the studies train it.
    `reader` says how a "set" prior reads its points (SET_READERS).
    """
    from dataclasses import replace

    from ..diffusion.model import model_space_targets
    from ..diffusion.normalizer import Normalizer
    from ..domains.homes import FRAME_ORIGIN
    from ..model_store import train_general
    from ..seeds import stream

    homes, points, rows = fleet
    conditions, targets = fleet_rows(domain, homes, points, rows, stream(seed, "fleet_data"), kind, family)
    architecture = home_aware_architecture(recipe.architecture, kind, reader)
    target_space = None
    if architecture["name"] == "set_kernel":
        if not recipe.relative_targets:
            raise ValueError("the kernel set reader needs relative targets (points and targets in one frame)")
        target_space = (Normalizer.fit(model_space_targets(conditions, targets, True)), FRAME_ORIGIN[domain])
    recipe = replace(recipe, architecture=architecture)
    model = train_general(domain, conditions, targets, recipe, stream(seed, "train_general") + 1, progress,
                          condition_normalizer=home_aware_condition_normalizer(conditions, kind, target_space))
    mark_context_block(model, kind)
    model.metadata.update(role="home_aware", fleet={"homes": homes, "points": points, "rows": rows,
                                                    "family": family})
    return model
