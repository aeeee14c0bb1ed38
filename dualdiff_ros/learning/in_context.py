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
"""
from __future__ import annotations

import numpy as np

SUMMARY_SIZE = 10           # count, min (3), max (3), mean (3)
MAX_CONTEXT = 128           # count is given as log(1 + n) / log(1 + MAX_CONTEXT)
NO_CONTEXT_SHARE = 0.15     # training rows that see the null context


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


def context_conditions(conditions: np.ndarray, local_context: np.ndarray, pseudo: float = 0.0) -> np.ndarray:
    """Request conditions ``[m, 3]`` with one home's observations ``[n, 3]`` appended as its summary.

    `pseudo` > 0 adds pseudo-observations (`with_pseudo_observations`).
    """
    s = with_pseudo_observations(summary(local_context), len(np.reshape(local_context, (-1, 3))), pseudo)
    return np.concatenate([np.asarray(conditions, dtype=np.float64), np.tile(s, (len(conditions), 1))], axis=1)


def fleet_rows(domain: str, n_homes: int, points_per_home: int, rows_per_home: int, seed: int):
    """(conditions [rows, 3 + SUMMARY_SIZE], targets [rows, 3]) from homes drawn from the family.

    Each row is one observation of a home, its condition the furniture's pose and the summary of a
    random subset of the home's other observations: empty for NO_CONTEXT_SHARE of the rows, else of
    a size log-uniform in 1..MAX_CONTEXT, so a few observations are as well covered as many.
    """
    from ..domains.homes import draw_region, home_domain

    rng = np.random.default_rng(seed)
    conds, targets = [], []
    log_max = np.log(min(MAX_CONTEXT, points_per_home - 1))
    for _ in range(n_homes):
        home = home_domain(domain, draw_region(domain, rng))
        c = home.sample_conditions(points_per_home, rng)
        t = home.sample_specialized_targets(c, rng)
        local = home.region_frame(c, t)
        for row in rng.choice(points_per_home, size=rows_per_home, replace=rows_per_home > points_per_home):
            others = np.delete(np.arange(points_per_home), row)
            n = 0 if rng.random() < NO_CONTEXT_SHARE else int(np.exp(rng.uniform(0, log_max)))
            context = local[rng.choice(others, size=n, replace=False)]
            conds.append(np.concatenate([c[row], summary(context)]))
            targets.append(t[row])
    return np.array(conds), np.array(targets)


def mark_context_block(model) -> None:
    """Record where the context sits in the condition (the block guidance drops) and what it is."""
    state = model.condition_dim - SUMMARY_SIZE
    model.metadata["droppable_condition"] = [state, model.condition_dim]
    model.metadata["context"] = {"summary": "count,min3,max3,mean3", "max_context": MAX_CONTEXT}
