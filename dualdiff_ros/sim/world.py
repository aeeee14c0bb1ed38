"""The PyBullet side: a kinematic world that answers "is this base target valid?" in batches.

Kinematic only (``p.DIRECT``, bodies teleported, no stepping), so a check is deterministic and
each ``World`` owns its physics client: several worlds can live side by side (one per process).
All bodies are 1-high prisms standing on z = 0 and every query runs at z = 0.5, so the 3D
queries answer the planar question exactly.

Validity of a target (x, y), the robot placed there and facing the object's centre:
  1. the robot's body (cylinder of radius 2) touches nothing: walls, clutter, other objects,
     the object itself (``getClosestPoints`` with distance ``clearance``), and
  2. the gripper reaches the object: the segment from the robot's centre to the gripper tip
     (length radius + gripper = 4, along the yaw) first hits the object (``rayTestBatch``), so
     an object behind a wall or a chair does not count as reached.
"""
from __future__ import annotations

import time

import numpy as np
import pybullet as p

from .baseline import ring_proposer
from .geometry import aabb, as_rects, facing_yaw
from .scene import REACH, ROBOT_RADIUS, WORLD_SIZE, Scene, generate_scene

_Z = 0.5  # mid-height of every body: where rays and the probe live
_PARK = (0.0, 0.0, -100.0)  # where absent bodies and the idle probe wait, below every ray
_RAY_BATCH = 8192  # below pybullet's MAX_RAY_INTERSECTION_BATCH_SIZE (16384)
_IDENTITY = (0.0, 0.0, 0.0, 1.0)


def _quat(yaw: float) -> tuple[float, float, float, float]:
    return (0.0, 0.0, float(np.sin(yaw / 2)), float(np.cos(yaw / 2)))


class World:
    """One physics client holding one scene at a time; use as a context manager.

    ``load(scene)`` rebuilds the bodies, ``set_step(step)`` hides carried or stowed objects,
    ``check_targets(object_index, targets)`` answers the validity question for a batch.
    """

    def __init__(self, scene: Scene | None = None, clearance: float = 0.0):
        self.client = p.connect(p.DIRECT)
        self.clearance = float(clearance)
        self.scene: Scene | None = None
        if scene is not None:
            self.load(scene)

    def __enter__(self) -> "World":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.client is not None and p.isConnected(self.client):
            p.disconnect(self.client)
        self.client = None

    # -- building -------------------------------------------------------------------------
    def _box(self, rect: np.ndarray) -> int:
        shape = p.createCollisionShape(p.GEOM_BOX, halfExtents=[rect[2] / 2, rect[3] / 2, _Z],
                                       physicsClientId=self.client)
        return p.createMultiBody(0, shape, basePosition=[rect[0], rect[1], _Z],
                                 baseOrientation=_quat(rect[4]), physicsClientId=self.client)

    def load(self, scene: Scene) -> "World":
        """Replace whatever was loaded by ``scene``; every object starts on the floor."""
        p.resetSimulation(physicsClientId=self.client)
        self.scene = scene
        rects = [scene.walls, scene.obstacles, scene.object_rects]
        self._rects = np.concatenate([as_rects(r) for r in rects], axis=0)
        self._ids = np.array([self._box(r) for r in self._rects], dtype=np.int64)
        first_object = len(scene.walls) + len(scene.obstacles)
        self._object_rows = np.arange(first_object, len(self._rects))
        self._object_ids = self._ids[self._object_rows]
        self._lo, self._hi = aabb(self._rects)
        self._active = np.ones(len(self._rects), dtype=bool)
        shape = p.createCollisionShape(p.GEOM_CYLINDER, radius=ROBOT_RADIUS, height=2 * _Z,
                                       physicsClientId=self.client)
        self._probe = p.createMultiBody(0, shape, basePosition=_PARK, physicsClientId=self.client)
        return self

    def set_absent(self, absent=()) -> None:
        """Take carried or stowed objects off the floor (out of every query) and put back the rest."""
        absent = set(int(i) for i in absent)
        for i, row in enumerate(self._object_rows):
            want = i not in absent
            if want == self._active[row]:
                continue
            self._active[row] = want
            pose = (self._rects[row, 0], self._rects[row, 1], _Z) if want else _PARK
            p.resetBasePositionAndOrientation(int(self._ids[row]), pose, _quat(self._rects[row, 4]),
                                              physicsClientId=self.client)

    def set_step(self, step) -> None:
        """Arrange the floor as it is for a navigate step (``scene.steps[i]``)."""
        self.set_absent(step.absent)

    # -- queries --------------------------------------------------------------------------
    def robot_collides(self, points: np.ndarray) -> np.ndarray:
        """Whether the robot's body at each point touches any present body, ``bool[N]``.

        A numpy broad phase (inflated bounding boxes) picks the few bodies near each point;
        PyBullet's closest points decide. One probe cylinder is teleported, never rebuilt.
        """
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        pad = ROBOT_RADIUS + self.clearance + 1e-6
        lo, hi = self._lo[self._active] - pad, self._hi[self._active] + pad
        ids = self._ids[self._active]
        near = ((points[:, None, :] > lo[None]) & (points[:, None, :] < hi[None])).all(axis=2)
        hits = np.zeros(len(points), dtype=bool)
        cid, probe, margin = self.client, self._probe, self.clearance
        for i in np.flatnonzero(near.any(axis=1)):
            p.resetBasePositionAndOrientation(probe, (points[i, 0], points[i, 1], _Z), _IDENTITY,
                                              physicsClientId=cid)
            for body in ids[near[i]]:
                if p.getClosestPoints(probe, int(body), margin, physicsClientId=cid):
                    hits[i] = True
                    break
        p.resetBasePositionAndOrientation(probe, _PARK, _IDENTITY, physicsClientId=cid)
        return hits

    def gripper_reaches(self, object_index: int, points: np.ndarray) -> np.ndarray:
        """Whether the gripper segment, aimed at the object's centre, first hits that object."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        target = int(self._object_ids[object_index])
        yaw = facing_yaw(points, self._rects[self._object_rows[object_index], :2])
        start = np.column_stack([points, np.full(len(points), _Z)])
        end = start + REACH * np.column_stack([np.cos(yaw), np.sin(yaw), np.zeros(len(points))])
        hit = np.empty(len(points), dtype=np.int64)
        for a in range(0, len(points), _RAY_BATCH):
            rays = p.rayTestBatch(start[a:a + _RAY_BATCH].tolist(), end[a:a + _RAY_BATCH].tolist(),
                                  physicsClientId=self.client)
            hit[a:a + len(rays)] = [r[0] for r in rays]
        return hit == target

    def check_targets(self, object_index: int, targets: np.ndarray) -> np.ndarray:
        """Validity of each base target for navigating to ``object_index``, ``bool[N]``.

        Analytic pre-checks first (inside the house, not on top of the object's centre,
        close enough to reach it at all), then PyBullet for the survivors.
        """
        targets = np.asarray(targets, dtype=np.float64).reshape(-1, 2)
        rect = self._rects[self._object_rows[object_index]]
        ok = np.isfinite(targets).all(axis=1)
        ok &= ((targets >= ROBOT_RADIUS) & (targets <= WORLD_SIZE - ROBOT_RADIUS)).all(axis=1)
        dist = np.hypot(*(np.nan_to_num(targets) - rect[:2]).T)
        ok &= (dist >= ROBOT_RADIUS) & (dist <= REACH + np.hypot(rect[2], rect[3]) / 2)
        idx = np.flatnonzero(ok)
        ok[idx] = ~self.robot_collides(targets[idx])
        idx = np.flatnonzero(ok)
        ok[idx] = self.gripper_reaches(object_index, targets[idx])
        return ok

    def free_poses(self, n: int, rng: np.random.Generator, max_batches: int = 50) -> np.ndarray:
        """Up to ``n`` collision-free robot positions, uniform over the house: start poses."""
        found = []
        for _ in range(max_batches):
            cand = rng.uniform(ROBOT_RADIUS, WORLD_SIZE - ROBOT_RADIUS, size=(4 * n, 2))
            found.extend(cand[~self.robot_collides(cand)])
            if len(found) >= n:
                break
        return np.array(found[:n]).reshape(-1, 2)


def check_targets(world_or_scene, object_index: int, targets: np.ndarray, absent=()) -> np.ndarray:
    """Validity of base targets, given a loaded ``World`` or a bare ``Scene`` (built, used, closed).

    With a ``World``, its current floor (``set_step``/``set_absent``) is used and ``absent``
    is ignored; with a ``Scene``, ``absent`` lists objects that are carried or stowed.
    """
    if isinstance(world_or_scene, World):
        return world_or_scene.check_targets(object_index, targets)
    with World(world_or_scene) as world:
        world.set_absent(absent)
        return world.check_targets(object_index, targets)


def benchmark_checks(seed: int = 0, n_scenes: int = 4, targets_per_step: int = 2000) -> dict:
    """Checks per second of ``World.check_targets`` on ring targets around each task object.

    Ring targets are the realistic load: most of them survive the analytic pre-checks, so the
    PyBullet queries are really exercised. Scene building is timed separately.
    """
    rng = np.random.default_rng(seed)
    n_checks, check_s, load_s, valid = 0, 0.0, 0.0, 0
    with World() as world:
        for task_index in range(n_scenes):
            scene = generate_scene(seed, task_index)
            t0 = time.perf_counter()
            world.load(scene)
            load_s += time.perf_counter() - t0
            for step in scene.steps:
                world.set_step(step)
                state = np.concatenate([scene.object_rects[step.object_index], np.zeros(5)])
                targets = ring_proposer(state, targets_per_step, rng)[0]
                t0 = time.perf_counter()
                valid += int(world.check_targets(step.object_index, targets).sum())
                check_s += time.perf_counter() - t0
                n_checks += len(targets)
    return {
        "checks": n_checks,
        "checks_per_s": n_checks / check_s,
        "us_per_check": 1e6 * check_s / n_checks,
        "scene_load_ms": 1e3 * load_s / n_scenes,
        "ring_valid_fraction": valid / n_checks,
    }
