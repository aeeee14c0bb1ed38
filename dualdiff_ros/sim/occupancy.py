"""The simulator's scene as the occupancy grid a robot's map server would publish (numpy only).

``rasterize_scene(scene)`` draws every present body (walls, clutter, task objects, the goal
object included, as on a real robot's costmap) into an :class:`~dualdiff_ros.maps.OccupancyMap`
covering the house ``[0, WORLD_SIZE]^2``: a cell is 100 when any body's footprint overlaps the
cell's square by a positive area (exact separating-axis test of the square against the rotated
rectangle), else 0. The raster is conservative: every point of every body lies in an occupied
cell. The outer walls stand just outside the house, so with the default ``margin`` of 0 they
fall off the map; :func:`dualdiff_ros.maps.check_base_targets` counts off-map cells as unknown
(blocked by default), which is the same rule as the simulator's "inside [R, 20 - R]" pre-check.
"""
from __future__ import annotations

import math

import numpy as np

from ..maps import FREE, OCCUPIED, OccupancyMap, cells_overlap_rect
from .geometry import aabb, as_rects
from .scene import WORLD_SIZE, Scene


def scene_rects(scene: Scene, absent=(), include_objects: bool = True) -> np.ndarray:
    """The footprints ``[B, 5]`` on the floor: walls, clutter, then the task objects not ``absent``."""
    absent = set(int(i) for i in absent)
    parts = [as_rects(scene.walls), as_rects(scene.obstacles)]
    if include_objects:
        keep = [j for j in range(len(scene.object_kinds)) if j not in absent]
        parts.append(as_rects(scene.object_rects[keep]))
    return np.concatenate(parts, axis=0)


def rasterize_rects(rects, shape: tuple[int, int], resolution: float, origin=(0.0, 0.0)) -> np.ndarray:
    """``int8 [height, width]``: 100 where a rectangle overlaps the cell by a positive area, else 0.

    Axis-aligned grid at ``origin`` (lower-left corner of cell (0, 0)); each rectangle is tested
    only against the cells of its bounding box.
    """
    height, width = shape
    data = np.full((height, width), FREE, dtype=np.int8)
    rects = as_rects(rects)
    if len(rects) == 0:
        return data
    ox, oy = float(origin[0]), float(origin[1])
    lo, hi = aabb(rects)
    for rect, a, b in zip(rects, lo, hi):
        i0 = max(int(math.floor((a[0] - ox) / resolution)), 0)
        j0 = max(int(math.floor((a[1] - oy) / resolution)), 0)
        i1 = min(int(math.ceil((b[0] - ox) / resolution)), width)
        j1 = min(int(math.ceil((b[1] - oy) / resolution)), height)
        if i0 >= i1 or j0 >= j1:
            continue
        jj, ii = np.mgrid[j0:j1, i0:i1]
        centre = np.array([(rect[0] - ox) / resolution, (rect[1] - oy) / resolution])
        half = rect[2:4] / (2 * resolution)
        hit = cells_overlap_rect(ii, jj, centre, float(rect[4]), half, tol=-1e-9)
        data[j0:j1, i0:i1][hit] = OCCUPIED
    return data


def rasterize_scene(scene: Scene, resolution: float = 0.1, absent=(), include_objects: bool = True,
                    margin: float = 0.0) -> OccupancyMap:
    """The scene's floor as an occupancy map, cell (0, 0) at ``(-margin, -margin)``.

    ``absent``: task objects off the floor (carried or stowed: ``scene.steps[k].absent``), as
    ``World.set_absent``. The goal object is drawn (occupied); the checker tells its cells apart
    by its footprint from the state. ``margin`` > 0 extends the map past the house so that the
    outer walls show (e.g. ``margin=1.0``); off-map cells are unknown to the checker anyway.
    """
    if not (math.isfinite(resolution) and resolution > 0):
        raise ValueError(f"resolution must be finite and > 0, got {resolution}")
    n = int(round((WORLD_SIZE + 2 * margin) / resolution))
    data = rasterize_rects(scene_rects(scene, absent, include_objects), (n, n), resolution,
                           (-margin, -margin))
    return OccupancyMap(data, float(resolution), -float(margin), -float(margin), 0.0)
