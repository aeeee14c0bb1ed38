"""Occupancy maps for the navigate-to service: a ROS-free twin of nav_msgs/OccupancyGrid.

The placement service receives the robot's map as an OccupancyGrid (values 0..100, -1 unknown,
row-major: ``data[i + j * width]`` is column i, row j; ``info.origin`` is the pose of cell
(0, 0)'s lower-left corner). This module (numpy only: no ROS, no PyBullet) holds that grid as
an :class:`OccupancyMap` and answers two questions on it:

* :func:`check_base_targets`: which candidate base targets the map allows, the simulator's
  validity rule (``dualdiff_ros.sim.world``) on a raster: the robot's disc touches no blocked
  cell, and the gripper segment aimed at the object's centre enters the object's footprint
  within reach before it crosses any other blocked cell;
* :func:`local_patch`: an object-centred, object-yaw-aligned patch of the map, a condition
  for the denoiser.

Frames: "world" is the map's frame (the frame of ``info.origin``); "grid" coordinates are
in cells, ``(gx, gy)`` with cell (i, j) covering ``[i, i + 1) x [j, j + 1)``.

The 10 navigate-to state features (``dualdiff_ros.sim.dataset.STATE_FIELDS``) are
``object_x, object_y, object_width, object_height, object_yaw, object_held, robot_x, robot_y,
robot_yaw, gripper_free``: width and height are the full extents of the object's footprint
along its own x and y axes (see :func:`object_footprint_from_state`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

UNKNOWN = -1
OCCUPIED = 100
FREE = 0
STATE_OBJECT_XY = (0, 1)
STATE_OBJECT_SIZE = (2, 3)  # full width, height (not half)
STATE_OBJECT_YAW = 4
STATE_ROBOT_POSE = (6, 7, 8)
_EPS = 1e-9


@dataclass
class OccupancyMap:
    """A 2D occupancy grid: ``data[j, i]`` (int8, -1 unknown, 0..100) is column i, row j.

    Cell (i, j) covers ``[i, i + 1) x [j, j + 1)`` times ``resolution`` metres in the grid
    frame, whose origin (the lower-left corner of cell (0, 0)) sits at ``(origin_x, origin_y)``
    rotated by ``origin_yaw`` in the map frame, exactly as nav_msgs/MapMetaData.
    """

    data: np.ndarray  # int8 [height, width]
    resolution: float
    origin_x: float = 0.0
    origin_y: float = 0.0
    origin_yaw: float = 0.0

    @property
    def width(self) -> int:
        return int(np.shape(self.data)[1]) if np.ndim(self.data) == 2 else 0

    @property
    def height(self) -> int:
        return int(np.shape(self.data)[0]) if np.ndim(self.data) == 2 else 0

    @classmethod
    def from_flat(cls, data, width: int, height: int, resolution: float, origin_x: float = 0.0,
                  origin_y: float = 0.0, origin_yaw: float = 0.0) -> "OccupancyMap":
        """From an OccupancyGrid's row-major ``data`` list and ``info`` fields; validated."""
        flat = np.asarray(data).reshape(-1)
        width, height = int(width), int(height)
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        if height <= 0:
            raise ValueError(f"height must be positive, got {height}")
        if flat.size != width * height:
            raise ValueError(f"data has {flat.size} cells, width * height is {width * height}")
        _check_values(flat)
        grid = cls(flat.astype(np.int8).reshape(height, width), float(resolution), float(origin_x),
                   float(origin_y), float(origin_yaw))
        grid.validate()
        return grid

    def to_flat(self) -> np.ndarray:
        """Row-major int8 ``data`` for an OccupancyGrid (``list(...)`` it for the message)."""
        return np.ascontiguousarray(self.data, dtype=np.int8).reshape(-1)

    def validate(self) -> "OccupancyMap":
        """Raise ValueError naming the bad field; return self when the map is usable."""
        if np.ndim(self.data) != 2:
            raise ValueError(f"data must be 2D [height, width], got shape {np.shape(self.data)}")
        if self.width == 0:
            raise ValueError("width must be positive, got 0")
        if self.height == 0:
            raise ValueError("height must be positive, got 0")
        if not (math.isfinite(self.resolution) and self.resolution > 0):
            raise ValueError(f"resolution must be finite and > 0, got {self.resolution}")
        for name in ("origin_x", "origin_y", "origin_yaw"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)}")
        _check_values(np.asarray(self.data))
        return self

    # -- frames -----------------------------------------------------------------------------
    def world_to_grid(self, points) -> np.ndarray:
        """Map-frame points ``[..., 2]`` in continuous grid coordinates (cells, not metres)."""
        p = np.asarray(points, dtype=np.float64)
        dx, dy = p[..., 0] - self.origin_x, p[..., 1] - self.origin_y
        c, s = math.cos(self.origin_yaw), math.sin(self.origin_yaw)
        return np.stack([dx * c + dy * s, -dx * s + dy * c], axis=-1) / self.resolution

    def grid_to_world(self, grid_points) -> np.ndarray:
        g = np.asarray(grid_points, dtype=np.float64) * self.resolution
        c, s = math.cos(self.origin_yaw), math.sin(self.origin_yaw)
        return np.stack([self.origin_x + g[..., 0] * c - g[..., 1] * s,
                         self.origin_y + g[..., 0] * s + g[..., 1] * c], axis=-1)

    def world_to_cell(self, points) -> np.ndarray:
        """Integer ``(i, j)`` (column, row) of the cell holding each point, ``[..., 2]``; may be off the map."""
        return np.floor(self.world_to_grid(points)).astype(np.int64)

    def cell_centres(self) -> np.ndarray:
        """Map-frame centres of all cells, ``[height, width, 2]``."""
        jj, ii = np.mgrid[0:self.height, 0:self.width]
        return self.grid_to_world(np.stack([ii + 0.5, jj + 0.5], axis=-1))

    def contains(self, cells) -> np.ndarray:
        cells = np.asarray(cells)
        return ((cells[..., 0] >= 0) & (cells[..., 0] < self.width)
                & (cells[..., 1] >= 0) & (cells[..., 1] < self.height))

    def values_at(self, points, outside: int = UNKNOWN) -> np.ndarray:
        """Cell value under each map-frame point (``outside`` off the map), ``int16 [...]``."""
        cells = self.world_to_cell(points)
        inside = self.contains(cells)
        i = np.clip(cells[..., 0], 0, self.width - 1)
        j = np.clip(cells[..., 1], 0, self.height - 1)
        return np.where(inside, self.data[j, i].astype(np.int16), np.int16(outside))

    def blocked(self, occupied_threshold: int = 50, unknown_is_occupied: bool = True) -> np.ndarray:
        """``bool [height, width]``: cells the robot may not touch."""
        data = np.asarray(self.data)
        out = data >= occupied_threshold
        if unknown_is_occupied:
            out |= data < 0
        return out


def _check_values(values: np.ndarray) -> None:
    if values.size == 0:
        return
    if not np.issubdtype(values.dtype, np.integer):
        if not np.isfinite(values).all() or (values != np.round(values)).any():
            raise ValueError("data must hold integers -1..100")
    lo, hi = values.min(), values.max()
    if lo < UNKNOWN or hi > OCCUPIED:
        raise ValueError(f"data values must lie in -1..100, got {lo}..{hi}")


# -- state and pose helpers ---------------------------------------------------------------------
def object_footprint_from_state(state) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(object_xy [..., 2], object_yaw [...], half_size [..., 2])`` from navigate-to states ``[..., 10]``.

    Indices 0, 1 are the object's centre, 2, 3 its full width and height, 4 its yaw.
    """
    state = np.asarray(state, dtype=np.float64)
    if state.shape[-1] != 10:
        raise ValueError(f"a navigate-to state has 10 features, got {state.shape[-1]}")
    return state[..., list(STATE_OBJECT_XY)], state[..., STATE_OBJECT_YAW], state[..., list(STATE_OBJECT_SIZE)] / 2


def facing_yaw(targets_xy, object_xy) -> np.ndarray:
    """Yaw that points each base target at the object's centre, ``[n]``: the robot always faces its goal.

    `object_xy` may be a longer row (a rectangle ``[x, y, ...]``); its first two numbers are the centre.
    The simulator uses this same rule (sim.geometry re-exports it).
    """
    t = np.asarray(targets_xy, dtype=np.float64).reshape(-1, 2)
    d = np.asarray(object_xy, dtype=np.float64).reshape(-1)[:2] - t
    return np.arctan2(d[:, 1], d[:, 0])


def yaw_to_quaternion(yaw) -> np.ndarray:
    """``(x, y, z, w)`` of a rotation by ``yaw`` about z; ``[..., 4]`` for an array of yaws."""
    half = np.asarray(yaw, dtype=np.float64) / 2
    zero = np.zeros_like(half)
    return np.stack([zero, zero, np.sin(half), np.cos(half)], axis=-1)


def quaternion_to_yaw(quaternion) -> np.ndarray:
    """Yaw (about z) of ``(x, y, z, w)`` quaternions ``[..., 4]``, in (-pi, pi]."""
    x, y, z, w = np.moveaxis(np.asarray(quaternion, dtype=np.float64), -1, 0)
    return np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


# -- geometry in grid coordinates ---------------------------------------------------------------
def cells_overlap_rect(ci, cj, rect_xy, rect_yaw, rect_half, tol: float = 0.0) -> np.ndarray:
    """Whether unit cells (i, j) overlap a rotated rectangle (grid units): separating axes.

    Axis-aligned axes first (the rectangle's bounding box), then the rectangle's own two axes.
    ``tol`` > 0 grows the rectangle, < 0 shrinks it (e.g. -1e-9 ignores touching edges).
    """
    c, s = abs(math.cos(rect_yaw)), abs(math.sin(rect_yaw))
    hx, hy = rect_half[0] + tol, rect_half[1] + tol
    dx = ci + 0.5 - rect_xy[0]
    dy = cj + 0.5 - rect_xy[1]
    ok = np.abs(dx) < 0.5 + hx * c + hy * s
    ok &= np.abs(dy) < 0.5 + hx * s + hy * c
    cs, sn = math.cos(rect_yaw), math.sin(rect_yaw)
    lx = dx * cs + dy * sn
    ly = -dx * sn + dy * cs
    cell_half = 0.5 * (c + s)  # a unit square's half extent projected on either rectangle axis
    ok &= np.abs(lx) < hx + cell_half
    ok &= np.abs(ly) < hy + cell_half
    return ok


def _ray_rect_entry(origins, directions, rect_xy, rect_yaw, rect_half) -> np.ndarray:
    """Distance along unit rays until they enter the rectangle (0 inside, inf on a miss), ``[n]``."""
    cs, sn = math.cos(rect_yaw), math.sin(rect_yaw)
    ox, oy = origins[:, 0] - rect_xy[0], origins[:, 1] - rect_xy[1]
    lo = np.stack([ox * cs + oy * sn, -ox * sn + oy * cs], axis=1)
    ld = np.stack([directions[:, 0] * cs + directions[:, 1] * sn,
                   -directions[:, 0] * sn + directions[:, 1] * cs], axis=1)
    t_near = np.zeros(len(origins))
    t_far = np.full(len(origins), np.inf)
    for k in range(2):
        o, d, h = lo[:, k], ld[:, k], rect_half[k]
        parallel = np.abs(d) < 1e-12
        with np.errstate(divide="ignore", invalid="ignore"):
            t1, t2 = (-h - o) / d, (h - o) / d
        inside = np.abs(o) <= h
        a = np.where(parallel, np.where(inside, -np.inf, np.inf), np.minimum(t1, t2))
        b = np.where(parallel, np.where(inside, np.inf, -np.inf), np.maximum(t1, t2))
        t_near = np.maximum(t_near, a)
        t_far = np.minimum(t_far, b)
    return np.where(t_near <= t_far, t_near, np.inf)


def _padded(blocked: np.ndarray, outside_blocked: bool) -> np.ndarray:
    """``blocked`` with a one-cell border of the off-map value: clipped indices land on it."""
    return np.pad(blocked, 1, constant_values=outside_blocked)


def _disc_clear(pad: np.ndarray, g: np.ndarray, radius: float) -> np.ndarray:
    """Whether a disc (grid units) at each point ``g [n, 2]`` touches no blocked cell, ``[n]``.

    Exact disc-versus-square test on the window of cells around each disc: the distance from
    the centre to a cell's square is separable in x and y.
    """
    k = int(math.ceil(radius)) + 1
    off = np.arange(-k, k + 1)
    ci = np.floor(g[:, 0]).astype(np.int64)[:, None] + off  # [n, w]
    cj = np.floor(g[:, 1]).astype(np.int64)[:, None] + off
    dx = np.maximum(np.abs(ci + 0.5 - g[:, :1]) - 0.5, 0.0)
    dy = np.maximum(np.abs(cj + 0.5 - g[:, 1:]) - 0.5, 0.0)
    hit_cells = dy[:, :, None] ** 2 + dx[:, None, :] ** 2 < radius * radius  # [n, w(rows), w(cols)]
    h, w = pad.shape
    rows = np.clip(cj + 1, 0, h - 1)
    cols = np.clip(ci + 1, 0, w - 1)
    window = pad[rows[:, :, None], cols[:, None, :]]
    return ~(window & hit_cells).any(axis=(1, 2))


def _segment_cells(start: np.ndarray, direction: np.ndarray, length: np.ndarray):
    """Every cell each segment passes through (supercover by grid-line crossings).

    ``start [n, 2]``, unit ``direction [n, 2]`` and ``length [n]`` in grid units. Returns
    ``(ci, cj, used)`` of shape ``[n, m]``: the cells between consecutive crossings, ``used``
    false for padding and zero-length pieces.
    """
    n = len(start)
    m = int(math.ceil(length.max(initial=0.0))) + 2  # grid lines crossed per axis, at most
    ts = [np.zeros((n, 1)), length[:, None]]
    steps = np.arange(m)
    for k in range(2):
        s, d = start[:, k:k + 1], direction[:, k:k + 1]
        first = np.where(d > 0, np.floor(s) + 1, np.ceil(s) - 1)  # next grid line ahead
        lines = first + np.where(d > 0, 1.0, -1.0) * steps
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (lines - s) / d
        t = np.where(np.isfinite(t) & (t > 0) & (t < length[:, None]), t, length[:, None])
        ts.append(t)
    t = np.sort(np.concatenate(ts, axis=1), axis=1)
    mid = (t[:, :-1] + t[:, 1:]) / 2
    used = (t[:, 1:] - t[:, :-1]) > 1e-9
    px = start[:, :1] + mid * direction[:, :1]
    py = start[:, 1:] + mid * direction[:, 1:]
    return np.floor(px).astype(np.int64), np.floor(py).astype(np.int64), used


def check_base_targets(grid: OccupancyMap, targets_xy, object_xy, object_yaw: float, object_half_size,
                       robot_radius: float, reach: float, occupied_threshold: int = 50,
                       unknown_is_occupied: bool = True, inflation: float = 0.0) -> np.ndarray:
    """Which base targets the map allows for reaching the object, ``bool [n]``.

    A target (map frame, the robot facing the object's centre as in :func:`facing_yaw`) is valid iff

    1. the robot's disc of radius ``robot_radius + inflation`` touches no blocked cell (value
       >= ``occupied_threshold``, or unknown when ``unknown_is_occupied``; off-map cells are
       unknown). Nothing is excluded: the object's own cells block the base too; and
    2. the gripper segment from the base centre towards the object's centre enters the object's
       footprint (centre ``object_xy``, ``object_yaw``, half extents ``object_half_size``) within
       ``reach`` of the centre, and crosses no blocked cell before that, except cells that
       overlap the footprint (the object's own cells are the goal, not an obstacle).

    Non-finite targets are invalid. Vectorized over targets; the map may be any size.
    """
    targets = np.asarray(targets_xy, dtype=np.float64).reshape(-1, 2)
    n = len(targets)
    ok = np.isfinite(targets).all(axis=1)
    if n == 0 or not ok.any():
        return ok
    res = grid.resolution
    blocked = _padded(grid.blocked(occupied_threshold, unknown_is_occupied), unknown_is_occupied)
    g = grid.world_to_grid(np.where(ok[:, None], targets, 0.0))
    obj = grid.world_to_grid(np.asarray(object_xy, dtype=np.float64).reshape(2))
    yaw = float(object_yaw) - grid.origin_yaw
    half = np.asarray(object_half_size, dtype=np.float64).reshape(2) / res

    ok &= _disc_clear(blocked, g, (robot_radius + inflation) / res)
    idx = np.flatnonzero(ok)
    if len(idx) == 0:
        return ok
    gi = g[idx]
    d = obj - gi
    norm = np.linalg.norm(d, axis=1)
    direction = d / np.where(norm > 0, norm, 1.0)[:, None]
    entry = _ray_rect_entry(gi, direction, obj, yaw, half)
    reach_cells = reach / res
    reaches = (norm > 0) & (entry <= reach_cells)
    length = np.where(reaches, entry, 0.0)
    ci, cj, used = _segment_cells(gi, direction, length)
    own = cells_overlap_rect(ci, cj, obj, yaw, half, tol=1e-6)
    h, w = blocked.shape
    hit = blocked[np.clip(cj + 1, 0, h - 1), np.clip(ci + 1, 0, w - 1)] & used & ~own
    ok[idx] = reaches & ~hit.any(axis=1)
    return ok


def local_patch(grid: OccupancyMap, object_xy, object_yaw: float, half_extent_m: float, size_cells: int,
                unknown_value: float = 0.5) -> np.ndarray:
    """Object-centred, object-yaw-aligned patch of the map, ``float32 [size, size]`` in [0, 1].

    ``patch[v, u]``: column u runs along the object's +x axis, row v along its +y axis (the
    map's own layout, ``data[row = y, col = x]``), both over ``[-half_extent_m, half_extent_m]``
    and sampled at the patch cells' centres by nearest-cell lookup. Values are occupancy / 100
    (free 0, occupied 1); unknown cells and cells off the map are ``unknown_value`` (0.5).
    """
    size = int(size_cells)
    if size <= 0:
        raise ValueError(f"size_cells must be positive, got {size_cells}")
    axis = (np.arange(size) + 0.5) / size * 2 * half_extent_m - half_extent_m
    lx, ly = np.meshgrid(axis, axis)  # [v, u]
    c, s = math.cos(object_yaw), math.sin(object_yaw)
    ox, oy = np.asarray(object_xy, dtype=np.float64).reshape(2)
    points = np.stack([ox + lx * c - ly * s, oy + lx * s + ly * c], axis=-1)
    values = grid.values_at(points, outside=UNKNOWN)
    patch = np.where(values < 0, unknown_value, np.clip(values, 0, 100) / 100.0)
    return patch.astype(np.float32)
