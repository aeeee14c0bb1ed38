"""A hostile or careless client against the real nodes over DDS: nothing it sends poisons, floods or swaps.

Each probe of the hardening issue: absurd observations and states, huge strings, forged model
announcements, checkpoints changed on disk, requests too costly to serve, and the services
that let an operator list and forget what was stored.
"""
import shutil
import threading

import pytest
import rclpy
from dualdiff_interfaces.msg import ModelInfo, TrainingProgress
from dualdiff_interfaces.srv import (
    ForgetObservations,
    ListObservations,
    ProposePlacements,
    RecordObservation,
    TrainSpecialized,
)
from nodes_support import TIMEOUT, Inbox, call, tiny_models
from rclpy.parameter import Parameter

from dualdiff_ros.bringup import start_nodes, stop_nodes
from dualdiff_ros.domains import get_domain
from dualdiff_ros.learning import ObservationStore
from dualdiff_ros.nodes.topics import (
    MODEL_INFO_TOPIC,
    PROPOSE_SERVICE,
    TRAIN_SERVICE,
    TRAINING_PROGRESS_TOPIC,
    latched_qos,
)

P = ProposePlacements.Response
R = RecordObservation.Response
CABINET = [1.0, 2.0, 1.0]
NODE = "/specialized_model_node"


@pytest.fixture
def robot(ros_context, spin_in_thread, tmp_path_factory, tmp_path):
    """The proposal and specialized nodes on a private copy of the tiny models, and a probe with clients."""
    model_dir = shutil.copytree(tiny_models(tmp_path_factory), tmp_path / "models")
    settings = {"specialized_model_node": {"db_path": str(tmp_path / "obs.sqlite"), "retrain_every": 0,
                                           "min_observations": 8, "fine_tune_epochs": 5}}
    executor, nodes = start_nodes(ros_context, "config/bringup.yaml", str(model_dir),
                                  nodes=("specialized_model_node", "placement_proposal_node"), overrides=settings)
    probe = rclpy.create_node("hostile_probe", context=ros_context)
    executor.add_node(probe)
    spin_in_thread(executor)

    class Robot:
        pass

    env = Robot()
    env.model_dir, env.db = model_dir, tmp_path / "obs.sqlite"
    env.learner, env.proposer = nodes
    env.probe = probe
    env.propose = probe.create_client(ProposePlacements, PROPOSE_SERVICE)
    env.record = probe.create_client(RecordObservation, f"{NODE}/record_observation")
    env.list = probe.create_client(ListObservations, f"{NODE}/list_observations")
    env.forget = probe.create_client(ForgetObservations, f"{NODE}/forget_observations")
    env.train = probe.create_client(TrainSpecialized, TRAIN_SERVICE)
    env.announce = probe.create_publisher(ModelInfo, MODEL_INFO_TOPIC, latched_qos())
    env.progress = Inbox(probe, TrainingProgress, TRAINING_PROGRESS_TOPIC, 100)
    for client in (env.propose, env.record, env.list, env.forget, env.train):
        assert client.wait_for_service(timeout_sec=TIMEOUT), client.srv_name
    yield env
    stop_nodes(executor, [*nodes, probe])


def _propose(env, **fields):
    base = {"domain": "cabinet", "state": CABINET, "num_samples": 8, "seed": 3}
    return call(env.propose, ProposePlacements.Request(**{**base, **fields}))


def _observations(n):
    data = get_domain("cabinet").specialized_dataset(n, 1)
    return [(list(c), list(t)) for c, t in zip(data.conditions, data.targets)]


@pytest.mark.parametrize("state, target, words", [
    (CABINET, [1e300, 2.0, 1.0], "target[0] - state[0] = 1e+300 is outside the plausible range"),
    (CABINET, [1e9, 2.0, 1.0], "is outside the plausible range"),
    (CABINET, [1001.0, 2.0, 1.0], "target[0] - state[0] = 1000 is outside"),  # 1 km from the furniture
    ([1e25, 2.0, 1.0], [1.0, 2.0, 1.0], "state[0] = 1e+25 is outside the plausible range"),
])
def test_an_absurd_observation_is_refused_with_its_range_and_not_stored(robot, state, target, words):
    reply = call(robot.record, RecordObservation.Request(domain="cabinet", state=state, target=target))
    assert reply.result == R.RESULT_INVALID_REQUEST and words in reply.message, reply.message
    assert "limits.margin" in reply.message
    listed = call(robot.list, ListObservations.Request(domain="cabinet", any_task=True))
    assert listed.result == ListObservations.Response.RESULT_OK and len(listed.ids) == 0


def test_a_stored_absurd_row_is_left_out_of_training_and_can_be_listed_and_forgotten(robot, wait_for):
    good = _observations(10)
    for s, t in good:
        assert call(robot.record, RecordObservation.Request(domain="cabinet", state=s, target=t)).result == R.RESULT_OK
    with ObservationStore(robot.db) as store:  # a row an older version let in, written behind the node's back
        poisoned = store.add("cabinet", "", CABINET, [1e300, 0.0, 0.0])
    reply = call(robot.train, TrainSpecialized.Request(domain="cabinet"))
    assert reply.result == TrainSpecialized.Response.RESULT_OK, reply.message
    done = lambda: [m for m in robot.progress.snapshot() if m.job_id == reply.job_id and m.state != "running"]  # noqa: E731
    assert wait_for(done, TIMEOUT)
    assert done()[-1].state == "succeeded", done()[-1].message
    first = [m for m in robot.progress.snapshot() if m.job_id == reply.job_id][0]
    assert f"left out 1 outside the plausible range (ids [{poisoned}]" in first.message
    # The operator finds the row and forgets it; it is gone after the reply.
    listed = call(robot.list, ListObservations.Request(domain="cabinet"))
    assert poisoned in listed.ids and len(listed.ids) == 11 and sum(listed.state_sizes) == len(listed.states) == 33
    forgot = call(robot.forget, ForgetObservations.Request(ids=[poisoned]))
    assert forgot.result == ForgetObservations.Response.RESULT_OK and forgot.forgotten == 1
    assert poisoned not in call(robot.list, ListObservations.Request(domain="cabinet")).ids
    empty = call(robot.forget, ForgetObservations.Request())
    assert empty.result == ForgetObservations.Response.RESULT_INVALID_REQUEST  # an empty request wipes nothing
    # A served answer from the new model is finite.
    assert _propose(robot).result == P.RESULT_OK


@pytest.mark.parametrize("mode", ["joint", "general", "specialized"])
def test_a_huge_state_is_refused_in_every_mode(robot, mode):
    reply = _propose(robot, state=[1e25, 2.0, 1.0], mode=mode)
    assert reply.result == P.RESULT_INVALID_REQUEST and "state[0] = 1e+25 is outside" in reply.message
    assert not reply.proposals


def test_the_state_range_can_be_widened_by_a_parameter(robot):
    far = [60.0, 2.0, 1.0]
    assert _propose(robot, state=far).result == P.RESULT_INVALID_REQUEST
    assert robot.proposer.set_parameters([Parameter("limits.state_margin", value=1000.0)])[0].successful
    reply = _propose(robot, state=far)
    assert reply.result == P.RESULT_OK or reply.result == P.RESULT_INTERNAL_ERROR  # answered, never a bad OK
    if reply.result == P.RESULT_OK:
        assert all(abs(p.x) < 1e30 for p in reply.proposals)


@pytest.mark.parametrize("field", ["domain", "task", "mode"])
def test_a_megabyte_string_is_refused_unread_and_not_echoed(robot, field):
    reply = _propose(robot, **{field: "x" * 1_000_000})
    assert reply.result == P.RESULT_INVALID_REQUEST and f"{field} is 1000000 bytes" in reply.message
    assert len(reply.message) < 400
    record = call(robot.record, RecordObservation.Request(domain="cabinet" if field != "domain" else "y" * 10**6,
                                                          task="z" * 10**6 if field != "domain" else "",
                                                          state=CABINET, target=CABINET))
    assert record.result == R.RESULT_INVALID_REQUEST and len(record.message) < 400


def test_a_task_name_with_a_newline_is_refused(robot):
    reply = _propose(robot, task="mugs\n", mode="specialized")
    assert reply.result == P.RESULT_INVALID_REQUEST and "no spaces or newlines" in reply.message
    record = call(robot.record, RecordObservation.Request(domain="cabinet", task="mugs\n", state=CABINET,
                                                          target=CABINET))
    assert record.result == R.RESULT_INVALID_REQUEST


def _served_version(env):
    reply = _propose(env, mode="specialized")
    assert reply.result == P.RESULT_OK, reply.message
    return reply.specialized_version


def test_a_forged_announcement_cannot_swap_the_model(robot, tmp_path, wait_for):
    before = _served_version(robot)
    # 1. A checkpoint outside model_dir.
    outside = tmp_path / "elsewhere.safetensors"
    shutil.copy(robot.model_dir / "cabinet" / "general.safetensors", outside)
    robot.announce.publish(ModelInfo(role="specialized", domain="cabinet", checkpoint_path=str(outside)))
    # 2. Inside model_dir, but the general prior offered as the cabinet specialist (wrong role in its header).
    robot.announce.publish(ModelInfo(role="specialized", domain="cabinet",
                                     checkpoint_path=str(robot.model_dir / "cabinet" / "general.safetensors")))
    assert wait_for(lambda: robot.proposer.stats.refused_models >= 2, TIMEOUT)
    replies = [_propose(robot, mode="specialized") for _ in range(20)]
    assert all(r.result == P.RESULT_OK and r.specialized_version == before for r in replies)


def test_a_checkpoint_changed_in_place_is_refused_when_announced(robot, wait_for):
    before = _served_version(robot)
    path = robot.model_dir / "cabinet" / "specialized.safetensors"
    raw = bytearray(path.read_bytes())
    at = raw.find(b'"low": [') + len(b'"low": [')  # a same-length edit of a normalizer bound
    raw[at] = ord("9") if raw[at] != ord("9") else ord("8")
    path.write_bytes(bytes(raw))
    robot.announce.publish(ModelInfo(role="specialized", domain="cabinet", checkpoint_path=str(path)))
    assert wait_for(lambda: robot.proposer.stats.refused_models >= 1, TIMEOUT)
    assert _served_version(robot) == before  # still the verified model


def test_a_request_over_the_compute_budget_is_refused_and_small_ones_are_not_held_up(robot):
    costly = [Parameter("sampler.method", value="ddpm"), Parameter("sampler.steps", value=0),
              Parameter("sampler.fine_steps", value=0), Parameter("composition.method", value="smc"),
              Parameter("composition.langevin_steps", value=20),
              Parameter("budget.max_sample_passes", value=20_000)]  # the tiny models have 20 noise levels
    result = robot.proposer.set_parameters_atomically(costly)
    assert result.successful, result.reason
    reply = _propose(robot, num_samples=64)
    assert reply.result == P.RESULT_INVALID_REQUEST and "budget.max_sample_passes" in reply.message
    assert _propose(robot, num_samples=1).result == P.RESULT_OK


def test_settings_that_contradict_each_other_are_refused_all_or_none(robot):
    result = robot.proposer.set_parameters_atomically([Parameter("sampler.steps", value=5),
                                                       Parameter("sampler.fine_steps", value=20)])
    assert not result.successful and "fine_steps" in result.reason
    assert robot.proposer.get_parameter("sampler.steps").value == 30  # nothing of the pair was applied


def test_a_corrupt_general_prior_is_named_as_corrupt(ros_context, spin_in_thread, tmp_path_factory, tmp_path):
    model_dir = shutil.copytree(tiny_models(tmp_path_factory), tmp_path / "models")
    path = model_dir / "cabinet" / "general.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # cut short
    executor, nodes = start_nodes(ros_context, "config/bringup.yaml", str(model_dir),
                                  nodes=("placement_proposal_node",))
    probe = rclpy.create_node("corrupt_probe", context=ros_context)
    executor.add_node(probe)
    spin_in_thread(executor)
    try:
        client = probe.create_client(ProposePlacements, PROPOSE_SERVICE)
        assert client.wait_for_service(timeout_sec=TIMEOUT)
        reply = call(client, ProposePlacements.Request(domain="cabinet", state=CABINET, num_samples=4, mode="general"))
        assert reply.result == P.RESULT_MODEL_UNAVAILABLE
        assert "refused" in reply.message and "truncated" in reply.message and "dualdiff train" in reply.message
    finally:
        stop_nodes(executor, [*nodes, probe])


def test_many_clients_at_once_all_get_answers(robot):
    """8 clients x 25 requests, with bad requests mixed in: every call is answered, no node goes down."""
    results, lock = [], threading.Lock()

    def client_thread(i):
        for j in range(25):
            bad = (i + j) % 5 == 0
            reply = _propose(robot, state=[1e25, 0.0, 0.0] if bad else CABINET, seed=i * 100 + j + 1)
            with lock:
                results.append((bad, reply.result))

    threads = [threading.Thread(target=client_thread, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(results) == 200
    assert all(code == (P.RESULT_INVALID_REQUEST if bad else P.RESULT_OK) for bad, code in results)


def test_a_set_parameters_call_is_applied_all_or_none(robot):
    """The plain SetParameters service (as `ros2 param load` uses it): a contradicting pair lands not at all."""
    from rcl_interfaces.srv import SetParameters

    client = robot.probe.create_client(SetParameters, "/placement_proposal_node/set_parameters")
    assert client.wait_for_service(timeout_sec=TIMEOUT)
    request = SetParameters.Request(parameters=[Parameter("sampler.steps", value=5).to_parameter_msg(),
                                                Parameter("sampler.fine_steps", value=20).to_parameter_msg(),
                                                Parameter("max_samples", value=100).to_parameter_msg()])
    reply = call(client, request)
    assert len(reply.results) == 3 and not any(r.successful for r in reply.results)
    assert "fine_steps" in reply.results[0].reason
    assert [robot.proposer.get_parameter(n).value for n in ("sampler.steps", "sampler.fine_steps", "max_samples")] \
        == [30, 10, 256]
    good = SetParameters.Request(parameters=[Parameter("sampler.steps", value=20).to_parameter_msg(),
                                             Parameter("sampler.fine_steps", value=5).to_parameter_msg()])
    assert all(r.successful for r in call(client, good).results)
    assert robot.proposer.get_parameter("sampler.steps").value == 20
