"""Dataset sizes, determinism, the task-index split, and the .npz + .json round trip."""
import json

import numpy as np
import pytest

from dualdiff_ros.sim import (
    GENERAL_TYPES,
    STATE_DIM,
    NavigateData,
    World,
    general_dataset,
    generate_scene,
    specialized_datasets,
)
from dualdiff_ros.sim.dataset import generate


@pytest.fixture(scope="module")
def general():
    return general_dataset(6, seed=0, progress=False)


@pytest.fixture(scope="module")
def specialized():
    return specialized_datasets(2, 4, seed=1)


def test_general_holds_the_nine_types_and_no_ball(general):
    assert len(general) > 50 and general.states.shape == (len(general), STATE_DIM)
    assert "ball" not in general.counts_per_type()
    assert set(general.counts_per_type()) <= set(GENERAL_TYPES)
    assert general.meta["n_points"] == len(general) == sum(general.meta["counts_per_type"].values())
    assert set(np.unique(general.task_index)) <= set(range(6))


def test_same_seed_same_dataset_whatever_the_chunking(general):
    again = generate(0, range(6), GENERAL_TYPES, chunk=4)
    for name in ("states", "targets", "task_index", "step"):
        np.testing.assert_array_equal(getattr(general, name), getattr(again, name))


def test_specialized_split_by_disjoint_ball_task_indices(specialized):
    train, test = specialized
    assert set(train.counts_per_type()) == {"ball"} and set(test.counts_per_type()) == {"ball"}
    assert set(train.task_index) and set(test.task_index)
    assert not set(train.task_index) & set(test.task_index)
    assert all(i % 5 == 0 for i in np.concatenate([train.task_index, test.task_index]))
    assert max(train.task_index) < min(test.task_index)


def test_every_recorded_target_is_valid_and_the_state_matches_its_scene(specialized):
    data = specialized[0]
    for task in np.unique(data.task_index):
        scene = generate_scene(int(data.seed[0]), int(task))
        with World(scene) as world:
            for step in np.unique(data.step[data.task_index == task]):
                rows = (data.task_index == task) & (data.step == step)
                s = scene.steps[step]
                world.set_step(s)
                assert world.check_targets(s.object_index, data.targets[rows]).all()
                rect = scene.object_rects[s.object_index]
                np.testing.assert_allclose(data.states[rows, :5], np.tile(rect, (rows.sum(), 1)))
                assert (data.states[rows, 9] == float(s.gripper_free)).all()


def test_save_and_load_round_trip(tmp_path, specialized):
    train = specialized[0]
    path = train.save(tmp_path / "ball_train")
    back = NavigateData.load(path)
    assert path.suffix == ".npz" and path.with_suffix(".json").exists()
    np.testing.assert_allclose(back.targets, train.targets, atol=1e-5)
    np.testing.assert_array_equal(back.task_index, train.task_index)
    assert back.meta == json.loads(path.with_suffix(".json").read_text()) == train.meta
    assert back.meta["seed"] == 1 and back.meta["version"] >= 1
