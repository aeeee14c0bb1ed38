"""The long jobs as actions over DDS: goal, feedback, cancel and result.

Training (dualdiff/train_specialized), dataset generation and evaluation (simulator_node) run
as real jobs on tiny models and a few simulated tasks; cancels land mid-job.
"""

import shutil
import threading

import pytest
import rclpy
from action_msgs.msg import GoalStatus
from dualdiff_interfaces.action import EvaluateProposals, GenerateDataset, TrainSpecialized
from dualdiff_interfaces.srv import RecordObservation
from nodes_support import TIMEOUT, call, tiny_models
from rclpy.action import ActionClient

from dualdiff_ros.bringup import start_nodes, stop_nodes
from dualdiff_ros.domains import get_domain
from dualdiff_ros.nodes.topics import TRAIN_ACTION

TRAIN = TrainSpecialized.Result


def _wait(future, timeout=TIMEOUT):
    done = threading.Event()
    future.add_done_callback(lambda _f: done.set())
    assert done.wait(timeout), "no answer from the action server"
    return future.result()


def _send(client, goal, feedback: list):
    handle = _wait(client.send_goal_async(goal, feedback_callback=lambda msg: feedback.append(msg.feedback)))
    assert handle.accepted
    return handle


@pytest.fixture
def trainer(ros_context, spin_in_thread, tmp_path_factory, tmp_path):
    """The specialized model node with 8 recorded cabinet observations, and an action client."""
    model_dir = shutil.copytree(tiny_models(tmp_path_factory), tmp_path / "models")
    settings = {"db_path": str(tmp_path / "obs.sqlite"), "retrain_every": 0, "min_observations": 8,
                "fine_tune_epochs": 10}
    executor, nodes = start_nodes(ros_context, "config/bringup.yaml", str(model_dir),
                                  nodes=("specialized_model_node",), overrides={"specialized_model_node": settings})
    probe = rclpy.create_node("action_probe", context=ros_context)
    executor.add_node(probe)
    spin_in_thread(executor)
    record = probe.create_client(RecordObservation, "/specialized_model_node/record_observation")
    assert record.wait_for_service(timeout_sec=TIMEOUT)
    data = get_domain("cabinet").specialized_dataset(8, 1)
    for state, target in zip(data.conditions, data.targets):
        reply = call(record, RecordObservation.Request(domain="cabinet", state=list(state), target=list(target)))
        assert reply.result == RecordObservation.Response.RESULT_OK, reply.message
    client = ActionClient(probe, TrainSpecialized, TRAIN_ACTION)
    assert client.wait_for_server(timeout_sec=TIMEOUT)
    yield nodes[0], client, model_dir
    client.destroy()
    stop_nodes(executor, [*nodes, probe])


def test_training_goal_gives_feedback_and_the_checkpoint(trainer):
    node, client, model_dir = trainer
    feedback = []
    handle = _send(client, TrainSpecialized.Goal(domain="cabinet", method="fine_tune"), feedback)
    answer = _wait(handle.get_result_async(), 120)
    assert answer.status == GoalStatus.STATUS_SUCCEEDED
    result = answer.result
    assert result.result == TRAIN.RESULT_OK, result.message
    assert result.checkpoint_path == str(model_dir / "cabinet" / "specialized.safetensors")
    assert result.version and result.version in result.message
    _wait_until(lambda: feedback and feedback[-1].step == feedback[-1].total_steps, 10)  # may trail the result
    assert feedback and feedback[-1].step == feedback[-1].total_steps > 0
    assert all(f.job_id == result.job_id for f in feedback)
    assert [f.step for f in feedback] == sorted(f.step for f in feedback)


def test_a_canceled_training_saves_nothing(trainer):
    node, client, model_dir = trainer
    node.set_parameters([rclpy.parameter.Parameter("fine_tune_epochs", value=100_000)])
    before = (model_dir / "cabinet" / "specialized.safetensors").read_bytes()
    feedback = []
    handle = _send(client, TrainSpecialized.Goal(domain="cabinet"), feedback)
    assert _wait_until(lambda: feedback), "no feedback before the cancel"
    _wait(handle.cancel_goal_async())
    answer = _wait(handle.get_result_async(), 60)
    assert answer.status == GoalStatus.STATUS_CANCELED
    assert answer.result.result == TRAIN.RESULT_CANCELED and "nothing saved" in answer.result.message
    assert (model_dir / "cabinet" / "specialized.safetensors").read_bytes() == before
    assert node.job is None  # the node is free for the next goal


def test_bad_training_goals_are_aborted_with_the_reason(trainer):
    _, client, _ = trainer
    answer = _wait(_send(client, TrainSpecialized.Goal(domain="attic"), []).get_result_async())
    assert answer.status == GoalStatus.STATUS_ABORTED
    assert answer.result.result == TRAIN.RESULT_INVALID_REQUEST and "attic" in answer.result.message


def _wait_until(predicate, timeout=TIMEOUT):
    from conftest import wait_for

    return wait_for(predicate, timeout)


@pytest.fixture
def simulator(ros_context, spin_in_thread, tmp_path):
    executor, nodes = start_nodes(ros_context, "config/bringup.yaml", str(tmp_path / "models"),
                                  nodes=("simulator_node",), overrides={"simulator_node": {"data_dir": str(tmp_path)}})
    probe = rclpy.create_node("simulator_action_probe", context=ros_context)
    executor.add_node(probe)
    spin_in_thread(executor)
    clients = (ActionClient(probe, EvaluateProposals, "/simulator_node/evaluate_proposals"),
               ActionClient(probe, GenerateDataset, "/simulator_node/generate_dataset"))
    assert all(c.wait_for_server(timeout_sec=TIMEOUT) for c in clients)
    yield clients
    for c in clients:
        c.destroy()
    stop_nodes(executor, [*nodes, probe])


def test_evaluation_action_reports_each_state(simulator):
    evaluate, _ = simulator
    feedback = []
    handle = _send(evaluate, EvaluateProposals.Goal(mode="ring", num_states=3, samples_per_state=4, seed=5), feedback)
    answer = _wait(handle.get_result_async(), 120)
    assert answer.status == GoalStatus.STATUS_SUCCEEDED, answer.result.message
    assert 0.0 <= answer.result.validity_rate <= 1.0 and '"n_states": 3' in answer.result.report_json
    # Feedback is a topic and the result a service: the last feedback can arrive after the result, and on
    # a loaded machine a feedback message may not arrive at all (seen in full-suite runs: (1, 3), (2, 3)
    # only). What arrives is in order and of this goal; that every state is reported is tested without
    # the topic (test_sim_evaluate.py::test_progress_reports_each_state_once_in_order).
    checked = lambda: [(f.states_done, f.states_total) for f in feedback if f.stage == "checking"]  # noqa: E731
    _wait_until(lambda: len(checked()) >= 3, 10)
    got = checked()
    assert got and all(total == 3 for _, total in got), got
    assert [done for done, _ in got] == sorted(set(done for done, _ in got)) and set(got) <= {(1, 3), (2, 3), (3, 3)}


def test_dataset_generation_reports_progress_and_cancels(simulator, tmp_path):
    _, generate = simulator
    feedback = []
    handle = _send(generate, GenerateDataset.Goal(split="general", num_tasks=10, seed=0), feedback)
    answer = _wait(handle.get_result_async(), 120)
    assert answer.status == GoalStatus.STATUS_SUCCEEDED, answer.result.message
    _wait_until(lambda: len(feedback) >= 2, 10)  # the last feedback can arrive after the result
    assert [(f.tasks_done, f.tasks_total) for f in feedback] == [(5, 10), (10, 10)]
    assert answer.result.num_points == feedback[-1].points > 0
    assert answer.result.path.endswith("navigate_general_seed0_tasks10.npz")

    feedback = []
    handle = _send(generate, GenerateDataset.Goal(split="general", num_tasks=400, seed=1), feedback)
    assert _wait_until(lambda: feedback, 60), "no feedback before the cancel"
    _wait(handle.cancel_goal_async())
    answer = _wait(handle.get_result_async(), 60)
    assert answer.status == GoalStatus.STATUS_CANCELED
    assert answer.result.result == GenerateDataset.Result.RESULT_CANCELED
    assert not (tmp_path / "navigate_general_seed1_tasks400.npz").exists()
