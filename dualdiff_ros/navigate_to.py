"""Navigate-to with the robot's map, ROS-free: the map in the condition, the map check, the poses.

A navigate-to state is 10 numbers (the object's pose and size, the robot's pose, two flags);
walls and clutter are not in it. So the condition grows a second half, `PatchSpec`: a patch of
the robot's occupancy map around the object, max-pooled to a few cells, behind a "map present"
flag. Models are trained with the patch dropped part of the time (flag 0, patch 0), so a request
without a map gets an answer from the same model. Every answer given a map is then checked
against it (`MapCheck`, the simulator's validity rule on the raster: dualdiff_ros.maps), and
each target becomes a pose facing the object, as the check assumes and nav2 takes it.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .maps import (
    INSCRIBED,
    SEMANTICS,
    OccupancyMap,
    check_base_targets,
    check_window,
    detect_semantics,
    facing_yaw,
    footprint_radii,
    local_patch,
    object_footprint_from_state,
)

STATE_SIZE = 10
# The simulator's robot, and the service's default robot.radius / robot.reach: sim/scene.py takes
# the radius from here and adds its gripper for the reach (a test keeps ROBOT_REACH equal to it).
ROBOT_RADIUS = 2.0
ROBOT_REACH = 4.0
FRAMES = ("world", "object")
FEATURES = ("occupancy", "clearance")
CLEARANCE_SCALE = 4.0  # metres: a clearance of this or more reads 1 in the patch
SMALL_WINDOW = 100_000  # cells: a smaller window's clearance is its distance transform, a larger one a k-d tree's


@dataclass(frozen=True)
class PatchSpec:
    """Which part of the map the denoiser sees, and how coarsely.

    `cells` x `cells` over a square of half side `half_extent` metres centred on the object,
    each cell the maximum of `supersample`^2 map samples inside it (a thin obstacle is not lost
    to the downsampling). `frame` "world": the patch's axes are the map's (the denoiser predicts
    targets as map-frame offsets from the object, so a blocked patch cell is a blocked offset);
    "object": turned with the object's yaw. Which is better was measured: docs/RESULTS.md, section 4.
    """

    cells: int = 16
    half_extent: float = 9.0
    frame: str = "world"
    supersample: int = 3
    # "occupancy": each cell the largest occupancy under it (0 free, 1 occupied, 0.5 unknown).
    # "clearance": each cell the smallest distance under it to an obstacle or unknown cell, / 4 m
    # (clipped to 1): where the robot's disc fits is then a threshold the network can read directly.
    features: str = "clearance"

    def __post_init__(self):
        if self.frame not in FRAMES:
            raise ValueError(f"patch frame {self.frame!r}: use one of {FRAMES}")
        if self.features not in FEATURES:
            raise ValueError(f"patch features {self.features!r}: use one of {FEATURES}")
        if not (self.cells >= 1 and self.supersample >= 1 and self.half_extent > 0):
            raise ValueError(f"patch cells={self.cells}, supersample={self.supersample} must be >= 1 and "
                             f"half_extent={self.half_extent} > 0")

    @property
    def feature_dim(self) -> int:
        return 1 + self.cells * self.cells  # the map flag, then the patch

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PatchSpec":
        return cls(int(d["cells"]), float(d["half_extent"]), str(d["frame"]), int(d["supersample"]),
                   str(d.get("features", "occupancy")))


def clearance(grid: OccupancyMap) -> np.ndarray:
    """``float32 [height, width]``: metres from each cell centre to the nearest blocked or unknown cell.

    Over the whole grid (a distance transform: seconds on a building-sized map); the patch reads
    the same numbers near the object only (`clearance_at`).
    """
    from scipy.ndimage import distance_transform_edt

    free = ~grid.blocked()
    return (distance_transform_edt(free) * grid.resolution).astype(np.float32)


def clearance_at(grid: OccupancyMap, points, horizon: float) -> np.ndarray:
    """Metres from the cell under each map-frame point ``[..., 2]`` to the nearest blocked cell, ``[...]``.

    The numbers of `clearance` (centre to centre), exact up to ``horizon`` (inf beyond: callers clip
    there), read from a window of the map around the points only: a small window's distance transform,
    or, for a large one, a k-d tree of its boundary cells (the nearest blocked cell of a free cell is a
    blocked cell with a free 4-neighbour). Points off the map read 0 (no room there). The cost depends
    on the window, not on the map's size.
    """
    from scipy.spatial import cKDTree

    points = np.asarray(points, dtype=np.float64)
    flat = points.reshape(-1, 2)
    out = np.zeros(len(flat))
    on_map = grid.contains(grid.world_to_cell(flat))
    if not on_map.any():
        return out.reshape(points.shape[:-1])
    centre = (flat[on_map].min(axis=0) + flat[on_map].max(axis=0)) / 2
    extent = float(np.abs(flat[on_map] - centre).max()) * math.sqrt(2)  # the grid may be turned
    window = grid.window(centre, extent + horizon + 2 * grid.resolution)
    blocked = window.blocked()
    cells = window.world_to_cell(flat[on_map])
    ci = np.clip(cells[:, 0], 0, window.width - 1)
    cj = np.clip(cells[:, 1], 0, window.height - 1)
    if blocked.size <= SMALL_WINDOW and blocked.any():  # a room: the distance transform is quicker than the tree
        from scipy.ndimage import distance_transform_edt

        out[on_map] = distance_transform_edt(~blocked)[cj, ci] * grid.resolution
        return out.reshape(points.shape[:-1])
    padded = np.pad(blocked, 1, constant_values=True)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    boundary = np.argwhere(blocked & ~interior)  # (row j, column i)
    if len(boundary):
        d, _ = cKDTree(boundary).query(np.stack([cj, ci], axis=1), distance_upper_bound=horizon / grid.resolution + 1)
        d = np.where(blocked[cj, ci], 0.0, d) * grid.resolution
    else:
        d = np.full(len(ci), np.inf)
    out[on_map] = d
    return out.reshape(points.shape[:-1])


def patch(grid: OccupancyMap, state, spec: PatchSpec, cleared: np.ndarray | None = None) -> np.ndarray:
    """The map around one state's object, ``float32 [cells, cells]`` in [0, 1] (see PatchSpec.features).

    Only the window around the object is read (`clearance_at`); `cleared`, `clearance(grid)` of the
    whole map, is the slower reference the window reproduces.
    """
    xy, yaw, _ = object_footprint_from_state(state)
    yaw = float(yaw) if spec.frame == "object" else 0.0
    n, s = spec.cells * spec.supersample, spec.supersample
    if spec.features == "occupancy":
        fine = local_patch(grid, xy, yaw, spec.half_extent, n)
        return fine.reshape(spec.cells, s, spec.cells, s).max(axis=(1, 3))
    axis = (np.arange(n) + 0.5) / n * 2 * spec.half_extent - spec.half_extent
    lx, ly = np.meshgrid(axis, axis)
    c, si = math.cos(yaw), math.sin(yaw)
    points = np.stack([xy[0] + lx * c - ly * si, xy[1] + lx * si + ly * c], axis=-1)
    if cleared is None:
        values = clearance_at(grid, points, CLEARANCE_SCALE)
    else:
        cells = grid.world_to_cell(points)
        inside = grid.contains(cells)
        values = np.where(inside, cleared[np.clip(cells[..., 1], 0, grid.height - 1),
                                          np.clip(cells[..., 0], 0, grid.width - 1)], 0.0)  # off the map: no room
    fine = np.clip(values / CLEARANCE_SCALE, 0.0, 1.0)
    return fine.reshape(spec.cells, s, spec.cells, s).min(axis=(1, 3)).astype(np.float32)


def map_features(grid: OccupancyMap | None, states, spec: PatchSpec) -> np.ndarray:
    """Condition features ``[n, 1 + cells^2]`` for states ``[n, 10]``: flag 1 and the patch, or all 0 without a map."""
    states = np.asarray(states, dtype=np.float64).reshape(-1, STATE_SIZE)
    out = np.zeros((len(states), spec.feature_dim), dtype=np.float64)
    if grid is not None:
        out[:, 0] = 1.0
        for i, s in enumerate(states):
            out[i, 1:] = patch(grid, s, spec).reshape(-1)
    return out


def conditions(states, features: np.ndarray | None) -> np.ndarray:
    """The denoiser's condition: the 10 state numbers, then the map features (if the model has them)."""
    states = np.asarray(states, dtype=np.float64).reshape(-1, STATE_SIZE)
    return states if features is None else np.concatenate([states, features], axis=1)


def model_conditions(model, states, grid: OccupancyMap | None = None) -> np.ndarray:
    """What `model` is conditioned on for these states: the states, plus map features if it sees maps."""
    spec = spec_of(model)
    return conditions(states, map_features(grid, states, spec)) if spec else np.asarray(states, dtype=np.float64)


def spec_of(model) -> PatchSpec | None:
    """The model's PatchSpec (metadata "perception"), or None for a model that sees only the state."""
    perception = model.metadata.get("perception")
    return PatchSpec.from_dict(perception) if perception else None


def map_block(spec: PatchSpec) -> list[int]:
    """The condition columns of the map (flag and patch): the block training drops and guidance leans on."""
    return [STATE_SIZE, STATE_SIZE + spec.feature_dim]


def mark_map_guidance(model) -> None:
    """Give a map-seeing model its droppable block if its checkpoint predates the record of it.

    Every such model was trained with the map dropped for part of its rows (recipe map_dropout, and
    a no-map copy of every specialist row), so guidance on the block applies to it as well.
    """
    spec = spec_of(model)
    if spec is not None and not model.metadata.get("droppable_condition"):
        model.metadata["droppable_condition"] = map_block(spec)


def drop_maps(features: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Training features with `fraction` of the rows set to "no map" (flag 0, patch 0)."""
    rng = np.random.default_rng(seed)
    out = np.array(features, dtype=np.float64, copy=True)
    out[rng.random(len(out)) < fraction] = 0.0
    return out


@dataclass(frozen=True)
class MapCheck:
    """The robot and the map thresholds a target is checked with (node parameters robot.*, map.*).

    How the map's values read is the map's own `semantics` (`resolve_semantics` sets it from
    `semantics`: "occupancy", "costmap" or "auto").
    """

    robot_radius: float = ROBOT_RADIUS
    reach: float = ROBOT_REACH
    occupied_threshold: int = 50
    unknown_is_occupied: bool = True
    inflation: float = 0.0
    max_cost: int = INSCRIBED
    footprint: tuple | None = None  # polygon ((x, y), ...) metres, robot frame; None = the disc of robot_radius
    semantics: str = "auto"

    def __post_init__(self):
        if self.semantics not in (*SEMANTICS, "auto"):
            raise ValueError(f"map.semantics {self.semantics!r}: use one of {(*SEMANTICS, 'auto')}")

    def valid(self, grid: OccupancyMap, state, targets) -> np.ndarray:
        """``bool [n]``: each target's footprint is free and its gripper reaches the object first."""
        xy, yaw, half = object_footprint_from_state(state)
        return check_base_targets(grid, targets, xy, float(yaw), half, self.robot_radius, self.reach,
                                  self.occupied_threshold, self.unknown_is_occupied, self.inflation,
                                  self.max_cost, self.footprint)

    @property
    def inner_radius(self) -> float:
        """The robot's inscribed radius (the disc's radius, or the polygon's), metres."""
        return self.robot_radius if self.footprint is None else footprint_radii(self.footprint)[0]

    def window(self, state) -> float:
        """Half side of the window around the object that the check reads, metres."""
        _, _, half = object_footprint_from_state(state)
        body = self.robot_radius if self.footprint is None else footprint_radii(self.footprint)[1]
        return check_window(self.reach, half, body + self.inflation, 0.0)

    def resolve_semantics(self, grid: OccupancyMap, state) -> tuple[OccupancyMap, str]:
        """(the window of `grid` around the state's object, read as `semantics`; a note when detected).

        "auto" reads the window with maps.detect_semantics and says what it found; otherwise the
        setting decides and the note is empty.
        """
        xy, _, _ = object_footprint_from_state(state)
        window = grid.window(xy, self.window(state) + 1.0)
        if self.semantics != "auto":
            return grid.with_semantics(self.semantics), ""
        kind, why = detect_semantics(window)
        read = "a nav2 costmap" if kind == "costmap" else "an occupancy grid"
        return grid.with_semantics(kind), f"map read as {read} ({why}; map.semantics is auto: set it to say)"

    def describe(self, grid: OccupancyMap | None = None) -> str:
        body = (f"robot.radius {self.robot_radius:g} m" if self.footprint is None else
                f"robot.footprint {[list(map(float, p)) for p in self.footprint]}")
        costmap = grid is not None and grid.semantics == "costmap"
        rule = (f"the map read as a nav2 costmap: map.max_cost {self.max_cost}, lethal cells only for the footprint"
                if costmap else f"the map read as an occupancy grid: map.occupied_threshold {self.occupied_threshold}")
        return (f"{body} + map.inflation {self.inflation:g} m, robot.reach {self.reach:g} m, {rule}, "
                f"map.unknown_is_occupied {str(self.unknown_is_occupied).lower()}")


def candidates_for(num_samples: int, oversample: float) -> int:
    """How many candidates a map-checked request draws for `num_samples` answers."""
    return max(int(num_samples), int(math.ceil(num_samples * oversample)))


def best_valid(targets: np.ndarray, scores: np.ndarray, valid: np.ndarray, num_samples: int):
    """The best-scored valid targets, at most `num_samples`, best first: (targets, scores)."""
    idx = np.flatnonzero(valid)
    idx = idx[np.argsort(-scores[idx], kind="stable")][:num_samples]
    return targets[idx], scores[idx]


def footprint_state(state, object_index) -> np.ndarray:
    """The object's footprint of any domain's state, laid out as a navigate-to state (what the map check reads).

    `object_index` gives the state's indices of the object's x, y, width, height and yaw (a spec's
    `map_check.object`); MapCheck, the ring search and pose_yaws read only those first five numbers,
    so the rest stay 0. For the navigate-to state itself the five are its own first five.
    """
    out = np.zeros(STATE_SIZE)
    out[:5] = np.asarray(state, dtype=np.float64)[list(object_index)]
    return out


def pose_yaws(state, targets) -> np.ndarray:
    """Yaw of each base pose: facing the object's centre, as the map check and the simulator assume."""
    xy, _, _ = object_footprint_from_state(state)
    return facing_yaw(targets, xy)


@dataclass
class CheckedAnswer:
    targets: np.ndarray   # [m <= num_samples, 2], valid on the map, best score first
    scores: np.ndarray    # [m]
    drawn: int            # candidates checked (sampled, plus any of the ring search)
    valid: int            # candidates the map allowed
    searched: int = 0     # of those, from the ring search


def ring(states, k: int, rng: np.random.Generator, robot_radius: float = ROBOT_RADIUS,
         reach: float = ROBOT_REACH) -> np.ndarray:
    """``[n, k, 2]`` uniform-area samples of the ring where a robot facing the object reaches it.

    The classical search a robot engineer writes without a model (the simulator's baseline):
    inner radius clears the object's short side, outer radius still reaches it. It sees the
    state only (centre and size), never the clutter.
    """
    states = np.asarray(states, dtype=np.float64).reshape(-1, STATE_SIZE)
    half = np.minimum(states[:, 2], states[:, 3]) / 2
    r0, r1 = robot_radius + half, np.maximum(reach + half, robot_radius + half)
    u = rng.uniform(size=(len(states), k))
    radius = np.sqrt(r0[:, None] ** 2 + u * (r1[:, None] ** 2 - r0[:, None] ** 2))
    angle = rng.uniform(-np.pi, np.pi, size=(len(states), k))
    return states[:, None, :2] + radius[..., None] * np.stack([np.cos(angle), np.sin(angle)], axis=-1)


def ring_candidates(state, n: int, check: MapCheck, rng: np.random.Generator) -> np.ndarray:
    """``[n, 2]`` ring candidates for one state and this robot (its inscribed radius inflated as the check's)."""
    return ring(state, n, rng, check.inner_radius + check.inflation, check.reach)[0]


def answer_with_map(draw, grid: OccupancyMap, state, num_samples: int, check: MapCheck,
                    oversample: float, ring_search: int = 0, seed: int = 0) -> CheckedAnswer:
    """Draw candidates in one batch (`draw(n) -> (targets [n, 2], scores [n])`), keep the best valid ones.

    When fewer than `num_samples` pass, `ring_search` x `num_samples` ring candidates are checked
    too (a fraction of a millisecond) and the valid ones ranked after every model candidate: a
    robot gets a pose a simple search can find rather than none. The same function serves the
    placement service and the navigate-to study, so the study measures what a robot is told.
    """
    n = candidates_for(num_samples, oversample)
    targets, scores = (np.asarray(a, dtype=np.float64) for a in draw(n))
    valid = check.valid(grid, state, targets)
    searched = 0
    if valid.sum() < num_samples and ring_search > 0:
        searched = int(ring_search * num_samples)
        ring = ring_candidates(state, searched, check, np.random.default_rng(seed))
        floor = float(scores.min()) if len(scores) else 0.0
        targets = np.concatenate([targets, ring])
        scores = np.concatenate([scores, floor - 1.0 - np.arange(searched)])  # after every sampled one
        valid = np.concatenate([valid, check.valid(grid, state, ring)])
    best, best_scores = best_valid(targets, scores, valid, num_samples)
    return CheckedAnswer(best, best_scores, n + searched, int(valid.sum()), searched)
