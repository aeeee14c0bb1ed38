"""The evaluation harness: ring baseline beats a bad proposer, recorded targets score perfectly."""
import numpy as np
import pytest

from dualdiff_ros.sim import (
    draw_scene,
    evaluate_proposer,
    held_out_states,
    ring_proposer,
    specialized_datasets,
)


@pytest.fixture(scope="module")
def held_out():
    return held_out_states(specialized_datasets(0, 6, seed=2)[1])


def anywhere_in_the_house(states, k, rng):
    return rng.uniform(0.0, 20.0, size=(len(states), k, 2))


def test_ring_beats_a_bad_proposer(held_out):
    ring = evaluate_proposer(ring_proposer, held_out, samples_per_state=16)
    bad = evaluate_proposer(anywhere_in_the_house, held_out, samples_per_state=16)
    assert ring["n_states"] == len(held_out) > 0
    assert bad["validity"] < ring["validity"]
    assert ring["samples_to_first_valid"] < bad["samples_to_first_valid"] <= 17
    assert 0 < ring["coverage"] <= 1 and ring["ms_per_query"] >= 0


def test_replaying_recorded_targets_is_all_valid(held_out):
    lookup = {s.tobytes(): r for s, r in zip(held_out.states, held_out.reference)}

    def replay(states, k, rng):
        return np.stack([lookup[s.tobytes()][np.arange(k) % len(lookup[s.tobytes()])] for s in states])

    report = evaluate_proposer(replay, held_out, samples_per_state=4)
    assert report["validity"] == 1.0 and report["samples_to_first_valid"] == 1.0


def test_wrong_shape_is_refused(held_out):
    with pytest.raises(ValueError):
        evaluate_proposer(lambda s, k, rng: np.zeros((len(s), 2)), held_out)


def test_scene_picture_is_written(tmp_path, held_out):
    from dualdiff_ros.sim import generate_scene

    scene = generate_scene(int(held_out.seed[0]), int(held_out.task_index[0]))
    step = scene.steps[int(held_out.step[0])]
    path = tmp_path / "scene.png"
    draw_scene(scene, path, step.object_index, held_out.reference[0], robot=held_out.states[0, 6:9],
               absent=step.absent)
    assert path.stat().st_size > 1000


def test_progress_reports_each_state_once_in_order(held_out):
    """What the simulator node's evaluation action sends as feedback, without the topic in between."""
    seen = []
    evaluate_proposer(ring_proposer, held_out, samples_per_state=4, on_progress=lambda *a: seen.append(a))
    n = len(held_out)
    assert seen[0] == ("proposing", 0, n)
    assert seen[1:] == [("checking", i, n) for i in range(1, n + 1)]
