"""Occupancy maps: the OccupancyGrid twin, the raster validity check and its agreement with PyBullet."""
import math
import subprocess
import sys

import numpy as np
import pytest

from dualdiff_ros.maps import (
    OccupancyMap,
    check_base_targets,
    facing_yaw,
    local_patch,
    object_footprint_from_state,
    quaternion_to_yaw,
    yaw_to_quaternion,
)
from dualdiff_ros.sim import REACH, ROBOT_RADIUS, Scene, World, generate_scene, ring_proposer
from dualdiff_ros.sim.dataset import band_candidates, state_features
from dualdiff_ros.sim.geometry import facing_yaw as sim_facing_yaw
from dualdiff_ros.sim.occupancy import rasterize_scene

RES = 0.1


# -- the OccupancyGrid twin ---------------------------------------------------------------------
def test_flat_layout_is_row_major_column_i_row_j():
    flat = np.zeros(3 * 2, dtype=np.int8)
    flat[2 + 1 * 3] = 100  # column 2, row 1
    flat[0] = -1
    grid = OccupancyMap.from_flat(flat.tolist(), width=3, height=2, resolution=0.5, origin_x=1.0, origin_y=-1.0)
    assert grid.data.shape == (2, 3) and grid.data.dtype == np.int8
    assert grid.data[1, 2] == 100 and grid.data[0, 0] == -1
    np.testing.assert_array_equal(grid.to_flat(), flat)
    # the centre of cell (2, 1) in the map frame: origin + (2.5, 1.5) * resolution
    np.testing.assert_array_equal(grid.world_to_cell([[1.0 + 1.25, -1.0 + 0.75]]), [[2, 1]])
    np.testing.assert_allclose(grid.cell_centres()[1, 2], [2.25, -0.25])
    assert grid.values_at([[2.25, -0.25], [50.0, 0.0]]).tolist() == [100, -1]


@pytest.mark.parametrize("kwargs, field", [
    (dict(width=0, height=4), "width"),
    (dict(width=4, height=0), "height"),
    (dict(resolution=0.0), "resolution"),
    (dict(resolution=-0.1), "resolution"),
    (dict(resolution=float("nan")), "resolution"),
    (dict(resolution=float("inf")), "resolution"),
    (dict(data=[0] * 15), "data"),
    (dict(origin_x=float("nan")), "origin_x"),
    (dict(origin_y=float("inf")), "origin_y"),
    (dict(origin_yaw=float("nan")), "origin_yaw"),
    (dict(data=[0] * 15 + [101]), "-1..100"),
    (dict(data=[-2] + [0] * 15), "-1..100"),
])
def test_validate_names_the_bad_field(kwargs, field):
    args = dict(data=[0] * 16, width=4, height=4, resolution=0.1, origin_x=0.0, origin_y=0.0, origin_yaw=0.0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        OccupancyMap.from_flat(**args)


def test_validate_on_a_built_map():
    grid = OccupancyMap(np.zeros((3, 3), np.int8), 0.1)
    assert grid.validate() is grid
    grid.resolution = 0.0
    with pytest.raises(ValueError, match="resolution"):
        grid.validate()
    with pytest.raises(ValueError, match="width"):
        OccupancyMap(np.zeros((3, 0), np.int8), 0.1).validate()


def test_maps_imports_neither_pybullet_nor_ros():
    code = ("import sys, dualdiff_ros.maps; bad = [m for m in ('pybullet', 'rclpy', 'torch') if m in sys.modules];"
            " assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# -- poses and state ----------------------------------------------------------------------------
def test_quaternion_round_trip():
    yaws = np.linspace(-math.pi + 1e-6, math.pi, 37)
    q = yaw_to_quaternion(yaws)
    assert q.shape == (37, 4)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0)
    np.testing.assert_allclose(q[:, :2], 0.0)
    np.testing.assert_allclose(quaternion_to_yaw(q), yaws, atol=1e-12)
    np.testing.assert_allclose(yaw_to_quaternion(math.pi / 2), [0, 0, math.sqrt(0.5), math.sqrt(0.5)])
    np.testing.assert_allclose(quaternion_to_yaw(yaw_to_quaternion(3 * math.pi)), math.pi, atol=1e-9)


def test_facing_yaw_is_the_simulators():
    rng = np.random.default_rng(0)
    targets, centre = rng.uniform(0, 20, (50, 2)), np.array([7.0, 4.0])
    np.testing.assert_allclose(facing_yaw(targets, centre), sim_facing_yaw(targets, centre))


def test_object_footprint_from_state():
    rect = np.array([3.0, 4.0, 1.0, 0.4, 0.3])
    state = state_features(rect, np.array([9.0, 9.0, 1.0]), gripper_free=True)
    xy, yaw, half = object_footprint_from_state(state)
    np.testing.assert_allclose(xy, [3.0, 4.0])
    assert yaw == pytest.approx(0.3)
    np.testing.assert_allclose(half, [0.5, 0.2])
    xy, yaw, half = object_footprint_from_state(np.stack([state, state]))
    assert xy.shape == (2, 2) and yaw.shape == (2,) and half.shape == (2, 2)
    with pytest.raises(ValueError):
        object_footprint_from_state(np.zeros(9))


# -- a hand-made grid ---------------------------------------------------------------------------
R, L = 1.0, 2.0  # robot radius, reach: the simulator's ratio, smaller
BOX = (np.array([7.05, 5.0]), 0.0, np.array([0.25, 0.25]))  # the goal object


@pytest.fixture
def room():
    """10 x 10 m, a wall at 5.0 <= x < 5.2 (columns 50, 51), the goal box's cells occupied."""
    data = np.zeros((100, 100), dtype=np.int8)
    data[:, 50:52] = 100
    data[47:53, 68:73] = 100  # x 6.8..7.3, y 4.7..5.3: every cell the footprint overlaps
    return OccupancyMap(data, RES)


def _check(grid, targets, **kw):
    return check_base_targets(grid, targets, *BOX, robot_radius=R, reach=L, **kw)


def test_footprint_and_reach_on_a_hand_made_grid(room):
    targets = [
        [7.05, 3.5],  # 1.2 below the box's cells: clear, the gripper enters the box at 1.25
        [8.6, 5.0],  # beside it, facing it
        [7.05, 4.4],  # the disc overlaps the box: nothing is excluded from the footprint check
        [6.0, 5.0],  # the disc crosses the wall
        [7.05, 2.0],  # clear, but the box is 2.75 away: out of reach
        [0.5, 5.0],  # the disc leaves the map: unknown, blocked
        [np.nan, 5.0],
    ]
    assert _check(room, targets).tolist() == [True, True, False, False, False, False, False]


def test_an_obstacle_between_base_and_object_blocks_the_gripper(room):
    target = [[7.05, 3.5]]
    room.data[46, 70] = 100  # x 7.0..7.1, y 4.6..4.7: outside the disc, on the gripper's line
    assert not _check(room, target)[0]
    assert _check(room, [[7.6, 3.5]])[0]  # aimed past it
    room.data[46, 70] = 0
    room.data[46, 71] = 100  # the next cell over: the line x = 7.05 passes beside it
    assert _check(room, target)[0]


def test_the_objects_own_cells_do_not_block_the_gripper():
    """A turned box alone: the gripper passes the box's partly covered cells on its way in.

    Against the exact planar rule, the map never accepts what the rule rejects, and it accepts
    every target whose disc keeps a cell diagonal more than needed.
    """
    from dualdiff_ros.sim.geometry import planar_validity, signed_distance
    from dualdiff_ros.sim.occupancy import rasterize_rects

    box = np.array([5.03, 4.96, 1.3, 0.45, 0.5])
    grid = OccupancyMap(rasterize_rects([box], (100, 100), RES), RES)
    angle = np.linspace(-math.pi, math.pi, 720, endpoint=False)
    radius = np.linspace(R, L + 0.7, 720)
    targets = box[:2] + radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    got = check_base_targets(grid, targets, box[:2], box[4], box[2:4] / 2, R, L)
    exact = planar_validity(box, [], targets, R, L)
    roomy = signed_distance(targets, box)[:, 0] >= R + RES * math.sqrt(2)
    assert exact.sum() > 100 and not (got & ~exact).any()
    assert got[exact & roomy].all()


def test_inflation_threshold_and_unknown(room):
    target = [[7.05, 3.65]]  # the disc keeps 1.05 from the box's cells
    assert _check(room, target)[0]
    assert _check(room, target, inflation=0.04)[0]
    assert not _check(room, target, inflation=0.06)[0]
    room.data[20:30, 65:75] = 40  # a soft cost under the disc at (7.05, 3.5)
    assert _check(room, [[7.05, 3.5]])[0]
    assert not _check(room, [[7.05, 3.5]], occupied_threshold=30)[0]
    room.data[20:30, 65:75] = -1
    assert not _check(room, [[7.05, 3.5]])[0]
    assert _check(room, [[7.05, 3.5]], unknown_is_occupied=False)[0]
    assert _check(room, [[0.5, 5.0]], unknown_is_occupied=False).tolist() == [False]  # off map, out of reach


def test_the_check_does_not_depend_on_the_maps_frame(room):
    """The same room with its origin moved and turned: transformed targets get the same answers."""
    rng = np.random.default_rng(3)
    targets = np.concatenate([rng.uniform(0, 10, (300, 2)), BOX[0] + rng.normal(0, 1.5, (300, 2))])
    theta, origin = 0.7, np.array([-3.0, 12.0])
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    turned = OccupancyMap(room.data, RES, *origin, theta)
    a = check_base_targets(room, targets, *BOX, R, L)
    b = check_base_targets(turned, targets @ rot.T + origin, rot @ BOX[0] + origin, BOX[1] + theta, BOX[2], R, L)
    assert a.any() and (~a).any()
    assert (a != b).sum() <= 2  # only targets within rounding of a cell edge may differ


# -- the local patch ----------------------------------------------------------------------------
@pytest.mark.parametrize("yaw", [0.0, 0.4, math.pi / 2, 2.5, -1.2, math.pi])
def test_local_patch_turns_with_the_object(yaw):
    """An obstacle 2 m along the object's +x axis shows on the patch's +x side for any yaw."""
    grid = OccupancyMap(np.zeros((200, 200), np.int8), RES)
    centre = np.array([10.0, 10.0])
    ax, ay = np.array([math.cos(yaw), math.sin(yaw)]), np.array([-math.sin(yaw), math.cos(yaw)])
    blob = grid.world_to_cell(centre + 2.0 * ax + 0.7 * ay)
    grid.data[blob[1] - 2:blob[1] + 3, blob[0] - 2:blob[0] + 3] = 100
    patch = local_patch(grid, centre, yaw, half_extent_m=3.0, size_cells=30)
    assert patch.shape == (30, 30) and patch.dtype == np.float32
    rows, cols = np.nonzero(patch == 1.0)
    assert len(rows) > 0
    # local (2.0, 0.7) -> column (2.0 + 3) / 0.2 = 25, row (0.7 + 3) / 0.2 = 18.5
    assert np.all(np.abs(cols - 24.5) <= 3) and np.all(np.abs(rows - 18) <= 3)
    assert set(np.unique(patch)) <= {0.0, 1.0}


def test_local_patch_values_and_off_map():
    data = np.zeros((50, 50), np.int8)
    data[:, 25:] = -1
    data[0:10, 0:10] = 60
    grid = OccupancyMap(data, RES)
    patch = local_patch(grid, [0.5, 0.5], 0.0, half_extent_m=1.0, size_cells=20)
    assert patch[0, 0] == 0.5  # off the map (x < 0): unknown
    assert patch[12, 12] == pytest.approx(0.6)  # local (0.25, 0.25): map (0.75, 0.75)
    assert patch[15, 15] == 0.0  # map (1.05, 1.05)
    assert local_patch(grid, [4.0, 2.5], 0.0, 0.5, 4)[0, -1] == 0.5  # unknown cells
    with pytest.raises(ValueError):
        local_patch(grid, [0.5, 0.5], 0.0, 1.0, 0)


# -- the simulator's scene as a map -------------------------------------------------------------
def test_rasterize_scene_is_conservative_and_honours_absent():
    scene = generate_scene(2, 3)
    grid = rasterize_scene(scene, RES)
    assert grid.data.shape == (200, 200) and (grid.origin_x, grid.origin_y) == (0.0, 0.0)
    assert set(np.unique(grid.data)) == {0, 100}
    rng = np.random.default_rng(0)
    for rect in np.concatenate([scene.walls[4:], scene.obstacles, scene.object_rects]):
        local = rng.uniform(-0.5, 0.5, (200, 2)) * rect[2:4]
        c, s = math.cos(rect[4]), math.sin(rect[4])
        pts = rect[:2] + local @ np.array([[c, s], [-s, c]])
        assert (grid.values_at(pts) == 100).all()  # every point of every body lies in an occupied cell
    assert grid.data[0, :80].max() == 0  # the outer walls lie off the map (touching is not overlapping)
    with_margin = rasterize_scene(scene, RES, margin=1.0)
    assert with_margin.data.shape == (220, 220) and (with_margin.data[:10] == 100).all()
    item = scene.object_rects[0]
    cell = grid.world_to_cell(item[:2])
    assert grid.data[cell[1], cell[0]] == 100
    assert rasterize_scene(scene, RES, absent=[0]).data[cell[1], cell[0]] == 0
    # a 0.5 ball at (5, 5) covers 4.75..5.25: cells 47..52, and no further
    house = Scene.build([("ball", (5.0, 5.0, 0.5, 0.5, 0.0))])
    ball = rasterize_scene(house, RES)
    assert (ball.data[47:53, 47:53] == 100).all() and ball.data[46, 50] == 0 and ball.data[53, 50] == 0


def _agreement(seeds, tasks, per_step, inflations, rng):
    counts = {inf: np.zeros(4, dtype=np.int64) for inf in inflations}  # tp, tn, false accept, false reject
    with World() as world:
        for seed in seeds:
            for task_index in tasks:
                scene = generate_scene(seed, task_index)
                world.load(scene)
                for step in scene.steps:
                    world.set_step(step)
                    rect = scene.object_rects[step.object_index]
                    state = np.concatenate([rect, np.zeros(5)])
                    targets = np.concatenate([ring_proposer(state, per_step, rng)[0],
                                              band_candidates(rect, per_step, rng)])
                    exact = world.check_targets(step.object_index, targets)
                    grid = rasterize_scene(scene, RES, absent=step.absent)
                    xy, yaw, half = object_footprint_from_state(state)
                    for inf in inflations:
                        got = check_base_targets(grid, targets, xy, yaw, half, ROBOT_RADIUS, REACH, inflation=inf)
                        counts[inf] += [(got & exact).sum(), (~got & ~exact).sum(), (got & ~exact).sum(),
                                        (~got & exact).sum()]
    return counts


def test_the_map_check_agrees_with_pybullet():
    """Scenes (seed 0, 3; tasks 0..9), ring and band targets: measured agreement 0.987, no false accepts.

    The raster is conservative (a cell is occupied if any body overlaps it), so the map check only
    errs by rejecting targets whose disc passes within about a cell of a body; inflation trades
    more of those for a margin against map error (0.05 m: 0.977, 0.1 m: 0.966 agreement).
    """
    inflations = (0.0, 0.05, 0.1)
    counts = _agreement((0, 3), range(10), 100, inflations, np.random.default_rng(0))
    rates = {}
    for inf, (tp, tn, fa, fr) in counts.items():
        n = tp + tn + fa + fr
        rates[inf] = dict(n=int(n), agreement=(tp + tn) / n, false_accept=fa / n, kept_valid=tp / (tp + fr))
        print(f"inflation {inf:.2f}: {rates[inf]}")
    base = rates[0.0]
    assert base["n"] > 10_000 and 0.05 < counts[0.0][[0, 3]].sum() / base["n"] < 0.5  # both answers occur
    assert base["agreement"] >= 0.97
    assert base["false_accept"] <= 0.001
    assert base["kept_valid"] >= 0.9
    kept = [rates[inf]["kept_valid"] for inf in inflations]
    assert kept == sorted(kept, reverse=True)  # inflation only ever rejects more
    assert all(rates[inf]["false_accept"] <= base["false_accept"] for inf in inflations)
