"""Navigate-to datasets: (state, valid base target) pairs from simulated household tasks.

Each task (seed, task index) is played out: the robot starts at a free pose, then for each
navigate-to (item to pick, receptacle to place it in) it records the state and the valid
targets among ``candidates`` uniform samples of the band around the object where a valid
target can lie, at most ``max_targets`` of them, and drives to one of them. Keeping all
valid ones out of a fixed number of uniform candidates makes the data's density at a target
proportional to the chance that the target is valid given the state (clutter unseen), which
is what a proposer should sample from.

General data: every navigate-to whose object is not a ball (9 types). Specialized data:
navigate-to-ball only, split into train and test by task index (disjoint tasks).
"""
from __future__ import annotations

import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..domains import NAVIGATE_TO
from .geometry import facing_yaw, signed_distance
from .scene import (
    GRIPPER_LENGTH,
    OBJECT_TYPES,
    REACH,
    ROBOT_RADIUS,
    TASKS,
    WORLD_SIZE,
    Scene,
    generate_scene,
    type_code,
)

if TYPE_CHECKING:
    from .world import World

DATASET_VERSION = 1
STATE_FIELDS = ("object_x", "object_y", "object_width", "object_height", "object_yaw", "object_held",
                "robot_x", "robot_y", "robot_yaw", "gripper_free")
STATE_DIM = len(STATE_FIELDS)
TARGET_DIM = 2
GENERAL_TYPES = tuple(t for t in OBJECT_TYPES if t != "ball")
SPECIALIZED_TYPES = ("ball",)
BALL_TASK = TASKS.index(("ball", "bin"))

# Task counts that reach the thesis's data sizes here (1,918,048 general points, 442 ball train and
# 13,398 ball test points; measured in docs/simulator.md).
FULL_GENERAL_TASKS = 69_000
FULL_SPECIALIZED_TRAIN_TASKS = 26
FULL_SPECIALIZED_TEST_TASKS = 699

_ARRAYS = {"states": np.float32, "targets": np.float32, "task_index": np.int64, "object_type": np.int16,
           "seed": np.int64, "step": np.int16, "object_index": np.int16}


@dataclass(frozen=True)
class Sampling:
    """How targets are drawn per state: fixed candidate count, so validity sets the density."""

    candidates: int = 48
    max_targets: int = 16


@dataclass
class NavigateData:
    """One row per (state, valid target); seed, task index and step rebuild the scene it came from."""

    states: np.ndarray  # [n, 10] see STATE_FIELDS
    targets: np.ndarray  # [n, 2] world x, y of the robot's base
    task_index: np.ndarray  # [n]
    object_type: np.ndarray  # [n] index into OBJECT_TYPES
    seed: np.ndarray  # [n] scene seed
    step: np.ndarray  # [n] index into generate_scene(seed, task_index).steps
    object_index: np.ndarray  # [n] which task object of the scene is the goal
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def type_names(self) -> np.ndarray:
        return np.array(OBJECT_TYPES)[self.object_type]

    def subset(self, mask) -> "NavigateData":
        return NavigateData(**{k: getattr(self, k)[mask] for k in _ARRAYS}, meta=dict(self.meta))

    def counts_per_type(self) -> dict[str, int]:
        codes, counts = np.unique(self.object_type, return_counts=True)
        return {OBJECT_TYPES[c]: int(n) for c, n in zip(codes, counts)}

    def n_states(self) -> int:
        return len(np.unique(np.column_stack([self.seed, self.task_index, self.step]), axis=0))

    @classmethod
    def concat(cls, parts: list["NavigateData"], meta: dict | None = None) -> "NavigateData":
        if not parts:
            return cls.empty(meta)
        return cls(**{k: np.concatenate([getattr(p, k) for p in parts]) for k in _ARRAYS}, meta=meta or {})

    @classmethod
    def empty(cls, meta: dict | None = None) -> "NavigateData":
        shapes = {"states": (0, STATE_DIM), "targets": (0, TARGET_DIM)}
        return cls(**{k: np.zeros(shapes.get(k, (0,)), dtype=np.float64 if k in shapes else t)
                      for k, t in _ARRAYS.items()}, meta=meta or {})

    def save(self, path) -> Path:
        """``path`` (.npz, compressed; floats as float32) plus a ``.json`` sidecar with the metadata."""
        path = Path(path).with_suffix(".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.meta, indent=2, sort_keys=True)
        arrays = {k: getattr(self, k).astype(t) for k, t in _ARRAYS.items()}
        np.savez_compressed(path, metadata=np.array(text), **arrays)
        path.with_suffix(".json").write_text(text + "\n")
        return path

    @classmethod
    def load(cls, path) -> "NavigateData":
        """Read a saved dataset; its metadata comes from inside the .npz (the sidecar is for people)."""
        with np.load(Path(path).with_suffix(".npz"), allow_pickle=False) as f:
            arrays = {k: f[k].astype(np.float64 if t == np.float32 else t) for k, t in _ARRAYS.items()}
            meta = json.loads(str(f["metadata"]))
        return cls(**arrays, meta=meta)


def band_candidates(rect: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` uniform samples of the band around the object where valid targets can lie.

    Band: the robot clears the object (distance >= radius) but its gripper can still touch the
    object's boundary (distance <= radius + gripper).
    """
    out = np.empty((0, 2))
    c, s = np.cos(rect[4]), np.sin(rect[4])
    half = np.array([rect[2] / 2 + REACH, rect[3] / 2 + REACH])
    while len(out) < n:
        local = rng.uniform(-half, half, size=(2 * n, 2))
        world = rect[:2] + np.column_stack([local[:, 0] * c - local[:, 1] * s,
                                            local[:, 0] * s + local[:, 1] * c])
        d = signed_distance(world, rect)[:, 0]
        out = np.concatenate([out, world[(d >= ROBOT_RADIUS) & (d <= REACH)]])
    return out[:n]


def state_features(rect: np.ndarray, robot: np.ndarray, gripper_free: bool, held: bool = False) -> np.ndarray:
    """The 10 numbers a navigate-to sampler sees.

    The object's (x, y, width, height, yaw, held) and the robot's (x, y, yaw, gripper_free).
    """
    return np.concatenate([rect, [float(held)], robot, [float(gripper_free)]])


def _task_rows(world: World, scene: Scene, rng: np.random.Generator, sampling: Sampling,
               keep_types: frozenset[str], stats: dict) -> list[tuple]:
    """Play one task out; rows (state, target, step, object index, type) for the kept types."""
    start = world.free_poses(1, rng)
    robot = np.array([*start[0], rng.uniform(-np.pi, np.pi)]) if len(start) else np.array([10.0, 10.0, 0.0])
    rows = []
    for i, step in enumerate(scene.steps):
        world.set_step(step)
        rect = scene.object_rects[step.object_index]
        cand = band_candidates(rect, sampling.candidates, rng)
        valid = cand[world.check_targets(step.object_index, cand)][: sampling.max_targets]
        stats["checks"] += len(cand)
        kind = scene.object_kinds[step.object_index]
        if kind in keep_types:
            stats["states"] += 1
            stats["states_without_valid_target"] += int(len(valid) == 0)
            state = state_features(rect, robot, step.gripper_free)
            rows.extend((state, t, i, step.object_index, kind) for t in valid)
        if len(valid):  # the robot drives to one of them (already in random order)
            robot = np.array([*valid[0], facing_yaw(valid[:1], rect)[0]])
    return rows


def _rows_to_data(rows: list[tuple], seed: int, task_index: int) -> NavigateData:
    if not rows:
        return NavigateData.empty()
    n = len(rows)
    return NavigateData(
        states=np.array([r[0] for r in rows]), targets=np.array([r[1] for r in rows]),
        task_index=np.full(n, task_index, np.int64), seed=np.full(n, seed, np.int64),
        object_type=np.array([type_code(r[4]) for r in rows], np.int16),
        step=np.array([r[2] for r in rows], np.int16), object_index=np.array([r[3] for r in rows], np.int16))


def _new_stats() -> dict:
    return {"checks": 0, "states": 0, "states_without_valid_target": 0}


def generate_tasks(seed: int, task_indices, keep_types,
                   sampling: Sampling = Sampling()) -> tuple[NavigateData, dict]:
    """Rows of the given tasks (in order) for navigate-tos to ``keep_types``; one World, reused."""
    keep = frozenset(keep_types)
    stats = _new_stats()
    parts = []
    from .world import World  # PyBullet: imported only when the simulator runs

    with World() as world:
        for task_index in task_indices:
            scene = generate_scene(seed, task_index)
            world.load(scene)
            rng = np.random.default_rng([int(seed), int(task_index), 1])  # apart from the scene's stream
            rows = _task_rows(world, scene, rng, sampling, keep, stats)
            parts.append(_rows_to_data(rows, seed, task_index))
    return NavigateData.concat(parts), stats


def _chunk_job(args):
    return generate_tasks(*args)


def generate(seed: int, task_indices, keep_types, sampling: Sampling = Sampling(), progress: bool = False,
             workers: int = 1, chunk: int = 200, name: str = NAVIGATE_TO, on_progress=None) -> NavigateData:
    """Dataset over ``task_indices`` with metadata; ``workers`` > 1 spreads chunks over processes.

    Each task draws from its own (seed, task index) streams, so the result is the same for any
    number of workers or chunk size. ``on_progress(tasks_done, tasks_total, points)`` is called
    after each chunk; an exception it raises stops the generation (a cancel).
    """
    from ..diffusion.progress import progress_bar

    task_indices = [int(i) for i in task_indices]
    chunks = [task_indices[a:a + chunk] for a in range(0, len(task_indices), chunk)]
    jobs = [(seed, c, tuple(keep_types), sampling) for c in chunks]
    t0 = time.perf_counter()
    parts, stats = [], _new_stats()
    bar = progress_bar(total=len(task_indices), disable=not progress, desc=name, unit="task")
    pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn")) if workers > 1 else None
    try:
        results = pool.map(_chunk_job, jobs) if pool else map(_chunk_job, jobs)
        for job, (data, s) in zip(jobs, results):
            parts.append(data)
            stats = {k: stats[k] + s[k] for k in stats}
            bar.update(len(job[1]))
            bar.set_postfix(points=sum(len(p) for p in parts))
            if on_progress is not None:
                on_progress(sum(len(j[1]) for j in jobs[:len(parts)]), len(task_indices), sum(len(p) for p in parts))
    finally:
        bar.close()
        if pool:
            pool.shutdown()
    seconds = time.perf_counter() - t0
    data = NavigateData.concat(parts)
    data.meta = _metadata(data, name, seed, task_indices, keep_types, sampling, stats, seconds, workers)
    return data


def _metadata(data, name, seed, task_indices, keep_types, sampling, stats, seconds, workers) -> dict:
    return {
        "name": name, "version": DATASET_VERSION, "seed": int(seed),
        "n_tasks": len(task_indices),
        "task_index_min": min(task_indices, default=-1), "task_index_max": max(task_indices, default=-1),
        "object_types": list(OBJECT_TYPES), "kept_types": sorted(keep_types),
        "state_fields": list(STATE_FIELDS), "target_fields": ["base_x", "base_y"],
        "n_points": len(data), "n_states": stats["states"],
        "states_without_valid_target": stats["states_without_valid_target"],
        "counts_per_type": data.counts_per_type(),
        "candidates_per_state": sampling.candidates, "max_targets_per_state": sampling.max_targets,
        "checks": stats["checks"], "generation_seconds": round(seconds, 3),
        "points_per_second": round(len(data) / max(seconds, 1e-9), 1), "workers": workers,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "world": {"size": WORLD_SIZE, "robot_radius": ROBOT_RADIUS, "gripper_length": GRIPPER_LENGTH},
    }


def general_dataset(n_tasks: int = FULL_GENERAL_TASKS, seed: int = 0, progress: bool = True, workers: int = 1,
                    path=None, sampling: Sampling = Sampling()) -> NavigateData:
    """General prior data: navigate-to the 9 non-ball types over tasks 0..n_tasks-1 (all task kinds).

    The default size is the thesis's (about 1.9 million points); ``path`` saves .npz + .json.
    """
    data = generate(seed, range(n_tasks), GENERAL_TYPES, sampling, progress, workers, name="general")
    if path is not None:
        data.save(path)
    return data


def ball_task_indices(first: int, count: int) -> list[int]:
    """Task indices of ball->bin tasks number ``first`` .. ``first + count - 1``."""
    return [BALL_TASK + len(TASKS) * j for j in range(first, first + count)]


def specialized_datasets(n_train_tasks: int = FULL_SPECIALIZED_TRAIN_TASKS,
                         n_test_tasks: int = FULL_SPECIALIZED_TEST_TASKS, seed: int = 1,
                         progress: bool = False, workers: int = 1, path_prefix=None,
                         sampling: Sampling = Sampling()) -> tuple[NavigateData, NavigateData]:
    """Navigate-to-ball data, train on the first ball tasks and test on the next (disjoint indices).

    Its own seed (1, the general data uses 0) keeps its scenes apart from the general data's.
    """
    train = generate(seed, ball_task_indices(0, n_train_tasks), SPECIALIZED_TYPES, sampling, progress,
                     workers, name="specialized_train")
    test = generate(seed, ball_task_indices(n_train_tasks, n_test_tasks), SPECIALIZED_TYPES, sampling,
                    progress, workers, name="specialized_test")
    if path_prefix is not None:
        train.save(f"{path_prefix}_train.npz")
        test.save(f"{path_prefix}_test.npz")
    return train, test
