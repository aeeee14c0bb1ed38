"""Planar rectangle geometry in numpy: cheap pre-checks for PyBullet and an exact twin to test it.

A rectangle is a row ``[x, y, width, height, yaw]``: centre, full extent along its own x and
y axes, rotation about z. Functions broadcast points ``[N, 2]`` against rectangles ``[B, 5]``
and return ``[N, B]`` arrays, so one call covers a whole batch of candidate targets.
"""
from __future__ import annotations

import numpy as np

from ..maps import facing_yaw  # noqa: F401  (re-exported: the robot faces its goal, in the sim as on the map)


def as_rects(rects) -> np.ndarray:
    """Any rectangle-like input as float64 ``[B, 5]`` (an empty scene part becomes ``[0, 5]``)."""
    return np.asarray(rects, dtype=np.float64).reshape(-1, 5)


def to_local(points: np.ndarray, rects: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points in each rectangle's frame: ``(lx, ly)`` of shape ``[N, B]``."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    rects = as_rects(rects)
    dx = points[:, None, 0] - rects[None, :, 0]
    dy = points[:, None, 1] - rects[None, :, 1]
    c, s = np.cos(rects[:, 4]), np.sin(rects[:, 4])
    return dx * c + dy * s, -dx * s + dy * c


def signed_distance(points: np.ndarray, rects: np.ndarray) -> np.ndarray:
    """Distance from each point to each rectangle, negative inside: circle overlap is ``d < r``."""
    lx, ly = to_local(points, rects)
    rects = as_rects(rects)
    qx = np.abs(lx) - rects[None, :, 2] / 2
    qy = np.abs(ly) - rects[None, :, 3] / 2
    outside = np.hypot(np.maximum(qx, 0.0), np.maximum(qy, 0.0))
    inside = np.minimum(np.maximum(qx, qy), 0.0)
    return outside + inside


def aabb(rects: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned bounds ``(lo [B,2], hi [B,2])``: the broad phase before any PyBullet call."""
    rects = as_rects(rects)
    c, s = np.abs(np.cos(rects[:, 4])), np.abs(np.sin(rects[:, 4]))
    hw, hh = rects[:, 2] / 2, rects[:, 3] / 2
    half = np.stack([hw * c + hh * s, hw * s + hh * c], axis=1)
    return rects[:, :2] - half, rects[:, :2] + half


def ray_entry(origins: np.ndarray, directions: np.ndarray, rects: np.ndarray) -> np.ndarray:
    """Distance along each ray until it enters each rectangle (0 if it starts inside, inf if it misses).

    Slab method in the rectangle's frame; ``directions`` must be unit vectors ``[N, 2]``.
    """
    rects = as_rects(rects)
    lx, ly = to_local(origins, rects)
    directions = np.asarray(directions, dtype=np.float64).reshape(-1, 2)
    c, s = np.cos(rects[:, 4]), np.sin(rects[:, 4])
    dx = directions[:, None, 0] * c + directions[:, None, 1] * s
    dy = -directions[:, None, 0] * s + directions[:, None, 1] * c
    t_near = np.zeros_like(lx)
    t_far = np.full_like(lx, np.inf)
    for o, d, half in ((lx, dx, rects[None, :, 2] / 2), (ly, dy, rects[None, :, 3] / 2)):
        with np.errstate(divide="ignore", invalid="ignore"):
            t1 = (-half - o) / d
            t2 = (half - o) / d
        parallel = np.abs(d) < 1e-12
        lo = np.where(parallel, np.where(np.abs(o) <= half, -np.inf, np.inf), np.minimum(t1, t2))
        hi = np.where(parallel, np.where(np.abs(o) <= half, np.inf, -np.inf), np.maximum(t1, t2))
        t_near = np.maximum(t_near, lo)
        t_far = np.minimum(t_far, hi)
    return np.where(t_near <= t_far, t_near, np.inf)


def corners(rects: np.ndarray) -> np.ndarray:
    """The four corners ``[B, 4, 2]``, counter-clockwise: for drawing and overlap tests."""
    rects = as_rects(rects)
    sx = np.array([-1.0, 1.0, 1.0, -1.0])
    sy = np.array([-1.0, -1.0, 1.0, 1.0])
    lx = sx[None, :] * rects[:, None, 2] / 2
    ly = sy[None, :] * rects[:, None, 3] / 2
    c, s = np.cos(rects[:, None, 4]), np.sin(rects[:, None, 4])
    return np.stack([rects[:, None, 0] + lx * c - ly * s, rects[:, None, 1] + lx * s + ly * c], axis=-1)


def rects_overlap(rect: np.ndarray, others: np.ndarray, gap: float = 0.0) -> np.ndarray:
    """Whether ``rect`` comes within ``gap`` of each of ``others`` (separating-axis test), ``[B]``.

    The gap grows ``rect`` by ``gap`` on each side, so the test is slightly conservative at
    corners: fine for keeping sampled furniture apart.
    """
    rect = as_rects(rect)[0].copy()
    others = as_rects(others)
    if len(others) == 0:
        return np.zeros(0, dtype=bool)
    rect[2:4] += 2 * gap
    a = corners(rect)[0]  # [4, 2]
    b = corners(others)  # [B, 4, 2]
    yaws = np.concatenate([[rect[4], rect[4] + np.pi / 2]], axis=0)
    separated = np.zeros(len(others), dtype=bool)
    axes_a = np.stack([np.cos(yaws), np.sin(yaws)], axis=1)  # [2, 2]
    for axis in axes_a:
        pa = a @ axis
        pb = b @ axis
        separated |= (pb.max(axis=1) < pa.min()) | (pb.min(axis=1) > pa.max())
    for k in (0.0, np.pi / 2):
        axis_b = np.stack([np.cos(others[:, 4] + k), np.sin(others[:, 4] + k)], axis=1)  # [B, 2]
        pa = np.einsum("ij,bj->bi", a, axis_b)
        pb = np.einsum("bij,bj->bi", b, axis_b)
        separated |= (pb.max(axis=1) < pa.min(axis=1)) | (pb.min(axis=1) > pa.max(axis=1))
    return ~separated


def planar_validity(goal: np.ndarray, others: np.ndarray, targets: np.ndarray, robot_radius: float,
                    reach: float) -> np.ndarray:
    """The validity rule in pure geometry, ``bool[N]``: the exact twin of the PyBullet check.

    The robot's disc at each target must keep ``robot_radius`` from the goal and every other
    present rectangle, and the segment of length ``reach`` aimed at the goal's centre must enter
    the goal before anything else. Used to test the simulator, not to replace it.
    """
    targets = np.asarray(targets, dtype=np.float64).reshape(-1, 2)
    goal = as_rects(goal)
    rects = np.concatenate([goal, as_rects(others)], axis=0)
    clear = (signed_distance(targets, rects) >= robot_radius).all(axis=1)
    direction = goal[0, :2] - targets
    norm = np.linalg.norm(direction, axis=1, keepdims=True)
    direction = direction / np.where(norm > 0, norm, 1.0)
    entry = ray_entry(targets, direction, rects)
    first_is_goal = (entry[:, 0] <= reach) & (entry[:, 0] <= entry[:, 1:].min(axis=1, initial=np.inf))
    return clear & first_is_goal
