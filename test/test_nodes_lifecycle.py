"""Lifecycle of the model nodes, driven over DDS as a robot's lifecycle manager drives them.

Unconfigured and inactive nodes answer every request with a result code and the transition
that fixes it; configure loads (models, the observation store), activate serves, deactivate
refuses again, cleanup releases the models.
"""

import shutil

import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from dualdiff_interfaces.srv import ProposePlacements, RecordObservation
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from nodes_support import TIMEOUT, Inbox, call, tiny_models

from dualdiff_ros.bringup import start_nodes, stop_nodes
from dualdiff_ros.nodes.topics import DIAGNOSTICS_TOPIC, PROPOSE_SERVICE

Response = ProposePlacements.Response
PROPOSAL = ProposePlacements.Request(domain="cabinet", state=[1.0, 2.0, 1.0], num_samples=4, mode="general", seed=3)
NODES = ("general_prior_node", "specialized_model_node", "placement_proposal_node")


@pytest.fixture
def idle(ros_context, spin_in_thread, tmp_path_factory, tmp_path):
    """The three model nodes started unconfigured (autostart off), a probe node and its lifecycle clients."""
    model_dir = shutil.copytree(tiny_models(tmp_path_factory), tmp_path / "models")
    executor, nodes = start_nodes(ros_context, "config/bringup.yaml", str(model_dir), nodes=NODES, autostart=False,
                                  overrides={"specialized_model_node": {"db_path": str(tmp_path / "obs.sqlite")}})
    probe = rclpy.create_node("lifecycle_probe", context=ros_context)
    executor.add_node(probe)
    spin_in_thread(executor)
    clients = {name: (probe.create_client(ChangeState, f"/{name}/change_state"),
                      probe.create_client(GetState, f"/{name}/get_state")) for name in NODES}
    for change, get in clients.values():
        assert change.wait_for_service(timeout_sec=TIMEOUT) and get.wait_for_service(timeout_sec=TIMEOUT)
    yield dict(zip(NODES, nodes)), probe, clients
    stop_nodes(executor, [*nodes, probe])


def _state(clients, name) -> str:
    return call(clients[name][1], GetState.Request()).current_state.label


def _change(clients, name, transition_id) -> bool:
    return call(clients[name][0], ChangeState.Request(transition=Transition(id=transition_id))).success


def test_transitions_over_dds_gate_the_service(idle, tmp_path):
    nodes, probe, clients = idle
    propose = probe.create_client(ProposePlacements, PROPOSE_SERVICE)
    assert propose.wait_for_service(timeout_sec=TIMEOUT)  # the service exists in every state
    assert all(_state(clients, n) == "unconfigured" for n in NODES)

    reply = call(propose, PROPOSAL)
    assert reply.result == Response.RESULT_MODEL_UNAVAILABLE and "unconfigured" in reply.message
    assert "configure" in reply.message and not reply.proposals
    assert not (tmp_path / "obs.sqlite").exists()  # the store opens on configure

    for name in NODES:  # in start order, as a lifecycle manager would
        assert _change(clients, name, Transition.TRANSITION_CONFIGURE)
        assert _state(clients, name) == "inactive"
    assert (tmp_path / "obs.sqlite").is_file()
    assert nodes["placement_proposal_node"].models.versions()  # configure loaded the models
    reply = call(propose, PROPOSAL)
    assert reply.result == Response.RESULT_MODEL_UNAVAILABLE and "inactive" in reply.message

    for name in NODES:
        assert _change(clients, name, Transition.TRANSITION_ACTIVATE)
        assert _state(clients, name) == "active"
    reply = call(propose, PROPOSAL)
    assert reply.result == Response.RESULT_OK and len(reply.proposals) == 4, reply.message

    assert _change(clients, "placement_proposal_node", Transition.TRANSITION_DEACTIVATE)
    assert call(propose, PROPOSAL).result == Response.RESULT_MODEL_UNAVAILABLE
    assert _change(clients, "placement_proposal_node", Transition.TRANSITION_CLEANUP)
    assert _state(clients, "placement_proposal_node") == "unconfigured"
    assert nodes["placement_proposal_node"].models.versions() == {}  # cleanup released them

    # and back: configure reloads from disk and from the (latched) announcements
    assert _change(clients, "placement_proposal_node", Transition.TRANSITION_CONFIGURE)
    assert _change(clients, "placement_proposal_node", Transition.TRANSITION_ACTIVATE)
    reply = call(propose, PROPOSAL)
    assert reply.result == Response.RESULT_OK, reply.message


def test_the_observation_store_follows_the_lifecycle(idle, tmp_path):
    nodes, probe, clients = idle
    record = probe.create_client(RecordObservation, "/specialized_model_node/record_observation")
    assert record.wait_for_service(timeout_sec=TIMEOUT)
    observation = RecordObservation.Request(domain="cabinet", state=[1.0, 2.0, 1.0], target=[0.8, 1.9, 1.2])
    reply = call(record, observation)
    assert reply.result == RecordObservation.Response.RESULT_NOT_ACTIVE and "unconfigured" in reply.message
    assert _change(clients, "specialized_model_node", Transition.TRANSITION_CONFIGURE)
    assert _change(clients, "specialized_model_node", Transition.TRANSITION_ACTIVATE)
    assert call(record, observation).result == RecordObservation.Response.RESULT_OK
    assert _change(clients, "specialized_model_node", Transition.TRANSITION_DEACTIVATE)
    assert _change(clients, "specialized_model_node", Transition.TRANSITION_CLEANUP)
    assert nodes["specialized_model_node"].store is None  # closed
    assert call(record, observation).result == RecordObservation.Response.RESULT_NOT_ACTIVE


def test_every_node_reports_its_lifecycle_state_on_diagnostics(idle, wait_for):
    nodes, probe, clients = idle
    diagnostics = Inbox(probe, DiagnosticArray, DIAGNOSTICS_TOPIC)

    def states():
        seen = {}
        for array in diagnostics.snapshot():
            for status in array.status:
                seen[status.hardware_id] = {kv.key: kv.value for kv in status.values}["lifecycle_state"]
        return seen

    assert wait_for(lambda: len(states()) == 3, TIMEOUT), states()
    assert set(states().values()) == {"unconfigured"}
    assert _change(clients, "general_prior_node", Transition.TRANSITION_CONFIGURE)
    assert _change(clients, "general_prior_node", Transition.TRANSITION_ACTIVATE)
    assert wait_for(lambda: states().get("/general_prior_node") == "active", TIMEOUT)
