"""Validity of base targets on hand-built scenes, and PyBullet against the exact planar geometry."""
import numpy as np
import pytest

from dualdiff_ros.sim import REACH, ROBOT_RADIUS, Scene, World, check_targets, generate_scene
from dualdiff_ros.sim.dataset import band_candidates
from dualdiff_ros.sim.geometry import planar_validity

BALL = ("ball", (5.0, 6.0, 0.5, 0.5, 0.0))
CHAIR = (14.0, 5.0, 1.0, 1.0, 0.3)


@pytest.fixture(scope="module")
def world():
    with World(Scene.build([BALL, ("bin", (15.0, 16.0, 1.5, 1.5, 0.0))], obstacles=[CHAIR])) as w:
        yield w


def test_adjacent_target_facing_the_object_is_valid(world):
    assert world.check_targets(0, [[5.0, 3.0], [2.5, 6.0]]).all()


@pytest.mark.parametrize("target, why", [
    ((14.0, 5.0), "inside a chair"),
    ((5.0, 11.0), "too far for the gripper"),
    ((5.0, 7.5), "body overlaps the ball"),
    ((1.0, 6.0), "body through the outer wall"),
    ((8.0, 6.0), "body through the interior wall"),
    ((np.nan, 6.0), "not a number"),
])
def test_invalid_targets(world, target, why):
    assert not world.check_targets(0, [target])[0], why


def test_an_obstacle_between_robot_and_object_blocks_the_gripper():
    plate = (5.0, 4.9, 0.6, 0.2, 0.0)  # outside the robot's disc, before the ball
    target = [[5.0, 2.2]]
    assert check_targets(Scene.build([BALL]), 0, target)[0]
    assert not check_targets(Scene.build([BALL], obstacles=[plate]), 0, target)[0]


def test_carried_objects_are_off_the_floor():
    book = ("book", (5.0, 2.9, 0.5, 1.0, 0.0))  # sits where the robot wants to stand
    scene = Scene.build([book, BALL])
    assert not check_targets(scene, 1, [[5.0, 3.0]])[0]
    assert check_targets(scene, 1, [[5.0, 3.0]], absent=[0])[0]


def test_pybullet_agrees_with_planar_geometry():
    scene = generate_scene(5, 8)
    rng = np.random.default_rng(0)
    disagree, total = 0, 0
    with World(scene) as world:
        for step in scene.steps[:2]:
            world.set_step(step)
            rect = scene.object_rects[step.object_index]
            targets = np.concatenate([band_candidates(rect, 600, rng), rng.uniform(0, 20, (200, 2))])
            present = [j for j in range(len(scene.object_kinds))
                       if j not in step.absent and j != step.object_index]
            others = np.concatenate([scene.walls, scene.obstacles, scene.object_rects[present]])
            exact = planar_validity(rect, others, targets, ROBOT_RADIUS, REACH)
            got = world.check_targets(step.object_index, targets)
            disagree += int((exact != got).sum())
            total += len(targets)
            assert exact.any() and (~exact).any()
    assert disagree <= 0.002 * total  # only targets within ~1e-3 of a boundary may differ
