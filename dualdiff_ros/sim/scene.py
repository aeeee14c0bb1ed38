"""The household: a fixed 20 x 20 house, per-task furniture and clutter, and the navigate-to steps.

Everything here is plain numpy so that a scene is a value: ``generate_scene(seed, task_index)``
always gives the same scene, and a held-out data point needs only those two numbers (plus its
step) to rebuild exactly what the robot saw. PyBullet enters in ``world.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..navigate_to import ROBOT_RADIUS  # the robot's footprint: one value for the simulator and the service
from .geometry import aabb, as_rects, rects_overlap

WORLD_SIZE = 20.0
GRIPPER_LENGTH = 2.0
REACH = ROBOT_RADIUS + GRIPPER_LENGTH  # centre to gripper tip

# (width range, height range): plausible household sizes; the two from the paper are shelf and book.
OBJECT_SIZES: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "ball": ((0.3, 0.6), (0.3, 0.6)),
    "basket": ((1.0, 2.0), (1.0, 2.0)),
    "bin": ((1.0, 2.0), (1.0, 2.0)),
    "book": ((0.5, 1.0), (1.0, 1.5)),
    "box": ((0.8, 1.5), (0.8, 1.5)),
    "cup": ((0.3, 0.6), (0.3, 0.6)),
    "cupboard": ((3.0, 6.0), (1.5, 3.0)),
    "shelf": ((5.0, 10.0), (2.0, 5.0)),
    "stick": ((0.2, 0.4), (2.0, 4.0)),
    "tray": ((1.5, 3.0), (1.0, 2.0)),
}
OBSTACLE_SIZE = ((0.5, 1.5), (0.5, 1.5))  # chairs, stools, plants: clutter the robot must avoid
OBJECT_TYPES = tuple(sorted(OBJECT_SIZES))  # the integer code of a type is its index here
ROUND_TYPES = frozenset({"ball", "cup"})  # square footprint: width == height

# pick type -> place type; task index i is the task TASKS[i % len(TASKS)]
TASKS: tuple[tuple[str, str], ...] = (
    ("ball", "bin"),
    ("book", "shelf"),
    ("box", "tray"),
    ("cup", "cupboard"),
    ("stick", "basket"),
)

_T = 0.3  # interior wall thickness
# The house never changes (it is "this home"); only furniture and clutter vary per task.
# Outer walls sit outside [0, 20]^2; interior walls make a living room (left), a kitchen
# (bottom right) and a bedroom (top right), joined by 6-wide doorways.
HOUSE_WALLS = as_rects(
    [
        [WORLD_SIZE / 2, -0.5, WORLD_SIZE + 2, 1.0, 0.0],
        [WORLD_SIZE / 2, WORLD_SIZE + 0.5, WORLD_SIZE + 2, 1.0, 0.0],
        [-0.5, WORLD_SIZE / 2, 1.0, WORLD_SIZE + 2, 0.0],
        [WORLD_SIZE + 0.5, WORLD_SIZE / 2, 1.0, WORLD_SIZE + 2, 0.0],
        [9.0, 3.5, _T, 7.0, 0.0],
        [9.0, 16.5, _T, 7.0, 0.0],
        [17.5, 11.0, 5.0, _T, 0.0],
    ]
)

N_OBSTACLES = (18, 20)  # inclusive range per task
AGAINST_WALL = 0.75  # share of clutter standing against a wall, as furniture does in a home
WALL_TYPES = frozenset({"shelf", "cupboard"})  # always backed against a wall
SOMETIMES_WALL_TYPES = frozenset({"bin", "basket", "tray"})  # half of the time
N_ITEMS = (1, 3)  # objects to carry per task, inclusive
PLACEMENT_GAP = 0.1  # furniture never touches
_PLACEMENT_TRIES = 500


def type_code(kind: str) -> int:
    return OBJECT_TYPES.index(kind)


def task_of(task_index: int) -> tuple[str, str]:
    """(pick type, place type) of a task index: fixed, so data can be split by index alone."""
    return TASKS[int(task_index) % len(TASKS)]


@dataclass(frozen=True)
class NavigateStep:
    """One navigate-to: drive next to ``object_index`` while ``absent`` objects are carried or stowed."""

    object_index: int
    absent: tuple[int, ...]
    gripper_free: bool


@dataclass(frozen=True)
class Scene:
    """A task's household: task objects (items to carry, then the receptacle), clutter and walls."""

    seed: int
    task_index: int
    object_kinds: tuple[str, ...]
    object_rects: np.ndarray  # [n, 5]
    obstacles: np.ndarray  # [m, 5]
    walls: np.ndarray = field(default_factory=lambda: HOUSE_WALLS.copy())

    @property
    def n_items(self) -> int:
        return len(self.object_kinds) - 1

    @property
    def steps(self) -> tuple[NavigateStep, ...]:
        """Pick each item, then carry it to the receptacle; placed items leave the floor."""
        receptacle = len(self.object_kinds) - 1
        out = []
        for j in range(self.n_items):
            out.append(NavigateStep(j, tuple(range(j)), True))
            out.append(NavigateStep(receptacle, tuple(range(j + 1)), False))
        return tuple(out)

    @classmethod
    def build(cls, objects, obstacles=(), walls=None, seed: int = -1, task_index: int = -1) -> "Scene":
        """A hand-made scene from ``[(kind, (x, y, w, h, yaw)), ...]``: for tests and demos."""
        kinds = tuple(k for k, _ in objects)
        rects = as_rects([r for _, r in objects])
        return cls(seed, task_index, kinds, rects, as_rects(obstacles),
                   HOUSE_WALLS.copy() if walls is None else as_rects(walls))


def _sample_rect(rng: np.random.Generator, size, square: bool = False) -> np.ndarray:
    (w0, w1), (h0, h1) = size
    w = rng.uniform(w0, w1)
    h = w if square else rng.uniform(h0, h1)
    yaw = rng.uniform(-np.pi / 2, np.pi / 2)
    return np.array([rng.uniform(0, WORLD_SIZE), rng.uniform(0, WORLD_SIZE), w, h, yaw])


def _wall_faces(walls: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, float, float]]:
    """Inward faces of axis-aligned walls as ``(normal, point on face, lo, hi)`` inside the house."""
    faces = []
    for x, y, w, h, _ in walls:
        horizontal = w >= h
        along, across = (0, 1) if horizontal else (1, 0)
        centre = np.array([x, y])
        half_len, half_depth = (w / 2, h / 2) if horizontal else (h / 2, w / 2)
        lo = max(centre[along] - half_len, 0.0)
        hi = min(centre[along] + half_len, WORLD_SIZE)
        for sign in (-1.0, 1.0):
            level = centre[across] + sign * half_depth
            if not 0.0 <= level <= WORLD_SIZE or hi - lo <= 0:
                continue
            normal = np.zeros(2)
            normal[across] = sign
            point = np.zeros(2)
            point[across] = level
            faces.append((normal, point, lo, hi))
    return faces


HOUSE_FACES = _wall_faces(HOUSE_WALLS)


def _sample_against_wall(rng: np.random.Generator, size, long_side_to_wall: bool) -> np.ndarray:
    """A rectangle backed against a random wall face long enough for it (chosen by length)."""
    (w0, w1), (h0, h1) = size
    w, h = rng.uniform(w0, w1), rng.uniform(h0, h1)
    along_wall, depth = (w, h) if long_side_to_wall or rng.random() < 0.5 else (h, w)
    faces = [f for f in HOUSE_FACES if f[3] - f[2] >= along_wall]
    lengths = np.array([hi - lo for _, _, lo, hi in faces])
    normal, point, lo, hi = faces[rng.choice(len(faces), p=lengths / lengths.sum())]
    along = 1 - int(np.argmax(np.abs(normal)))
    centre = point + normal * (depth / 2 + 1.5 * PLACEMENT_GAP)
    centre[along] = rng.uniform(lo + along_wall / 2, hi - along_wall / 2)
    yaw = 0.0 if along == 0 else -np.pi / 2  # width runs along the wall; yaw kept in [-pi/2, pi/2)
    return np.array([centre[0], centre[1], along_wall, depth, yaw])


def _fits(rect: np.ndarray, placed: list[np.ndarray], walls: np.ndarray) -> bool:
    lo, hi = aabb(rect)
    if (lo < 0).any() or (hi > WORLD_SIZE).any():
        return False
    others = np.concatenate([walls, np.array(placed).reshape(-1, 5)])
    olo, ohi = aabb(others)
    near = ((olo < hi + 2 * PLACEMENT_GAP) & (ohi > lo - 2 * PLACEMENT_GAP)).all(axis=1)  # broad phase
    return not rects_overlap(rect, others[near], PLACEMENT_GAP).any()


def _place(rng: np.random.Generator, size, placed, walls, square=False,
           against_wall: bool = False, long_side_to_wall: bool = False) -> np.ndarray | None:
    """Rejection sampling: a pose (free or against a wall) until it touches nothing placed so far."""
    for _ in range(_PLACEMENT_TRIES):
        if against_wall:
            rect = _sample_against_wall(rng, size, long_side_to_wall)
        else:
            rect = _sample_rect(rng, size, square)
        if _fits(rect, placed, walls):
            return rect
    return None


def generate_scene(seed: int, task_index: int) -> Scene:
    """The scene of task ``task_index`` under ``seed``: same inputs, same scene, on any machine.

    Its parameters are this module's constants on purpose: held-out data is rebuilt from
    (seed, task index) alone, so changing them changes the data (bump DATASET_VERSION).
    """
    rng = np.random.default_rng([int(seed), int(task_index)])
    pick, place = task_of(task_index)
    n_carry = int(rng.integers(N_ITEMS[0], N_ITEMS[1] + 1))
    n_clutter = int(rng.integers(N_OBSTACLES[0], N_OBSTACLES[1] + 1))
    while True:  # a big shelf can leave no room for the rest: start over (rare, still deterministic)
        placed: list[np.ndarray] = []
        for kind in (place,) + (pick,) * n_carry:
            to_wall = kind in WALL_TYPES or (kind in SOMETIMES_WALL_TYPES and rng.random() < 0.5)
            rect = _place(rng, OBJECT_SIZES[kind], placed, HOUSE_WALLS, kind in ROUND_TYPES,
                          against_wall=to_wall, long_side_to_wall=True)
            if rect is None:
                break
            placed.append(rect)
        else:
            break
    objects = placed[1:] + placed[:1]  # items first, receptacle last
    clutter = []
    for _ in range(n_clutter):
        rect = _place(rng, OBSTACLE_SIZE, placed + clutter, HOUSE_WALLS,
                      against_wall=rng.random() < AGAINST_WALL)
        if rect is not None:
            clutter.append(rect)
    return Scene(int(seed), int(task_index), (pick,) * n_carry + (place,), as_rects(objects),
                 as_rects(clutter))
