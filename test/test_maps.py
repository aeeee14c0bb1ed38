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
    return check_base_targets(grid, targets, *BOX, **{"robot_radius": R, "reach": L, **kw})


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


# -- nav2 costmaps ------------------------------------------------------------------------------
from dualdiff_ros.maps import (  # noqa: E402
    detect_semantics,
    footprint_radii,
    nav2_costmap,
    parse_footprint,
)


def test_nav2_costmap_follows_nav2s_published_formula():
    """One lethal cell: 100 on it, 99 out to the inscribed radius, then 1 + 97 (c - 1) // 251 of the decay."""
    data = np.zeros((101, 101), np.int8)
    data[50, 50] = 100
    cost = nav2_costmap(OccupancyMap(data, 0.05), inscribed_radius=0.5).data
    assert cost[50, 50] == 100
    assert cost[50, 60] == 99 and cost[50, 61] == 84  # d = 0.50 (inscribed); 0.55: c = int(252 e^-0.15) = 216
    for cells in (11, 15, 20):
        c = int(252 * math.exp(-3.0 * (cells * 0.05 - 0.5)))
        assert cost[50, 50 + cells] == 1 + (97 * (c - 1)) // 251
    assert cost[50, 71] == 19 and cost[50, 72] == 0  # d = 1.05 = 0.5 + 0.55 is inflated, 1.10 is not
    assert set(np.unique(cost)) <= set(range(0, 101))
    data[0:5, 0:5] = -1
    assert (nav2_costmap(OccupancyMap(data, 0.05), 0.5).data[0:5, 0:5] == -1).all()


def _scene_maps(seed=0, task=0, res=0.05, radius=ROBOT_RADIUS):
    scene = generate_scene(seed, task)
    step = scene.steps[0]
    grid = rasterize_scene(scene, res, absent=step.absent, margin=1.0)
    return scene, step, grid, nav2_costmap(grid, inscribed_radius=radius)


def test_semantics_are_detected_from_the_map():
    _, _, grid, costmap = _scene_maps()
    assert detect_semantics(grid)[0] == "occupancy"
    kind, why = detect_semantics(costmap)
    assert kind == "costmap" and "99" in why
    small_robot = nav2_costmap(grid, inscribed_radius=0.22)  # nav2's example robot
    assert detect_semantics(small_robot)[0] == "costmap"
    assert detect_semantics(OccupancyMap(np.zeros((20, 20), np.int8), 0.05))[0] == "occupancy"  # nothing to tell
    soft = grid.data.copy()
    soft[soft == 0] = 30  # a map_server scale-mode grid: grey everywhere, still not nav2's inscribed ring
    assert detect_semantics(OccupancyMap(soft, 0.05))[0] == "occupancy"


def test_a_nav2_costmap_at_defaults_gives_valid_poses_that_pybullet_accepts():
    """Scenes at 0.05 m as nav2 publishes them (inflation = robot radius + 0.55, scaling 3).

    Read as a costmap, the check keeps about what the occupancy grid keeps, and never a pose that
    PyBullet rejects; read as an occupancy grid (the service before 2026-12-04) nearly nothing passes.
    """
    rng = np.random.default_rng(0)
    kept = {"occupancy": 0, "costmap": 0, "costmap read as occupancy": 0}
    false_accepts = exact_valid = 0
    with World() as world:
        for seed, task in ((0, 0), (0, 1), (3, 2), (3, 5)):
            scene, step, grid, costmap = _scene_maps(seed, task)
            world.load(scene)
            world.set_step(step)
            rect = scene.object_rects[step.object_index]
            state = np.concatenate([rect, np.zeros(5)])
            targets = np.concatenate([ring_proposer(state, 200, rng)[0], band_candidates(rect, 200, rng)])
            exact = world.check_targets(step.object_index, targets)
            xy, yaw, half = object_footprint_from_state(state)
            for name, g in (("occupancy", grid), ("costmap", costmap),
                            ("costmap read as occupancy", costmap.with_semantics("occupancy"))):
                got = check_base_targets(g, targets, xy, yaw, half, ROBOT_RADIUS, REACH)
                kept[name] += int(got.sum())
                if name == "costmap":
                    false_accepts += int((got & ~exact).sum())
                    exact_valid += int(exact.sum())
    assert exact_valid > 200
    assert false_accepts == 0
    assert kept["costmap"] >= 0.9 * kept["occupancy"] > 0
    assert kept["costmap read as occupancy"] <= 0.05 * kept["costmap"]


def test_a_costmaps_centre_cost_decides_and_max_cost_keeps_further_away(room):
    costmap = nav2_costmap(room, inscribed_radius=R)
    target = [[7.05, 3.5]]  # 1.2 below the box: outside the inscribed 1.0, in the inflation band
    assert _check(costmap, target)[0]
    assert not _check(costmap, target, max_cost=20)[0]  # its cost is above 20
    assert not _check(costmap, [[7.05, 3.8]])[0]  # the centre within 1.0 of the box: inscribed
    assert _check(costmap, target, inflation=0.1)[0] and not _check(costmap, target, inflation=0.3)[0]


# -- polygon footprints ---------------------------------------------------------------------------
def test_parse_footprint_reads_nav2s_format_and_names_bad_values():
    square = parse_footprint("[[0.5, 0.4], [0.5, -0.4], [-0.5, -0.4], [-0.5, 0.4]]")
    np.testing.assert_allclose(square, [[0.5, 0.4], [0.5, -0.4], [-0.5, -0.4], [-0.5, 0.4]])
    np.testing.assert_allclose(parse_footprint("[[.5,1e-1],[-0.5,0.1],[0,-1.]]"), [[.5, .1], [-.5, .1], [0, -1]])
    assert parse_footprint("") is None and parse_footprint(" [] ") is None
    np.testing.assert_allclose(footprint_radii(square), (0.4, math.hypot(0.5, 0.4)))
    for bad, words in (("[[1, 2], [3, 4]]", "at least 3"), ("[[1, 2], [1, 2], [1, 2]]", "no area"),
                       ("0.5", "nav2's format"), ("[[1, 2], [3, 4], [5]]", "nav2's format"),
                       ("[[1, nan], [3, 4], [5, 6]]", "nav2's format")):
        with pytest.raises(ValueError, match=words) as err:
            parse_footprint(bad)
        assert bad[:10] in str(err.value) and "[[x, y]" in str(err.value) or words != "nav2's format"


def test_a_polygon_footprint_fits_where_its_circumscribed_disc_does_not(room):
    """A narrow robot (0.6 x 1.6 m, long across its heading) between the wall and the box."""
    long_sideways = [[0.3, 0.8], [0.3, -0.8], [-0.3, -0.8], [-0.3, 0.8]]  # x towards the object
    target = [[6.0, 5.0]]  # facing +x; 0.8 from the wall's cells at x < 5.2, 0.8 from the box's at 6.8
    assert not _check(room, target)[0]  # the 1.0 disc crosses the wall
    assert _check(room, target, robot_radius=0.86, footprint=long_sideways)[0]
    turned = [[0.9, 0.3], [0.9, -0.3], [-0.9, -0.3], [-0.9, 0.3]]  # turned (and a little longer): towards the box
    assert not _check(room, target, robot_radius=0.86, footprint=turned)[0]


def test_the_polygon_check_sees_cells_inside_it_and_never_accepts_an_overlap():
    """Random poses near one blocked cell: the body meets the cell iff a dense sample of the cell lies inside.

    The object stands 3 m up; a pose is also invalid when the gripper's line towards it crosses the cell.
    """
    from matplotlib.path import Path

    rng = np.random.default_rng(1)
    poly = np.array([[0.6, 0.0], [0.2, 0.5], [-0.5, 0.4], [-0.4, -0.45], [0.3, -0.35]])  # 5 corners, convex
    data = np.zeros((80, 80), np.int8)
    data[20, 20] = 100  # cell x 2.0..2.1, y 2.0..2.1
    grid = OccupancyMap(data, 0.1)
    goal = np.array([2.05, 5.05])
    u = (np.arange(40) + 0.5) / 40
    cell_pts = np.stack(np.meshgrid(2.0 + 0.1 * u, 2.0 + 0.1 * u), -1).reshape(-1, 2)
    targets = np.array([2.05, 2.05]) + rng.uniform(-0.75, 0.75, (400, 2))
    got = check_base_targets(grid, targets, goal, 0.0, [0.01, 0.01], 0.8, 10.0, footprint=poly)
    agree = 0
    for t, ok in zip(targets, got):
        yaw = math.atan2(goal[1] - t[1], goal[0] - t[0])
        c, s = math.cos(yaw), math.sin(yaw)
        body = Path(t + poly @ np.array([[c, s], [-s, c]])).contains_points(cell_pts).any()
        line = t + np.linspace(0, 1, 4000)[:, None] * (goal - t)
        crosses = ((line >= 2.0) & (line < 2.1)).all(axis=1).any()
        assert not (ok and body)  # never accepts a pose whose body covers the blocked cell
        agree += ok == (not body and not crosses)
    assert agree >= 0.97 * len(targets) and 0.2 < got.mean() < 0.8  # both answers occur


# -- any map size ---------------------------------------------------------------------------------
def test_the_check_and_the_patch_read_the_same_on_a_big_map_as_on_the_room(room):
    """The room placed in a 2000 x 2000 map (200 m): the same answers, and only its window read."""
    from dualdiff_ros.navigate_to import PatchSpec, map_features

    big = np.full((2000, 2000), -1, np.int8)  # unknown around it, as off the room's map
    big[700:800, 1300:1400] = room.data
    big_map = OccupancyMap(big, RES, origin_x=-130.0, origin_y=-70.0)
    rng = np.random.default_rng(2)
    targets = BOX[0] + rng.normal(0, 1.5, (400, 2))
    a = check_base_targets(room, targets, *BOX, R, L)
    b = check_base_targets(big_map, targets, *BOX, R, L)
    assert a.any() and (~a).any() and (a == b).all()
    state = np.array([*BOX[0], 0.5, 0.5, 0.0, 0, 1, 1, 0, 1])
    spec = PatchSpec(cells=8, half_extent=2.5)  # inside the room; clearance reads 4 m further
    free_around = big_map.data.copy()
    free_around[free_around < 0] = 0  # clearance counts unknown as an obstacle, the room's edge as nothing
    np.testing.assert_array_equal(map_features(room, state, spec),
                                  map_features(OccupancyMap(free_around, RES, -130.0, -70.0), state, spec))
    window = big_map.window(BOX[0], 5.0)
    assert window.data.base is big and window.width <= 102 and window.values_at([[7.05, 5.0]])[0] == 100
    assert big_map.window([-500.0, -500.0], 1.0).data.tolist() == [[-1]]  # off the map: one unknown cell
