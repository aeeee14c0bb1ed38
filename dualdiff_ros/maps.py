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

What the values mean is the map's ``semantics``. An **occupancy** grid (map_server's ``/map``, the
simulator's maps) holds the probability that a cell is occupied: a cell at or above a threshold is
an obstacle and the robot's whole footprint must stay clear of it. A **costmap** (nav2's
``<name>/costmap``, published as an OccupancyGrid: 100 lethal, 99 inscribed, 1..98 the inflation
layer's decaying cost, -1 unknown) has already been inflated by the robot's inscribed radius, so a
base pose is judged as nav2 judges it: by the cost under the robot's centre (below ``max_cost``;
99 = nav2's inscribed 253), with the footprint checked against lethal cells only. Reading a
costmap as occupancy counts the robot twice (every cell within ~2.2 m of a wall is a "wall", and
then the 2 m disc must avoid those): :func:`detect_semantics` tells the two apart.

Every question is answered on a window around the object (:meth:`OccupancyMap.window`, a view:
no copy), so the cost of a request does not grow with the map beyond one pass over the message's
values (a 6000 x 6000 building map: 34 ms against 23 ms for a 200 x 200 room, docs/RESULTS.md, section 4).

Frames: "world" is the map's frame (the frame of ``info.origin``); "grid" coordinates are
in cells, ``(gx, gy)`` with cell (i, j) covering ``[i, i + 1) x [j, j + 1)``.

The 10 navigate-to state features (``dualdiff_ros.sim.dataset.STATE_FIELDS``) are
``object_x, object_y, object_width, object_height, object_yaw, object_held, robot_x, robot_y,
robot_yaw, gripper_free``: width and height are the full extents of the object's footprint
along its own x and y axes (see :func:`object_footprint_from_state`).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import numpy as np

UNKNOWN = -1
OCCUPIED = 100
FREE = 0
LETHAL = 100       # nav2's LETHAL_OBSTACLE (254) as published
INSCRIBED = 99     # nav2's INSCRIBED_INFLATED_OBSTACLE (253) as published
SEMANTICS = ("occupancy", "costmap")
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
    # How the values read: "occupancy" (0..100 probability) or "costmap" (nav2's inflated costs).
    semantics: str = "occupancy"

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
        grid = cls(flat.astype(np.int8, copy=False).reshape(height, width), float(resolution), float(origin_x),
                   float(origin_y), float(origin_yaw))
        return grid.validate(values=False)

    def to_flat(self) -> np.ndarray:
        """Row-major int8 ``data`` for an OccupancyGrid (``list(...)`` it for the message)."""
        return np.ascontiguousarray(self.data, dtype=np.int8).reshape(-1)

    def validate(self, values: bool = True) -> "OccupancyMap":
        """Raise ValueError naming the bad field; return self when the map is usable.

        ``values=False`` skips the pass over every cell (the caller checked them already).
        """
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
        if self.semantics not in SEMANTICS:
            raise ValueError(f"semantics {self.semantics!r}: use one of {SEMANTICS}")
        if values:
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
        """``bool [height, width]``: cells the robot's body may not touch.

        Occupancy: value >= ``occupied_threshold``. Costmap: lethal (100) cells only, whatever the
        threshold: the inflated cells around them are where the robot's *centre* may not be, which
        the costmap check reads from the centre's cost instead.
        """
        data = np.asarray(self.data)
        out = data >= (LETHAL if self.semantics == "costmap" else occupied_threshold)
        if unknown_is_occupied:
            out |= data < 0
        return out

    def window(self, centre_xy, half_extent_m: float) -> "OccupancyMap":
        """The part of the map within ``half_extent_m`` (along the grid's axes) of a map-frame point.

        A view of ``data`` (no copy) with its origin moved, same semantics: every lookup within the
        window reads what the whole map holds there, and outside it reads "off the map". A window
        that misses the map entirely is one unknown cell.
        """
        g = self.world_to_grid(np.asarray(centre_xy, dtype=np.float64).reshape(2))
        k = half_extent_m / self.resolution
        i0, j0 = int(math.floor(g[0] - k)), int(math.floor(g[1] - k))
        i1, j1 = int(math.ceil(g[0] + k)) + 1, int(math.ceil(g[1] + k)) + 1
        i0, j0 = max(i0, 0), max(j0, 0)
        i1, j1 = min(i1, self.width), min(j1, self.height)
        if i0 >= i1 or j0 >= j1:
            i0, j0 = int(math.floor(g[0])), int(math.floor(g[1]))
            data = np.full((1, 1), UNKNOWN, dtype=np.int8)
        elif (i0, j0, i1, j1) == (0, 0, self.width, self.height):
            return self
        else:
            data = self.data[j0:j1, i0:i1]
        ox, oy = self.grid_to_world(np.array([float(i0), float(j0)]))
        return OccupancyMap(data, self.resolution, float(ox), float(oy), self.origin_yaw, self.semantics)

    def with_semantics(self, semantics: str) -> "OccupancyMap":
        """The same cells read as ``semantics`` ("occupancy" or "costmap"); no copy."""
        if semantics not in SEMANTICS:
            raise ValueError(f"map semantics {semantics!r}: use one of {SEMANTICS}")
        return replace(self, semantics=semantics)


def _check_values(values: np.ndarray) -> None:
    if values.size == 0:
        return
    if not np.issubdtype(values.dtype, np.integer):
        if not np.isfinite(values).all() or (values != np.round(values)).any():
            raise ValueError("data must hold integers -1..100")
    lo, hi = values.min(), values.max()
    if lo < UNKNOWN or hi > OCCUPIED:
        raise ValueError(f"data values must lie in -1..100, got {lo}..{hi}")


# -- what the values mean ----------------------------------------------------------------------
def detect_semantics(grid: OccupancyMap, min_share: float = 0.9) -> tuple[str, str]:
    """("occupancy" | "costmap", why): how to read a grid nobody said the meaning of.

    nav2's inflation layer surrounds every lethal cell with inscribed cells (99) out to the robot's
    inscribed radius (at least a cell for any robot nav2 drives at its usual resolutions), so in a
    costmap the known, non-lethal cells 4-adjacent to lethal ones are nearly all 99; in an occupancy
    grid (map_server's trinary 0 / 100 / -1, or the simulator's 0 / 100) they are free. A grid is
    read as a costmap when at least ``min_share`` of those neighbours hold 99. With no lethal cell
    in the grid it is read as occupancy: there is nothing for the two readings to disagree about
    but soft cells, and occupancy is the cautious reading of those.
    """
    data = np.asarray(grid.data)
    lethal = data >= LETHAL
    if not lethal.any():
        return "occupancy", "no lethal (100) cell near the object"
    neighbours = np.zeros_like(lethal)
    neighbours[1:] |= lethal[:-1]
    neighbours[:-1] |= lethal[1:]
    neighbours[:, 1:] |= lethal[:, :-1]
    neighbours[:, :-1] |= lethal[:, 1:]
    ring = neighbours & ~lethal & (data >= 0)
    if not ring.any():
        return "occupancy", "no known cell next to a lethal one"
    share = float((data[ring] == INSCRIBED).mean())
    kind = "costmap" if share >= min_share else "occupancy"
    return kind, f"{share:.0%} of the cells next to lethal ones hold nav2's inscribed cost 99"


def nav2_costmap(grid: OccupancyMap, inscribed_radius: float, inflation_radius: float | None = None,
                 cost_scaling_factor: float = 3.0) -> OccupancyMap:
    """What nav2 publishes as ``<name>/costmap`` for an occupancy grid: its inflation layer, then its table.

    nav2's costs (Costmap2D): a lethal cell (occupied, >= 50 here) is 254; a cell whose centre lies
    within ``inscribed_radius`` of a lethal cell's centre is 253; out to ``inflation_radius``
    (default: inscribed radius + 0.55 m) the cost is ``252 exp(-cost_scaling_factor (d - inscribed_radius))``
    (truncated to an integer); unknown stays 255. The published OccupancyGrid maps 0 -> 0, 253 -> 99,
    254 -> 100, 255 -> -1 and c in 1..252 -> ``1 + 97 (c - 1) // 251`` (nav2's cost_translation_table).
    Defaults as nav2's inflation layer (cost_scaling_factor 3).
    """
    from scipy.ndimage import distance_transform_edt

    inflation_radius = inscribed_radius + 0.55 if inflation_radius is None else inflation_radius
    data = np.asarray(grid.data)
    lethal = data >= 50
    if lethal.any():
        d = distance_transform_edt(~lethal) * grid.resolution
    else:
        d = np.full(data.shape, np.inf)
    cost = np.zeros(data.shape, dtype=np.int16)
    band = (d > inscribed_radius) & (d <= inflation_radius)
    cost[band] = (252 * np.exp(-cost_scaling_factor * (d[band] - inscribed_radius))).astype(np.int16)
    cost[d <= inscribed_radius] = 253
    cost[lethal] = 254
    unknown = (data < 0) & (cost < 253)  # nav2: unknown keeps NO_INFORMATION unless inflated to inscribed
    published = np.where(cost == 0, 0, 1 + (97 * (cost - 1)) // 251)
    published[cost == 253] = INSCRIBED
    published[cost == 254] = LETHAL
    published[unknown] = UNKNOWN
    return OccupancyMap(published.astype(np.int8), grid.resolution, grid.origin_x, grid.origin_y, grid.origin_yaw,
                        "costmap")


# -- footprints -----------------------------------------------------------------------------------
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_POINT = rf"\[\s*{_NUMBER}\s*,\s*{_NUMBER}\s*\]"
_FOOTPRINT = re.compile(rf"^\s*\[\s*{_POINT}(?:\s*,\s*{_POINT})*\s*\]\s*$")


def parse_footprint(text: str) -> np.ndarray | None:
    """A nav2 ``footprint`` parameter string, ``"[[x, y], [x, y], ...]"`` (robot frame, metres, x forward).

    Returns the polygon ``float [k, 2]``, or None for "" or "[]" (nav2: use the robot's radius).
    ValueError names the problem and the fix: at least 3 points, finite, enclosing an area.
    """
    text = str(text).strip()
    if text in ("", "[]"):
        return None
    shown = text if len(text) <= 80 else text[:80] + "..."
    if not _FOOTPRINT.match(text):
        raise ValueError(f"footprint {shown!r} is not a polygon in nav2's format: write it as "
                         "\"[[x, y], [x, y], [x, y], ...]\" in metres (e.g. \"[[0.5, 0.4], [0.5, -0.4], [-0.5, -0.4], "
                         "[-0.5, 0.4]]\"), or leave it empty for a disc of robot.radius")
    points = np.array([[float(v) for v in re.findall(_NUMBER, pair)] for pair in re.findall(_POINT, text)])
    if len(points) < 3:
        raise ValueError(f"footprint {shown!r} has {len(points)} points: a polygon needs at least 3 "
                         "(or leave it empty for a disc of robot.radius)")
    if not np.isfinite(points).all():
        raise ValueError(f"footprint {shown!r} holds a non-finite number: every coordinate must be finite metres")
    x, y = points[:, 0], points[:, 1]
    area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    if area <= 1e-9:
        raise ValueError(f"footprint {shown!r} encloses no area: give the corners of the robot's outline in order")
    return points


def footprint_radii(footprint) -> tuple[float, float]:
    """(inscribed, circumscribed) radius of a polygon about the robot's centre, metres."""
    p = np.asarray(footprint, dtype=np.float64)
    a, b = p, np.roll(p, -1, axis=0)
    ab = b - a
    t = np.clip(np.einsum("ij,ij->i", -a, ab) / np.maximum(np.einsum("ij,ij->i", ab, ab), 1e-18), 0.0, 1.0)
    nearest = a + t[:, None] * ab
    return float(np.linalg.norm(nearest, axis=1).min()), float(np.linalg.norm(p, axis=1).max())


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


def _polygon_clear(pad: np.ndarray, g: np.ndarray, yaw: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Whether a polygon footprint (grid units, robot frame) at each pose touches no blocked cell, ``[n]``.

    A cell meets the polygon iff the outline passes through it (every cell of each edge's supercover)
    or it lies inside (its centre is inside the polygon: crossing number). nav2 rasterizes only the
    outline; the inside is checked too, so an obstacle under the robot is never missed.
    """
    n, k = len(g), len(polygon)
    c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    px = g[:, :1] + polygon[None, :, 0] * c - polygon[None, :, 1] * s  # [n, k]
    py = g[:, 1:] + polygon[None, :, 0] * s + polygon[None, :, 1] * c
    a = np.stack([px, py], axis=-1).reshape(-1, 2)
    b = np.stack([np.roll(px, -1, axis=1), np.roll(py, -1, axis=1)], axis=-1).reshape(-1, 2)
    length = np.linalg.norm(b - a, axis=1)
    direction = (b - a) / np.where(length > 0, length, 1.0)[:, None]
    ci, cj, used = _segment_cells(a, direction, length)
    start_cells = np.floor(a).astype(np.int64)  # a zero-length edge still covers its vertex's cell
    h, w = pad.shape
    edge_hit = (pad[np.clip(cj + 1, 0, h - 1), np.clip(ci + 1, 0, w - 1)] & used).any(axis=1)
    edge_hit |= pad[np.clip(start_cells[:, 1] + 1, 0, h - 1), np.clip(start_cells[:, 0] + 1, 0, w - 1)]
    hit = edge_hit.reshape(n, k).any(axis=1)
    r = int(math.ceil(float(np.linalg.norm(polygon, axis=1).max()))) + 1
    off = np.arange(-r, r + 1)
    wi = np.floor(g[:, 0]).astype(np.int64)[:, None] + off  # [n, m]
    wj = np.floor(g[:, 1]).astype(np.int64)[:, None] + off
    x = (wi + 0.5)[:, None, :] - g[:, 0, None, None]  # [n, 1, m] cell centres relative to the pose
    y = (wj + 0.5)[:, :, None] - g[:, 1, None, None]  # [n, m, 1]
    lx, ly = x * c[:, :, None] + y * s[:, :, None], -x * s[:, :, None] + y * c[:, :, None]  # robot frame
    inside = np.zeros(lx.shape, dtype=bool)
    for e in range(k):
        (ax, ay), (bx, by) = polygon[e], polygon[(e + 1) % k]
        if ay == by:
            continue
        crosses = (ay > ly) != (by > ly)
        inside ^= crosses & (lx < ax + (ly - ay) * (bx - ax) / (by - ay))
    window = pad[np.clip(wj + 1, 0, h - 1)[:, :, None], np.clip(wi + 1, 0, w - 1)[:, None, :]]
    return ~(hit | (window & inside).any(axis=(1, 2)))


def check_window(reach: float, object_half_size, body_radius: float, resolution: float) -> float:
    """Half side (metres) of the window around the object that every valid target's check stays inside."""
    return reach + float(np.linalg.norm(object_half_size)) + body_radius + 3 * resolution


def check_base_targets(grid: OccupancyMap, targets_xy, object_xy, object_yaw: float, object_half_size,
                       robot_radius: float, reach: float, occupied_threshold: int = 50,
                       unknown_is_occupied: bool = True, inflation: float = 0.0, max_cost: int = INSCRIBED,
                       footprint=None) -> np.ndarray:
    """Which base targets the map allows for reaching the object, ``bool [n]``.

    A target (map frame, the robot facing the object's centre as in :func:`facing_yaw`) is valid iff

    1. its footprint is clear. The footprint is the disc of ``robot_radius``, or the polygon
       ``footprint`` (``[k, 2]`` metres, robot frame, x towards the object), grown by ``inflation``.
       On an **occupancy** grid it touches no blocked cell (value >= ``occupied_threshold``, or
       unknown when ``unknown_is_occupied``; off-map cells are unknown). On a **costmap** the cost
       under the robot's centre is below ``max_cost`` (unknown: as ``unknown_is_occupied`` says) and
       the footprint touches no lethal cell (nor unknown, likewise): nav2 inflated the obstacles by
       the robot's inscribed radius already, so the inflated cells are not grown by the robot again.
       Nothing is excluded: the object's own cells block the base too; and
    2. the gripper segment from the base centre towards the object's centre enters the object's
       footprint (centre ``object_xy``, ``object_yaw``, half extents ``object_half_size``) within
       ``reach`` of the centre, and crosses no blocked (costmap: lethal) cell before that, except
       cells that overlap the footprint (the object's own cells are the goal, not an obstacle).

    Non-finite targets are invalid. Vectorized over targets; only the window around the object
    that a valid target can touch is read (:func:`check_window`), so the map may be any size.
    """
    targets = np.asarray(targets_xy, dtype=np.float64).reshape(-1, 2)
    n = len(targets)
    ok = np.isfinite(targets).all(axis=1)
    if n == 0 or not ok.any():
        return ok
    object_xy = np.asarray(object_xy, dtype=np.float64).reshape(2)
    half_m = np.asarray(object_half_size, dtype=np.float64).reshape(2)
    polygon = None if footprint is None else np.asarray(footprint, dtype=np.float64).reshape(-1, 2)
    body = robot_radius if polygon is None else footprint_radii(polygon)[1]
    # A base further from the object's centre than reach + its half diagonal cannot reach it.
    far = np.linalg.norm(np.where(ok[:, None], targets, object_xy) - object_xy, axis=1)
    ok &= far <= reach + float(np.linalg.norm(half_m)) + 1e-9
    if not ok.any():
        return ok
    grid = grid.window(object_xy, check_window(reach, half_m, body + inflation, grid.resolution))
    res = grid.resolution
    costmap = grid.semantics == "costmap"
    blocked_cells = grid.blocked(occupied_threshold, unknown_is_occupied)
    blocked = _padded(blocked_cells, unknown_is_occupied)
    g = grid.world_to_grid(np.where(ok[:, None], targets, object_xy))
    obj = grid.world_to_grid(object_xy)
    yaw = float(object_yaw) - grid.origin_yaw
    half = half_m / res

    if costmap:  # the centre's cost, as nav2's collision checkers read it
        cost = grid.values_at(np.where(ok[:, None], targets, object_xy), outside=UNKNOWN)
        ok &= np.where(cost < 0, not unknown_is_occupied, cost < max_cost)
    if polygon is None:
        ok &= _disc_clear(blocked, g, (robot_radius + inflation) / res)
    elif ok.any():
        body_pad = blocked
        if inflation > 0:  # grow the obstacles instead of the polygon: the same Minkowski sum on a raster
            from scipy.ndimage import distance_transform_edt

            grown = distance_transform_edt(~blocked_cells) * res <= inflation if blocked_cells.any() else blocked_cells
            body_pad = _padded(grown, unknown_is_occupied)
        idx = np.flatnonzero(ok)
        heading = np.arctan2(obj[1] - g[idx, 1], obj[0] - g[idx, 0])
        ok[idx] = _polygon_clear(body_pad, g[idx], heading, polygon / res)
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
    (free 0, occupied 1; a costmap's lethal cells 1, every other known cell 0); unknown cells and
    cells off the map are ``unknown_value`` (0.5).
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
    if grid.semantics == "costmap":  # only the obstacles themselves, as on the occupancy maps models learn from
        values = np.where(values >= LETHAL, OCCUPIED, np.where(values < 0, UNKNOWN, FREE))
    patch = np.where(values < 0, unknown_value, np.clip(values, 0, 100) / 100.0)
    return patch.astype(np.float32)
