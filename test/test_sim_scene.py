"""Scenes are values of (seed, task index): same inputs, same scene; furniture never overlaps."""
import numpy as np

from dualdiff_ros.sim import OBJECT_SIZES, TASKS, WORLD_SIZE, generate_scene, task_of
from dualdiff_ros.sim.geometry import aabb, rects_overlap


def test_same_seed_same_scene_and_different_tasks_differ():
    a, b = generate_scene(7, 3), generate_scene(7, 3)
    assert a.object_kinds == b.object_kinds
    np.testing.assert_array_equal(a.object_rects, b.object_rects)
    np.testing.assert_array_equal(a.obstacles, b.obstacles)
    assert not np.array_equal(generate_scene(7, 8).object_rects[-1], a.object_rects[-1])
    assert not np.array_equal(generate_scene(8, 3).obstacles[:1], a.obstacles[:1])


def test_task_index_fixes_the_task_and_steps_alternate_pick_and_place():
    for i in range(10):
        scene = generate_scene(0, i)
        pick, place = task_of(i)
        assert (pick, place) == TASKS[i % len(TASKS)]
        assert scene.object_kinds[-1] == place and set(scene.object_kinds[:-1]) == {pick}
        steps = scene.steps
        assert len(steps) == 2 * scene.n_items
        assert [s.gripper_free for s in steps] == [True, False] * scene.n_items
        assert all(s.object_index == scene.n_items for s in steps[1::2])


def test_furniture_inside_the_house_apart_and_sized_by_type():
    for i in range(5):
        scene = generate_scene(1, i)
        assert 18 <= len(scene.obstacles) <= 20
        rects = np.concatenate([scene.object_rects, scene.obstacles])
        lo, hi = aabb(rects)
        assert (lo >= 0).all() and (hi <= WORLD_SIZE).all()
        for j, rect in enumerate(rects):
            assert not rects_overlap(rect, np.delete(rects, j, axis=0)).any()
            assert not rects_overlap(rect, scene.walls).any()
        for kind, rect in zip(scene.object_kinds, scene.object_rects):
            (w0, w1), (h0, h1) = OBJECT_SIZES[kind]
            size = sorted(rect[2:4])
            assert min(w0, h0) - 1e-9 <= size[0] and size[1] <= max(w1, h1) + 1e-9
