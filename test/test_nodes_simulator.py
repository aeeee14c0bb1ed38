"""simulator_node: dataset generation, evaluation of every mode (tiny navigate_to models), the scene topic."""

import json
import math

import numpy as np
import pytest
import rclpy
from dualdiff_interfaces.srv import EvaluateProposals, GenerateDataset
from nodes_support import TIMEOUT, Inbox, call, tiny_recipe
from rclpy.parameter import Parameter
from visualization_msgs.msg import Marker, MarkerArray

from dualdiff_ros.bringup import start_nodes, stop_nodes
from dualdiff_ros.nodes.topics import SCENE_MARKERS_TOPIC, latched_qos
from dualdiff_ros.sim import NavigateData

EVALUATE, GENERATE = EvaluateProposals.Response, GenerateDataset.Response


@pytest.fixture(scope="module")
def navigate_models(tmp_path_factory):
    """Tiny navigate_to general and specialized models trained on a few simulated tasks."""
    import torch

    from dualdiff_ros.model_store import ModelStore, save, train_general, train_specialized
    from dualdiff_ros.sim import SPECIALIZED_TYPES, ball_task_indices, general_dataset, generate

    torch.set_num_threads(1)
    store, recipe = ModelStore(tmp_path_factory.mktemp("navigate_models")), tiny_recipe()
    general_data = general_dataset(20, 0, progress=False)
    general = train_general("navigate_to", general_data.states, general_data.targets, recipe, progress=False)
    save(general, store.general_path("navigate_to"))
    ball = generate(1, ball_task_indices(0, 4), SPECIALIZED_TYPES)
    save(train_specialized(general, ball.states, ball.targets, recipe, progress=False),
         store.specialized_path("navigate_to"))
    return store.root


@pytest.fixture
def simulator(ros_context, spin_in_thread, navigate_models, tmp_path):
    executor, nodes = start_nodes(ros_context, "config/bringup.yaml", str(navigate_models), nodes=("simulator_node",),
                                  overrides={"simulator_node": {"data_dir": str(tmp_path / "data")}})
    probe = rclpy.create_node("simulator_probe", context=ros_context)
    executor.add_node(probe)
    scene = Inbox(probe, MarkerArray, SCENE_MARKERS_TOPIC, latched_qos(1))
    spin_in_thread(executor)
    evaluate = probe.create_client(EvaluateProposals, "/simulator_node/evaluate_proposals")
    generate = probe.create_client(GenerateDataset, "/simulator_node/generate_dataset")
    assert evaluate.wait_for_service(timeout_sec=TIMEOUT) and generate.wait_for_service(timeout_sec=TIMEOUT)
    yield nodes[0], evaluate, generate, scene
    stop_nodes(executor, [*nodes, probe])


@pytest.mark.parametrize("mode", ["ring", "joint", "general", "specialized"])
def test_evaluation_of_each_mode(simulator, mode):
    _, evaluate, _, _ = simulator
    reply = call(evaluate, EvaluateProposals.Request(mode=mode, num_states=3, samples_per_state=4, seed=5), 120)
    assert reply.result == EVALUATE.RESULT_OK, reply.message
    assert 0.0 <= reply.validity_rate <= 1.0
    assert 1.0 <= reply.mean_samples_to_first_valid <= 5.0  # failures are charged samples + 1
    assert reply.ms_per_query > 0
    report = json.loads(reply.report_json)
    assert report["mode"] == mode and report["n_states"] == 3 and report["samples_per_state"] == 4
    assert math.isnan(reply.spread) or reply.spread >= 0


def test_bad_evaluations_are_named(simulator, tmp_path):
    node, evaluate, _, _ = simulator
    cases = [(dict(mode="teleport"), EVALUATE.RESULT_INVALID_REQUEST, "unknown mode 'teleport'"),
             (dict(num_states=0), EVALUATE.RESULT_INVALID_REQUEST, "num_states 0"),
             (dict(samples_per_state=0), EVALUATE.RESULT_INVALID_REQUEST, "samples_per_state 0")]
    for fields, code, words in cases:
        request = EvaluateProposals.Request(**{"mode": "ring", "num_states": 2, "samples_per_state": 2, **fields})
        reply = call(evaluate, request)
        assert reply.result == code and words in reply.message, reply.message
    node.set_parameters([Parameter("model_dir", value=str(tmp_path / "no_models"))])
    reply = call(evaluate, EvaluateProposals.Request(mode="joint", num_states=2, samples_per_state=2))
    assert reply.result == EVALUATE.RESULT_MODEL_UNAVAILABLE
    assert "navigate_to/general.safetensors" in reply.message and "dualdiff train" in reply.message


def test_dataset_generation(simulator, tmp_path):
    _, _, generate, _ = simulator
    reply = call(generate, GenerateDataset.Request(split="specialized", num_tasks=2, seed=3), 120)
    assert reply.result == GENERATE.RESULT_OK, reply.message
    assert reply.path.startswith(str(tmp_path / "data")) and reply.num_points > 0
    data = NavigateData.load(reply.path)
    assert len(data) == reply.num_points and data.states.shape[1] == 10
    assert np.all(data.type_names == "ball")
    out = tmp_path / "mine.npz"
    reply = call(generate, GenerateDataset.Request(split="general", num_tasks=2, seed=3, output_path=str(out)), 120)
    assert reply.result == GENERATE.RESULT_OK and reply.path == str(out) and out.is_file()
    reply = call(generate, GenerateDataset.Request(split="kitchen", num_tasks=2))
    assert reply.result == GENERATE.RESULT_INVALID_REQUEST and "unknown split 'kitchen'" in reply.message
    reply = call(generate, GenerateDataset.Request(split="general", num_tasks=0))
    assert reply.result == GENERATE.RESULT_INVALID_REQUEST and "num_tasks 0" in reply.message


def test_scene_markers(simulator, wait_for):
    node, _, _, scene = simulator
    assert wait_for(lambda: scene.snapshot(), TIMEOUT), "no scene on the latched topic"
    first = scene.snapshot()[-1]
    assert first.markers[0].action == Marker.DELETEALL
    namespaces = {m.ns for m in first.markers[1:]}
    assert namespaces == {"walls", "clutter", "objects"}
    assert all(m.type == Marker.CUBE and m.scale.x > 0 for m in first.markers[1:])
    assert not node.set_parameters([Parameter("sampler.method", value="euler")])[0].successful
    node.set_parameters([Parameter("scene_seed", value=9)])
    assert wait_for(lambda: len(scene.snapshot()) >= 2, TIMEOUT), "no new scene after scene_seed changed"
    second = scene.snapshot()[-1]
    assert [m.pose.position.x for m in second.markers] != [m.pose.position.x for m in first.markers]
