"""Navigate-to with a map, below ROS: the map in the condition, the map check, poses, the service policy."""
import math

import numpy as np
import pytest
from nodes_support import tiny_navigate_models

from dualdiff_ros import navigate_to, serving
from dualdiff_ros.diffusion.checkpoint import load_checkpoint
from dualdiff_ros.maps import OccupancyMap
from dualdiff_ros.navigate_to import MapCheck, PatchSpec, answer_with_map, map_features
from dualdiff_ros.sim import scene as sim_scene
from dualdiff_ros.sim.perception import step_map

# An object at (10, 10), 0.5 m square, robot far away: the navigate-to state's 10 numbers.
STATE = np.array([10.0, 10.0, 0.5, 0.5, 0.0, 0.0, 4.0, 4.0, 0.0, 1.0])


def _grid(blocked=()):
    """A free 20 m square map at 0.1 m with the object drawn, plus blocked [x0, x1, y0, y1] boxes."""
    data = np.zeros((200, 200), dtype=np.int8)
    data[97:103, 97:103] = 100  # the object's own cells
    for x0, x1, y0, y1 in blocked:
        data[int(y0 * 10):int(y1 * 10), int(x0 * 10):int(x1 * 10)] = 100
    return OccupancyMap(data, 0.1)


def test_the_simulators_robot_is_the_default_robot():
    assert (navigate_to.ROBOT_RADIUS, navigate_to.ROBOT_REACH) == (sim_scene.ROBOT_RADIUS, sim_scene.REACH)


def test_map_features_flag_the_map_and_show_an_obstacle_where_it_stands():
    spec = PatchSpec(cells=8, half_extent=8.0, features="occupancy")
    without = map_features(None, STATE, spec)
    assert without.shape == (1, 65) and not without.any()
    with_wall = map_features(_grid(blocked=[(15, 17, 0, 20)]), STATE, spec)[0]
    assert with_wall[0] == 1.0
    patch = with_wall[1:].reshape(8, 8)  # [row = y, column = x], map axes ("world" frame)
    assert patch[:, -2].min() == 1.0 and patch[:, :3].max() < 1.0  # the wall on +x (x in 15..17), not on -x


def test_an_object_frame_patch_turns_with_the_object():
    spec = PatchSpec(cells=8, half_extent=8.0, frame="object", features="occupancy")
    turned = STATE.copy()
    turned[4] = math.pi / 2  # the object's +x now points along the map's +y
    patch = map_features(_grid(blocked=[(0, 20, 15, 17)]), turned, spec)[0, 1:].reshape(8, 8)
    assert patch[:, -2].min() == 1.0  # the wall at y 15..17 is on the object's +x side


def test_answer_with_map_keeps_only_valid_targets_best_first():
    grid, check = _grid(blocked=[(12.5, 20, 0, 20)]), MapCheck()  # everything east of x = 12.5 is blocked
    rng = np.random.default_rng(0)

    def draw(n):
        angles = rng.uniform(0, 2 * np.pi, n)
        targets = STATE[:2] + 3.0 * np.stack([np.cos(angles), np.sin(angles)], 1)
        return targets, rng.normal(size=n)

    answer = answer_with_map(draw, grid, STATE, 8, check, oversample=3.0)
    assert answer.drawn == 24 and 0 < answer.valid < 24 and len(answer.targets) == min(8, answer.valid)
    assert check.valid(grid, STATE, answer.targets).all()
    assert (answer.targets[:, 0] < 12.5 - 2.0 + 1e-9).all()  # the disc stays clear of the blocked half
    assert (np.diff(answer.scores) <= 0).all()


def test_poses_face_the_object():
    targets = np.array([[13.0, 10.0], [10.0, 7.0]])
    np.testing.assert_allclose(navigate_to.pose_yaws(STATE, targets), [math.pi, math.pi / 2])


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    root = tiny_navigate_models(tmp_path_factory)
    svc = serving.PlacementService(root)
    for role, task, name in (("general", "", "general"), ("specialized", "", "specialized")):
        path = root / "navigate_to" / f"{name}.safetensors"
        svc.slots.put((role, "navigate_to", task), load_checkpoint(path))
    return svc


@pytest.fixture(scope="module")
def simulated():
    """A real simulated state with the map the simulator node would publish for it."""
    scene = sim_scene.generate_scene(3, 0)
    step = scene.steps[0]
    rect = scene.object_rects[step.object_index]
    state = np.array([*rect[:2], *rect[2:4], rect[4], 0.0, 3.0, 3.0, 0.0, 1.0])
    return state, step_map(scene, 0)


def test_the_navigate_models_see_the_map(service):
    general, _ = service.slots.pair("navigate_to", "")
    spec = navigate_to.spec_of(general)
    assert spec is not None and general.condition_dim == 10 + spec.feature_dim


def test_with_a_map_every_answer_passes_the_map_check(service, simulated):
    state, grid = simulated
    # A smaller robot than the simulator's: the tiny test models are poor, and this checks the policy.
    service.configure({**serving.defaults(), "robot.radius": 1.0})
    try:
        answer = service.answer("navigate_to", "", "joint", state, 16, seed=3, grid=grid)
    finally:
        service.configure(serving.defaults())
    assert 1 <= len(answer.proposals) <= 16
    searched = "ring search" in answer.message  # the tiny models may find too few: 4 x 16 ring candidates more
    assert answer.candidates_drawn == 32 + 64 * searched and answer.candidates_valid >= len(answer.proposals)
    assert MapCheck(robot_radius=1.0).valid(grid, state, answer.proposals).all()
    np.testing.assert_allclose(answer.yaws, navigate_to.pose_yaws(state, answer.proposals))
    assert (np.diff(answer.scores) <= 0).all()


def test_without_a_map_the_same_models_answer(service, simulated):
    state, _ = simulated
    answer = service.answer("navigate_to", "", "joint", state, 16, seed=3)
    assert len(answer.proposals) == 16 and answer.candidates_drawn == 16 and np.isfinite(answer.proposals).all()


def test_a_map_where_nothing_fits_is_no_valid_proposal(service, simulated):
    state, grid = simulated
    full = OccupancyMap(np.full_like(grid.data, 100), grid.resolution, grid.origin_x, grid.origin_y)
    with pytest.raises(serving.Refused, match="none of the 96 candidates passed the map check") as refused:
        service.answer("navigate_to", "", "joint", state, 16, seed=3, grid=full)
    assert refused.value.result == serving.RESULT_NO_VALID_PROPOSAL


def test_a_map_is_checked_with_the_robot_and_thresholds_of_the_settings(service, simulated):
    state, grid = simulated
    service.configure({**serving.defaults(), "robot.radius": 9.0})  # a robot as wide as the house fits nowhere
    try:
        with pytest.raises(serving.Refused, match="robot.radius 9 m"):
            service.answer("navigate_to", "", "joint", state, 8, seed=1, grid=grid)
    finally:
        service.configure(serving.defaults())


def test_a_ring_search_fills_in_when_the_model_finds_too_few():
    grid, check = _grid(), MapCheck()

    def draw(n):  # a model that proposes only blocked places: on the object itself
        return np.repeat(STATE[None, :2], n, axis=0), np.zeros(n)

    nothing = answer_with_map(draw, grid, STATE, 4, check, oversample=2.0, ring_search=0)
    assert nothing.valid == 0 and len(nothing.targets) == 0
    filled = answer_with_map(draw, grid, STATE, 4, check, oversample=2.0, ring_search=4, seed=1)
    assert filled.searched == 16 and filled.drawn == 8 + 16 and len(filled.targets) == 4
    assert check.valid(grid, STATE, filled.targets).all() and (filled.scores < 0).all()


def test_clearance_features_read_where_the_robot_fits():
    spec = PatchSpec(cells=8, half_extent=8.0, features="clearance")
    grid = _grid(blocked=[(15, 17, 0, 20)])
    patch = map_features(grid, STATE, spec)[0, 1:].reshape(8, 8)
    cleared = navigate_to.clearance(grid)
    assert cleared[100, 160] == 0.0 and cleared[100, 130] == pytest.approx(2.0, abs=0.11)  # 2 m west of the wall
    assert patch[:, -2].max() == 0.0  # the wall's cells: no room at all
    assert 0.0 < patch[4, 2] < 1.0 and patch[4, 0] > 0.9  # 2-4 m from the object: some room; far from all: plenty
    assert PatchSpec.from_dict(spec.to_dict()) == spec


def test_answers_come_best_score_first_without_a_map_too(service, simulated):
    state, _ = simulated
    answer = service.answer("navigate_to", "", "joint", state, 12, seed=5)
    assert len(answer.proposals) == 12 and (np.diff(answer.scores) <= 0).all()


@pytest.mark.parametrize("with_map", [False, True])
def test_distinct_proposals_keep_their_separation_and_say_when_fewer_come_back(service, simulated, with_map):
    state, grid = simulated
    service.configure({**serving.defaults(), "robot.radius": 1.0})
    try:
        answer = service.answer("navigate_to", "", "joint", state, 8, seed=4, grid=grid if with_map else None,
                                min_separation=1.5)
    finally:
        service.configure(serving.defaults())
    p = answer.proposals
    gaps = np.linalg.norm(p[:, None] - p[None], axis=-1)[np.triu_indices(len(p), 1)]
    assert len(p) >= 1 and (gaps >= 1.5).all() and (np.diff(answer.scores) <= 0).all()
    assert (len(p) == 8) != ("at least 1.5 apart" in answer.message)
    wide = service.answer("navigate_to", "", "joint", state, 8, seed=4, min_separation=500.0)
    assert len(wide.proposals) == 1 and "only 1 of 8" in wide.message


def test_the_greedy_distinct_rule_keeps_the_best_of_each_neighbourhood():
    targets = np.array([[0.0, 0.0], [0.1, 0.0], [2.0, 0.0], [2.05, 0.0], [5.0, 0.0]])
    kept, scores = serving.distinct(targets, np.arange(5.0)[::-1], 3, 1.0)
    np.testing.assert_array_equal(kept, targets[[0, 2, 4]])
    np.testing.assert_array_equal(scores, [4.0, 2.0, 0.0])


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_a_bad_min_separation_is_refused(service, simulated, bad):
    state, _ = simulated
    with pytest.raises(serving.Refused, match="min_separation"):
        service.answer("navigate_to", "", "joint", state, 4, min_separation=bad)


def test_an_older_map_model_gets_its_guidance_block_on_load(tmp_path_factory):
    root = tiny_navigate_models(tmp_path_factory)
    model = load_checkpoint(root / "navigate_to" / "general.safetensors")
    block = model.metadata.pop("droppable_condition")
    assert block == [10, 10 + navigate_to.spec_of(model).feature_dim]
    navigate_to.mark_map_guidance(model)
    assert model.metadata["droppable_condition"] == block
    loaded = serving.load_for_slot("general", "navigate_to", "", root / "navigate_to" / "general.safetensors", root)
    assert loaded.metadata["droppable_condition"] == block


# -- nav2 costmaps, footprints and map size through the service policy ----------------------------
def test_a_nav2_costmap_is_detected_and_answered(service, simulated):
    """The simulator's map as nav2 publishes it (inflation = robot radius + 0.55): valid poses, and the note."""
    from dualdiff_ros.maps import nav2_costmap

    state, grid = simulated
    costmap = nav2_costmap(grid, inscribed_radius=1.0)
    costmap.semantics = "occupancy"  # what the message gives: the service has to tell
    service.configure({**serving.defaults(), "robot.radius": 1.0})
    try:
        answer = service.answer("navigate_to", "", "joint", state, 16, seed=3, grid=costmap)
        plain = service.answer("navigate_to", "", "joint", state, 16, seed=3, grid=grid)
        service.configure({**serving.defaults(), "robot.radius": 1.0, "map.semantics": "occupancy"})
        with pytest.raises(serving.Refused) as as_occupancy:  # the old reading: the robot counted twice
            service.answer("navigate_to", "", "joint", state, 16, seed=3, grid=costmap)
    finally:
        service.configure(serving.defaults())
    assert "map read as a nav2 costmap" in answer.message and "map read as an occupancy grid" in plain.message
    assert len(answer.proposals) >= 8
    assert MapCheck(robot_radius=1.0).valid(grid, state, answer.proposals).all()  # clear on the true occupancy
    assert as_occupancy.value.result == serving.RESULT_NO_VALID_PROPOSAL
    assert "occupancy grid: map.occupied_threshold 50" in str(as_occupancy.value)


def test_the_map_patch_of_a_costmap_is_the_occupancy_maps(simulated):
    from dualdiff_ros.maps import nav2_costmap

    state, grid = simulated
    costmap = nav2_costmap(grid, inscribed_radius=2.0)
    for features in ("clearance", "occupancy"):
        spec = PatchSpec(features=features)
        np.testing.assert_array_equal(map_features(costmap, state, spec), map_features(grid, state, spec))
    assert not np.array_equal(map_features(costmap.with_semantics("occupancy"), state, PatchSpec()),
                              map_features(grid, state, PatchSpec()))


def test_map_settings_are_checked_with_the_value_and_the_fix(service):
    for key, value, words in (("robot.footprint", "[[1, 2], [3, 4]]", "at least 3"),
                              ("robot.footprint", "a box", "nav2's format"),
                              ("map.semantics", "costs", "map.semantics 'costs': use one of")):
        with pytest.raises(ValueError, match=words):
            service.configure({**serving.defaults(), key: value})
    service.configure(serving.defaults())
    names = {s.name: s for s in serving.SETTINGS}
    assert names["map.semantics"].choices == ("auto", "occupancy", "costmap")
    assert names["map.semantics"].default == "auto"
    assert names["map.max_cost"].int_range == (1, 100) and names["map.max_cost"].default == 99
    assert all(names[n].description for n in ("map.max_cells", "robot.footprint"))


def test_a_polygon_footprint_from_the_settings_is_checked(service, simulated):
    state, grid = simulated
    square = "[[0.7, 0.7], [0.7, -0.7], [-0.7, -0.7], [-0.7, 0.7]]"
    service.configure({**serving.defaults(), "robot.footprint": square})
    try:
        answer = service.answer("navigate_to", "", "joint", state, 8, seed=2, grid=grid)
    finally:
        service.configure(serving.defaults())
    polygon = ((0.7, 0.7), (0.7, -0.7), (-0.7, -0.7), (-0.7, 0.7))
    assert MapCheck(footprint=polygon).valid(grid, state, answer.proposals).all()
    assert not MapCheck(robot_radius=2.0).valid(grid, state, answer.proposals).all()  # the disc was not used


def test_a_map_over_max_cells_is_refused_before_it_is_read(service, simulated):
    state, grid = simulated
    service.configure({**serving.defaults(), "map.max_cells": grid.width * grid.height - 1})
    try:
        with pytest.raises(serving.Refused, match=r"more than map.max_cells = \d+: send the part") as refused:
            service.answer("navigate_to", "", "joint", state, 4, seed=1, grid=grid)
    finally:
        service.configure(serving.defaults())
    assert refused.value.result == serving.RESULT_INVALID_REQUEST
    assert len(service.answer("navigate_to", "", "joint", state, 4, seed=1, grid=grid).proposals) >= 1


@pytest.mark.parametrize("resolution", [0.1, 0.05])  # a window's distance transform, a k-d tree of a large one
@pytest.mark.parametrize("frame", ["world", "object"])
def test_the_windowed_clearance_is_the_whole_maps(resolution, frame):
    from dualdiff_ros.sim.perception import step_map

    scene = sim_scene.generate_scene(0, 1)
    grid = step_map(scene, 0, resolution)
    rect = scene.object_rects[scene.steps[0].object_index]
    state = np.array([*rect[:2], *rect[2:4], rect[4], 0.0, 3.0, 3.0, 0.0, 1.0])
    spec = PatchSpec(frame=frame)
    windowed = navigate_to.patch(grid, state, spec)
    np.testing.assert_array_equal(windowed, navigate_to.patch(grid, state, spec, navigate_to.clearance(grid)))
    assert 0.0 < windowed.mean() < 1.0
    size = int(round(60 / resolution))
    empty = OccupancyMap(np.zeros((size, size), np.int8), resolution, -20.0, -20.0)  # 60 m, nothing on it
    assert (navigate_to.patch(empty, state, spec) == 1.0).all()
