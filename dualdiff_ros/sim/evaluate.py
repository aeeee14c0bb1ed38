"""Score any navigate-to proposer in simulation, knowing nothing about how it was made.

A proposer is ``propose_fn(states [n, 10], k, rng) -> targets [n, k, 2]``. Each held-out state
is rebuilt from (seed, task index, step), every proposal is checked in PyBullet, and the
report gives validity, samples to the first valid proposal, spread and coverage of the valid
ones, and time per query. The uniform ring is the baseline every learned proposer must beat.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .baseline import ring_proposer  # noqa: F401  (re-exported: the baseline lives beside the harness)
from .dataset import NavigateData
from .scene import OBJECT_TYPES, generate_scene


@dataclass
class HeldOut:
    """One row per held-out state, with what is needed to rebuild its scene and the recorded valid targets."""

    states: np.ndarray  # [n, 10]
    seed: np.ndarray  # [n]
    task_index: np.ndarray  # [n]
    step: np.ndarray  # [n]
    object_index: np.ndarray  # [n]
    object_type: np.ndarray  # [n]
    reference: list  # n arrays [m_i, 2]: the dataset's valid targets for that state

    def __len__(self) -> int:
        return len(self.states)

    def head(self, n: int) -> "HeldOut":
        return HeldOut(self.states[:n], self.seed[:n], self.task_index[:n], self.step[:n],
                       self.object_index[:n], self.object_type[:n], self.reference[:n])


def _groups(keys: np.ndarray) -> list[np.ndarray]:
    """Row indices of each distinct key row, groups in order of first appearance."""
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    rows = np.argsort(inverse, kind="stable")
    groups = np.split(rows, np.cumsum(np.bincount(inverse))[:-1])
    return [groups[g] for g in np.argsort(first)]


def held_out_states(data: NavigateData) -> HeldOut:
    """Collapse a dataset's (state, target) rows to its distinct states, in order of first appearance.

    States with no valid target recorded are not in a dataset, so every held-out state has an answer.
    """
    groups = _groups(np.column_stack([data.seed, data.task_index, data.step]))
    rows = np.array([g[0] for g in groups], dtype=np.int64)
    return HeldOut(data.states[rows], data.seed[rows], data.task_index[rows], data.step[rows],
                   data.object_index[rows], data.object_type[rows], [data.targets[g] for g in groups])


def _propose(propose_fn, states, k, rng, batch_size) -> tuple[np.ndarray, float]:
    out, seconds = [], 0.0
    for a in range(0, len(states), batch_size):
        t0 = time.perf_counter()
        proposals = np.asarray(propose_fn(states[a:a + batch_size], k, rng), dtype=np.float64)
        seconds += time.perf_counter() - t0
        expected = (min(batch_size, len(states) - a), k, 2)
        if proposals.shape != expected:
            raise ValueError(f"propose_fn returned shape {proposals.shape}, expected {expected}")
        out.append(proposals)
    return np.concatenate(out), seconds


def _check_all(held_out: HeldOut, proposals: np.ndarray, on_progress=None) -> np.ndarray:
    """Validity ``[n, k]``: one world, one scene build per task, the floor set per step."""
    valid = np.zeros(proposals.shape[:2], dtype=bool)
    done = 0
    from .world import World  # PyBullet: imported only when the simulator runs

    with World() as world:
        for rows in _groups(np.column_stack([held_out.seed, held_out.task_index])):
            scene = generate_scene(int(held_out.seed[rows[0]]), int(held_out.task_index[rows[0]]))
            world.load(scene)
            for i in rows:
                step = scene.steps[int(held_out.step[i])]
                rect = scene.object_rects[step.object_index]
                same = np.allclose(rect, held_out.states[i, :5], atol=1e-3)
                if step.object_index != held_out.object_index[i] or not same:
                    raise ValueError(f"held-out state {i} does not match its rebuilt scene: "
                                     "different simulator version or seed?")
                world.set_step(step)
                valid[i] = world.check_targets(step.object_index, proposals[i])
                done += 1
                if on_progress is not None:
                    on_progress("checking", done, len(valid))
    return valid


def _mean_pairwise(points: np.ndarray) -> float:
    d = np.linalg.norm(points[:, None] - points[None], axis=-1)
    return float(d.sum() / (len(points) * (len(points) - 1)))


def _coverage(valid_points: np.ndarray, reference: np.ndarray, radius: float) -> float:
    """Share of recorded valid targets with a valid proposal within ``radius``: dropped modes show here."""
    if len(reference) == 0:
        return float("nan")
    if len(valid_points) == 0:
        return 0.0
    d = np.linalg.norm(reference[:, None] - valid_points[None], axis=-1)
    return float((d.min(axis=1) <= radius).mean())


def evaluate_proposer(propose_fn, held_out, samples_per_state: int = 16, cap: int | None = None,
                      seed: int = 0, batch_size: int = 1024, coverage_radius: float = 1.0,
                      on_progress=None) -> dict:
    """Score ``propose_fn`` on held-out states (a ``HeldOut`` or a ``NavigateData``).

    - validity: share of all proposals that are valid;
    - success: share of states with at least one valid proposal among ``samples_per_state``;
    - samples_to_first_valid: mean position of the first valid proposal, failures charged ``cap``
      (default ``samples_per_state + 1``: one more than the budget);
    - spread: mean pairwise distance of a state's valid proposals (states with two or more);
    - coverage: share of recorded valid targets within ``coverage_radius`` of a valid proposal;
    - ms_per_query: proposer time per state (all ``samples_per_state`` proposals), batched.

    ``on_progress(stage, done, total)`` ("proposing" once, then "checking" per state) may raise to stop.
    """
    if isinstance(held_out, NavigateData):
        held_out = held_out_states(held_out)
    k = int(samples_per_state)
    cap = k + 1 if cap is None else int(cap)
    rng = np.random.default_rng(seed)
    if on_progress is not None:
        on_progress("proposing", 0, len(held_out))
    proposals, seconds = _propose(propose_fn, held_out.states, k, rng, batch_size)
    valid = _check_all(held_out, proposals, on_progress)
    first = np.where(valid.any(axis=1), valid.argmax(axis=1) + 1, cap)
    spreads = [_mean_pairwise(proposals[i][valid[i]]) for i in range(len(valid)) if valid[i].sum() >= 2]
    ref_spreads = [_mean_pairwise(r) for r in held_out.reference if len(r) >= 2]
    coverage = [_coverage(proposals[i][valid[i]], held_out.reference[i], coverage_radius)
                for i in range(len(valid))]
    by_type = {OBJECT_TYPES[c]: float(valid[held_out.object_type == c].mean())
               for c in np.unique(held_out.object_type)}
    return {
        "n_states": len(held_out), "samples_per_state": k, "cap": cap,
        "validity": float(valid.mean()), "success": float(valid.any(axis=1).mean()),
        "samples_to_first_valid": float(first.mean()),
        "spread": float(np.mean(spreads)) if spreads else float("nan"),
        "reference_spread": float(np.mean(ref_spreads)) if ref_spreads else float("nan"),
        "coverage": float(np.nanmean(coverage)) if len(coverage) else float("nan"),
        "ms_per_query": 1e3 * seconds / max(len(held_out), 1),
        "validity_by_type": by_type,
    }
