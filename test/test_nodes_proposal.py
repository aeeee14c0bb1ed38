"""placement_proposal_node end to end over DDS: every mode, every bad request, markers and diagnostics."""

import math
import shutil

import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from dualdiff_interfaces.srv import ProposePlacements
from nodes_support import TIMEOUT, Inbox, call, tiny_models
from rclpy.parameter import Parameter
from visualization_msgs.msg import Marker, MarkerArray

from dualdiff_ros.bringup import start_nodes, stop_nodes
from dualdiff_ros.nodes.topics import DIAGNOSTICS_TOPIC, PROPOSAL_MARKERS_TOPIC, PROPOSE_SERVICE

Response = ProposePlacements.Response
CABINET = [1.0, 2.0, 1.0]
MAX_SAMPLES = 64


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return tiny_models(tmp_path_factory)


def _serve(ros_context, spin_in_thread, model_dir, **params):
    """The proposal node on `model_dir` plus a client node, spinning; (proposal node, client node, client)."""
    overrides = {"placement_proposal_node": {"max_samples": MAX_SAMPLES, **params}}
    executor, nodes = start_nodes(ros_context, "config/bringup.yaml", str(model_dir),
                                  nodes=("placement_proposal_node",), overrides=overrides)
    probe = rclpy.create_node("proposal_probe", context=ros_context)
    executor.add_node(probe)
    spin_in_thread(executor)
    client = probe.create_client(ProposePlacements, PROPOSE_SERVICE)
    assert client.wait_for_service(timeout_sec=TIMEOUT), "proposal service not discovered"
    return executor, nodes, probe, client


@pytest.fixture
def served(ros_context, spin_in_thread, model_dir):
    executor, nodes, probe, client = _serve(ros_context, spin_in_thread, model_dir)
    yield nodes[0], probe, client
    stop_nodes(executor, [*nodes, probe])


def request(**fields):
    base = {"domain": "cabinet", "state": CABINET, "num_samples": 16, "mode": "", "seed": 7}
    return ProposePlacements.Request(**{**base, **fields})


@pytest.mark.parametrize("mode", ["", "joint", "general", "specialized"])
def test_each_mode_answers_with_plausible_proposals(served, mode):
    node, _, client = served
    reply = call(client, request(mode=mode, num_samples=16))
    assert reply.result == Response.RESULT_OK, reply.message
    assert len(reply.proposals) == 16 and len(reply.scores) == 16
    assert reply.mode_used in ("joint", "general", "specialized")
    if mode in ("general", "specialized"):
        assert reply.mode_used == mode
    # Tiny models: loose plausibility only. Plates lie within 1 of the cabinet corner.
    for p in reply.proposals:
        assert max(abs(p.x - CABINET[0]), abs(p.y - CABINET[1]), abs(p.z - CABINET[2])) < 3.0, p
    assert all(math.isfinite(s) for s in reply.scores)
    assert reply.general_version == node.models.version(("general", "cabinet", ""))
    if reply.mode_used in ("joint", "specialized"):
        assert reply.specialized_version == node.models.version(("specialized", "cabinet", ""))
    if reply.mode_used == "joint":
        assert 0 < reply.effective_sample_size_fraction <= 1
        assert math.isfinite(reply.log_overlap) and -1 <= reply.score_cosine <= 1


def test_seed_makes_answers_reproducible_and_zero_is_fresh(served):
    _, _, client = served
    a, b = (call(client, request(mode="general", seed=11)) for _ in range(2))
    assert [(p.x, p.y, p.z) for p in a.proposals] == [(p.x, p.y, p.z) for p in b.proposals]
    c, d = (call(client, request(mode="general", seed=0)) for _ in range(2))
    assert [(p.x, p.y) for p in c.proposals] != [(p.x, p.y) for p in d.proposals]


BAD_REQUESTS = [
    (dict(state=[1.0, 2.0]), Response.RESULT_INVALID_REQUEST, ["state has 2 numbers", "needs 3"]),
    (dict(state=[1.0, float("nan"), 0.0]), Response.RESULT_INVALID_REQUEST, ["state[1] is nan"]),
    (dict(state=[float("inf"), 0.0, 0.0]), Response.RESULT_INVALID_REQUEST, ["state[0] is inf"]),
    (dict(num_samples=0), Response.RESULT_INVALID_REQUEST, ["num_samples 0", "max_samples"]),
    (dict(num_samples=MAX_SAMPLES + 1), Response.RESULT_INVALID_REQUEST, [f"num_samples {MAX_SAMPLES + 1}",
                                                                         f"1..{MAX_SAMPLES}"]),
    (dict(domain="kitchen"), Response.RESULT_INVALID_REQUEST, ["unknown domain 'kitchen'", "cabinet"]),
    (dict(mode="fast"), Response.RESULT_INVALID_REQUEST, ["unknown mode 'fast'", "joint"]),
    (dict(task="cups; rm -rf"), Response.RESULT_INVALID_REQUEST, ["task 'cups; rm -rf'", "letters, digits"]),
    (dict(domain="round_table"), Response.RESULT_MODEL_UNAVAILABLE, ["round_table", "general.safetensors",
                                                                     "dualdiff train"]),
    (dict(task="mugs", mode="specialized"), Response.RESULT_MODEL_UNAVAILABLE,
     ["specialized-mugs.safetensors", "/dualdiff/train_specialized"]),
]


def test_every_bad_request_is_named_and_the_node_serves_on(served):
    node, _, client = served
    for fields, code, words in BAD_REQUESTS:
        reply = call(client, request(**fields))
        assert reply.result == code, (fields, reply.message)
        assert not reply.proposals
        for word in words:
            assert word in reply.message, (fields, reply.message)
        good = call(client, request(mode="general", num_samples=4))
        assert good.result == Response.RESULT_OK, (fields, good.message)
    assert node.stats.rejected == len(BAD_REQUESTS)


def test_internal_error_is_reported_and_the_node_recovers(served, monkeypatch):
    node, _, client = served
    # A fault inside sampling (here: injected) must come back as a result code, not a dead node.
    def broken(*args, **kwargs):
        raise RuntimeError("sampler fault for the test")
    monkeypatch.setattr(node.service.proposer, "propose", broken)
    reply = call(client, request(mode="general"))
    assert reply.result == Response.RESULT_INTERNAL_ERROR
    assert "RuntimeError: sampler fault for the test" in reply.message
    monkeypatch.undo()
    reply = call(client, request(mode="general"))
    assert reply.result == Response.RESULT_OK, reply.message
    assert node.stats.internal_errors == 1


def test_more_sampler_steps_than_the_schedule_has_take_every_level(served):
    node, _, client = served
    # sampler.steps is an upper bound: the tiny models' 20-level schedule is walked level by level.
    node.set_parameters([Parameter("sampler.method", value="ddim"), Parameter("sampler.steps", value=500),
                         Parameter("sampler.fine_steps", value=10)])
    reply = call(client, request(mode="general"))
    assert reply.result == Response.RESULT_OK, reply.message
    result = node.set_parameters([Parameter("sampler.fine_steps", value=600)])[0]
    assert not result.successful and "below steps=500" in result.reason


def test_joint_clip_bounds_only_the_joint_sampler(served):
    node, _, client = served
    assert node.service.proposer.composition.sampler.clip == 10.0  # 0 (default): only the sampler's safety net
    assert node.set_parameters([Parameter("composition.clip", value=1.0)])[0].successful
    assert node.service.proposer.composition.sampler.clip == 1.0 and node.service.proposer.sampler.clip == 10.0
    assert not node.set_parameters([Parameter("composition.clip", value=-1.0)])[0].successful
    assert call(client, request(mode="joint")).result == Response.RESULT_OK


def test_bad_parameters_are_refused(served):
    node, _, _ = served
    result = node.set_parameters([Parameter("composition.method", value="magic")])[0]
    assert not result.successful and "magic" in result.reason
    result = node.set_parameters([Parameter("max_samples", value=5000)])[0]
    assert not result.successful  # outside the declared 1..4096 range
    assert node.get_parameter("composition.method").value == "sum"


def test_models_missing_are_named(ros_context, spin_in_thread, tmp_path, model_dir):
    only_general = tmp_path / "models"
    shutil.copytree(model_dir / "cabinet", only_general / "cabinet", ignore=shutil.ignore_patterns("specialized*"))
    executor, nodes, probe, client = _serve(ros_context, spin_in_thread, only_general,
                                            fallback_to_general=False)
    try:
        reply = call(client, request(mode="specialized"))
        assert reply.result == Response.RESULT_MODEL_UNAVAILABLE
        assert str(only_general / "cabinet" / "specialized.safetensors") in reply.message
        reply = call(client, request(mode="joint"))
        assert reply.result == Response.RESULT_MODEL_UNAVAILABLE
        nodes[0].set_parameters([Parameter("fallback_to_general", value=True)])
        reply = call(client, request(mode="joint"))
        assert reply.result == Response.RESULT_OK and reply.mode_used == "general"
        assert "answered from the general prior" in reply.message and reply.specialized_version == ""
        reply = call(client, request(domain="navigate_to", state=[0.0] * 10))
        assert reply.result == Response.RESULT_MODEL_UNAVAILABLE and "navigate_to" in reply.message
    finally:
        stop_nodes(executor, [*nodes, probe])


def test_markers_and_diagnostics_are_published(served, wait_for):
    node, probe, client = served
    markers = Inbox(probe, MarkerArray, PROPOSAL_MARKERS_TOPIC)
    diagnostics = Inbox(probe, DiagnosticArray, DIAGNOSTICS_TOPIC)
    assert wait_for(lambda: node.count_subscribers(PROPOSAL_MARKERS_TOPIC) > 0, TIMEOUT)
    reply = call(client, request(mode="general", num_samples=5))
    assert reply.result == Response.RESULT_OK
    assert wait_for(lambda: markers.snapshot(), TIMEOUT), "no MarkerArray"
    array = markers.snapshot()[-1]
    assert array.markers[0].action == Marker.DELETEALL
    spheres = array.markers[1:]
    assert len(spheres) == 5 and all(m.type == Marker.SPHERE for m in spheres)
    assert spheres[0].header.frame_id == "map"
    assert (spheres[0].pose.position.x, spheres[0].pose.position.y) == (reply.proposals[0].x, reply.proposals[0].y)

    def served_status():
        for array in diagnostics.snapshot():
            for status in array.status:
                values = {kv.key: kv.value for kv in status.values}
                if int(values.get("requests_served", 0)) >= 1:
                    return values
        return None

    assert wait_for(served_status, TIMEOUT), "no diagnostics with the request counted"
    values = served_status()
    assert values["version/general/cabinet"] == reply.general_version
    assert float(values["last_latency_ms"]) > 0


def test_answers_are_published_stamped_in_the_request_frame(served, wait_for):
    from dualdiff_interfaces.msg import PlacementProposals

    from dualdiff_ros.nodes.topics import PROPOSALS_TOPIC

    node, probe, client = served
    told = Inbox(probe, PlacementProposals, PROPOSALS_TOPIC)
    assert wait_for(lambda: node.count_subscribers(PROPOSALS_TOPIC) > 0, TIMEOUT)
    asked = request(mode="general", num_samples=4)
    asked.header.frame_id, asked.header.stamp.sec, asked.header.stamp.nanosec = "odom", 1234, 5678
    reply = call(client, asked)
    assert reply.result == Response.RESULT_OK, reply.message
    assert wait_for(lambda: told.snapshot(), TIMEOUT), "nothing on dualdiff/proposals"
    msg = told.snapshot()[-1]
    assert (msg.header.frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec) == ("odom", 1234, 5678)
    assert msg.domain == "cabinet" and msg.mode_used == "general" and list(msg.state) == CABINET
    assert [(p.x, p.y, p.z) for p in msg.proposals] == [(p.x, p.y, p.z) for p in reply.proposals]
    assert list(msg.scores) == list(reply.scores) and msg.general_version == reply.general_version
    call(client, request(domain="attic"))  # refused requests are not published
    assert len(told.snapshot()) == 1
