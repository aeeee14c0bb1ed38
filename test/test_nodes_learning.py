"""specialized_model_node: durable observations, background training, progress and the new model's announcement."""

import shutil
import threading
import time

import numpy as np
import pytest
import rclpy
from dualdiff_interfaces.msg import ModelInfo, Observation, TrainingProgress
from dualdiff_interfaces.srv import RecordObservation, TrainSpecialized
from nodes_support import TIMEOUT, Inbox, call, tiny_models, tiny_recipe
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter

from dualdiff_ros.bringup import start_nodes, stop_nodes
from dualdiff_ros.diffusion.checkpoint import load_checkpoint, read_header
from dualdiff_ros.domains import get_domain
from dualdiff_ros.learning import trainer
from dualdiff_ros.model_store import ModelStore, save, train_general
from dualdiff_ros.nodes.topics import (
    MODEL_INFO_TOPIC,
    OBSERVATIONS_TOPIC,
    TRAIN_SERVICE,
    TRAINING_PROGRESS_TOPIC,
    latched_qos,
)
from dualdiff_ros.recipes import recipe

RECORD_SERVICE = "/specialized_model_node/record_observation"
OK, INVALID = RecordObservation.Response.RESULT_OK, RecordObservation.Response.RESULT_INVALID_REQUEST
TRAIN = TrainSpecialized.Response


@pytest.fixture
def learner(ros_context, spin_in_thread, tmp_path_factory, tmp_path):
    """The specialized model node on a copy of the tiny models, with a probe node and clients."""
    model_dir = shutil.copytree(tiny_models(tmp_path_factory), tmp_path / "models")
    started = []
    probe = rclpy.create_node("learning_probe", context=ros_context)

    def start(**params):
        settings = {"db_path": str(tmp_path / "obs.sqlite"), "retrain_every": 0, "min_observations": 8,
                    "fine_tune_epochs": 20, **params}
        executor, nodes = start_nodes(ros_context, "config/bringup.yaml", str(model_dir),
                                      nodes=("specialized_model_node",),
                                      overrides={"specialized_model_node": settings})
        if not started:
            executor.add_node(probe)
        spin_in_thread(executor)
        started.append((executor, nodes))
        return nodes[0]

    class Learner:
        pass

    env = Learner()
    env.start, env.probe, env.model_dir = start, probe, model_dir
    env.progress = Inbox(probe, TrainingProgress, TRAINING_PROGRESS_TOPIC, 100)
    env.announced = Inbox(probe, ModelInfo, MODEL_INFO_TOPIC, latched_qos())
    env.record = probe.create_client(RecordObservation, RECORD_SERVICE)
    env.train = probe.create_client(TrainSpecialized, TRAIN_SERVICE)
    yield env
    for executor, nodes in reversed(started):
        stop_nodes(executor, nodes)
    probe.destroy_node()


def cabinet_observations(n, seed=1):
    data = get_domain("cabinet").specialized_dataset(n, seed)
    return [(list(c), list(t)) for c, t in zip(data.conditions, data.targets)]


def record_all(env, observations, domain="cabinet", task=""):
    replies = [call(env.record, RecordObservation.Request(domain=domain, task=task, state=s, target=t))
               for s, t in observations]
    assert all(r.result == OK for r in replies), [r.message for r in replies]
    return replies


BAD_OBSERVATIONS = [
    (dict(domain="attic"), "unknown domain 'attic'"),
    (dict(state=[1.0, 2.0]), "state has 2 numbers"),
    (dict(target=[1.0, float("nan"), 0.0]), "target[1] is nan"),
    (dict(state=[float("-inf"), 0.0, 0.0]), "state[0] is -inf"),
    (dict(task="a b"), "task 'a b'"),
]


def test_observations_are_validated_and_stored(learner, wait_for):
    node = learner.start()
    assert learner.record.wait_for_service(timeout_sec=TIMEOUT)
    good = dict(domain="cabinet", state=[0.0, 0.0, 0.0], target=[-0.5, -0.5, 0.2])
    for fields, words in BAD_OBSERVATIONS:
        reply = call(learner.record, RecordObservation.Request(**{**good, **fields}))
        assert reply.result == INVALID and words in reply.message, (fields, reply.message)
    replies = record_all(learner, cabinet_observations(3))
    assert [r.observations_total for r in replies] == [1, 2, 3]
    assert replies[0].observation_id < replies[1].observation_id < replies[2].observation_id
    assert set(r.observation_id for r in replies) <= set(node.store.ids("cabinet", ""))

    publisher = learner.probe.create_publisher(Observation, OBSERVATIONS_TOPIC, 10)
    assert wait_for(lambda: publisher.get_subscription_count() > 0, TIMEOUT)
    publisher.publish(Observation(domain="cabinet", state=[1.0, 1.0, 1.0], target=[0.5, 0.5, 1.2]))
    publisher.publish(Observation(domain="cabinet", state=[1.0, 1.0], target=[0.5, 0.5, 1.2]))  # dropped
    assert wait_for(lambda: node.store.count("cabinet") == 4, TIMEOUT)
    time.sleep(0.2)
    assert node.store.count("cabinet") == 4


def test_training_runs_in_the_background_and_announces_the_model(learner, wait_for, monkeypatch):
    gate = threading.Event()
    real = trainer.train_specialized

    def gated(*args, **kwargs):  # hold the job until the test has seen it running
        assert gate.wait(TIMEOUT)
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_specialized", gated)
    node = learner.start()
    assert learner.record.wait_for_service(timeout_sec=TIMEOUT)
    assert learner.train.wait_for_service(timeout_sec=TIMEOUT)
    reply = call(learner.train, TrainSpecialized.Request(domain="cabinet"))
    assert reply.result == TRAIN.RESULT_INVALID_REQUEST and "record at least 8" in reply.message
    record_all(learner, cabinet_observations(12))
    reply = call(learner.train, TrainSpecialized.Request(domain="cabinet", method="lasso"))
    assert reply.result == TRAIN.RESULT_INVALID_REQUEST and "unknown method 'lasso'" in reply.message

    reply = call(learner.train, TrainSpecialized.Request(domain="cabinet"))  # returns while the job waits
    assert reply.result == TRAIN.RESULT_OK and reply.job_id, reply.message
    job = reply.job_id
    busy = call(learner.train, TrainSpecialized.Request(domain="cabinet"))
    assert busy.result == TRAIN.RESULT_BUSY and job in busy.message
    gate.set()

    def final():
        return [m for m in learner.progress.snapshot() if m.job_id == job and m.state != "running"]

    assert wait_for(final, 60), "the job never finished"
    assert final()[0].state == "succeeded", final()[0].message
    running = [m for m in learner.progress.snapshot() if m.job_id == job and m.state == "running"]
    assert running[-1].step == running[-1].total_steps == 20 and running[-1].loss > 0

    path = node.models.specialized_path("cabinet")
    assert wait_for(lambda: any(m.role == "specialized" and m.checkpoint_path == str(path)
                                for m in learner.announced.snapshot()), TIMEOUT)
    info = [m for m in learner.announced.snapshot() if m.role == "specialized"][-1]
    model = load_checkpoint(path)
    assert info.version == model.metadata["version"] and info.version in final()[0].message
    assert model.metadata["role"] == "specialized" and model.metadata["method"] == "fine_tune"
    assert model.metadata["training"][-1]["num_examples"] == 12


def test_a_failed_job_is_reported_and_the_node_trains_again(learner, wait_for, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("out of memory, pretend")

    node = learner.start(min_observations=2)
    assert learner.record.wait_for_service(timeout_sec=TIMEOUT)
    record_all(learner, cabinet_observations(3))
    monkeypatch.setattr(trainer, "train_specialized", broken)
    job = call(learner.train, TrainSpecialized.Request(domain="cabinet")).job_id
    assert wait_for(lambda: any(m.job_id == job and m.state == "failed" for m in learner.progress.snapshot()),
                    TIMEOUT)
    failed = [m for m in learner.progress.snapshot() if m.state == "failed"][0]
    assert "out of memory, pretend" in failed.message
    assert wait_for(lambda: node.job is None, TIMEOUT)
    monkeypatch.undo()
    # A domain without a general prior is refused up front, naming the missing file and the command.
    record_all(learner, [([1.0, 1.0, 0.8], [1.2, 1.1, 0.8])] * 2, domain="round_table")
    reply = call(learner.train, TrainSpecialized.Request(domain="round_table"))
    assert reply.result == TRAIN.RESULT_INVALID_REQUEST
    assert "round_table/general.safetensors" in reply.message and "dualdiff train" in reply.message


def test_enough_new_observations_retrain_on_their_own(learner, wait_for):
    node = learner.start(min_observations=4, fine_tune_epochs=5)
    node.set_parameters([Parameter("retrain_every", value=4)])
    assert learner.record.wait_for_service(timeout_sec=TIMEOUT)
    record_all(learner, cabinet_observations(4), task="plates")
    assert wait_for(lambda: any(m.state == "succeeded" and m.task == "plates" for m in learner.progress.snapshot()),
                    60), [m.message for m in learner.progress.snapshot()]
    assert node.models.specialized_path("cabinet", "plates").is_file()


def test_a_restarted_node_announces_its_models_and_keeps_its_observations(learner, wait_for, tmp_path):
    node = learner.start(min_observations=2, scratch_epochs=5)
    assert learner.record.wait_for_service(timeout_sec=TIMEOUT)
    record_all(learner, cabinet_observations(3), task="cups")
    job = call(learner.train, TrainSpecialized.Request(domain="cabinet", task="cups", method="scratch")).job_id
    assert wait_for(lambda: any(m.job_id == job and m.state == "succeeded" for m in learner.progress.snapshot()),
                    60), [m.message for m in learner.progress.snapshot()]
    node.destroy_node()

    later = rclpy.create_node("late_listener", context=learner.probe.context)
    learner.start()
    heard = Inbox(later, ModelInfo, MODEL_INFO_TOPIC, latched_qos())
    executor = SingleThreadedExecutor(context=later.context)
    executor.add_node(later)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: any(m.task == "cups" and m.role == "specialized" for m in heard.snapshot()), TIMEOUT)
    finally:
        executor.shutdown()
        thread.join(TIMEOUT)
        later.destroy_node()
    reply = call(learner.record, RecordObservation.Request(domain="cabinet", task="cups", state=[0.0] * 3,
                                                           target=[0.0] * 3))
    assert reply.observations_total == 4  # the three from before the restart are still there


def test_each_domain_is_fine_tuned_with_its_own_recipe(learner, wait_for):
    """navigate_to as its study measured it (every weight, lr 3e-4), the cabinet with rank-8 LoRA (lr 1e-3)."""
    rng = np.random.default_rng(0)
    states, targets = rng.uniform(0.0, 1.0, (400, 10)), rng.uniform(0.0, 1.0, (400, 2))
    general = train_general("navigate_to", states, targets, tiny_recipe(), progress=False)
    save(general, ModelStore(learner.model_dir).general_path("navigate_to"))
    node = learner.start(min_observations=4, fine_tune_epochs=2)
    assert learner.record.wait_for_service(timeout_sec=TIMEOUT)
    record_all(learner, [(list(s), list(t)) for s, t in zip(states[:4], targets[:4])], domain="navigate_to")
    record_all(learner, cabinet_observations(4))
    for domain in ("navigate_to", "cabinet"):
        job = call(learner.train, TrainSpecialized.Request(domain=domain)).job_id
        assert wait_for(lambda: any(m.job_id == job and m.state == "succeeded" for m in learner.progress.snapshot()),
                        60), [m.message for m in learner.progress.snapshot()]
        meta = read_header(node.models.specialized_path(domain))["metadata"]
        expected = recipe("full", domain)
        assert meta["training"][-1]["lr"] == expected.fine_tune.lr, domain
        assert meta.get("lora_rank", 0) == expected.fine_tune_lora_rank, domain
    assert recipe("full", "navigate_to").fine_tune.lr == 3e-4 and recipe("full", "navigate_to").fine_tune_lora_rank == 0
