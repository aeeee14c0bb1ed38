"""What the robot perceives in the simulator: the occupancy map of each recorded state.

Every dataset row names its scene (seed, task index) and step, so its map is rebuilt here
(walls, clutter and the objects on the floor at that step, 0.1 m cells) exactly as the
simulator node publishes it, and cut into the denoiser's map features (navigate_to.PatchSpec).
"""
from __future__ import annotations

import numpy as np

from ..maps import OccupancyMap
from ..navigate_to import PatchSpec, map_features
from .occupancy import rasterize_scene
from .scene import Scene, generate_scene

MAP_RESOLUTION = 0.05  # metres per cell of the simulated robot's map (nav2's default costmap resolution)
MAP_MARGIN = 1.0      # the map reaches past the house so that its outer walls show, as on a robot


def step_map(scene: Scene, step_index: int, resolution: float | None = None) -> OccupancyMap:
    """The map a robot would have at one step of a task: what stands on the floor then."""
    return rasterize_scene(scene, resolution or MAP_RESOLUTION, absent=scene.steps[int(step_index)].absent,
                           margin=MAP_MARGIN)


def state_maps(seed, task_index, step, resolution: float | None = None):
    """Yield (row indices, map) for each distinct (seed, task, step) of aligned arrays, one scene build per task.

    `resolution`: metres per cell (default MAP_RESOLUTION, the simulator node's).
    """
    keys = np.column_stack([np.asarray(seed), np.asarray(task_index), np.asarray(step)]).astype(np.int64)
    order = np.lexsort(keys.T[::-1])
    scene, scene_key = None, None
    start = 0
    while start < len(order):
        key = keys[order[start]]
        end = start
        while end < len(order) and (keys[order[end]] == key).all():
            end += 1
        if scene_key != (key[0], key[1]):
            scene, scene_key = generate_scene(int(key[0]), int(key[1])), (key[0], key[1])
        yield order[start:end], step_map(scene, int(key[2]), resolution)
        start = end


def dataset_features(data, spec: PatchSpec, progress: bool = False) -> np.ndarray:
    """Map features ``[n, 1 + cells^2]`` of every row of a NavigateData or HeldOut (map flag 1)."""
    out = np.zeros((len(data.states), spec.feature_dim), dtype=np.float32)
    groups = state_maps(data.seed, data.task_index, data.step)
    if progress:
        from ..diffusion.progress import progress_bar

        groups = progress_bar(groups, desc="map patches", unit="state")
    for rows, grid in groups:
        # Rows of one step share the object and the map, so one patch serves them all.
        out[rows] = map_features(grid, data.states[rows[:1]], spec)[0]
    return out
