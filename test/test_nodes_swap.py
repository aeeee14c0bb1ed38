"""Model swaps while requests stream in, and the general prior node's latched announcements."""

import shutil
import threading

import pytest
import rclpy
import torch
from dualdiff_interfaces.msg import ModelInfo
from dualdiff_interfaces.srv import ProposePlacements
from nodes_support import TIMEOUT, Inbox, call, tiny_models
from rclpy.parameter import Parameter
from std_srvs.srv import Trigger

from dualdiff_ros.bringup import start_nodes, stop_nodes
from dualdiff_ros.diffusion.checkpoint import read_header
from dualdiff_ros.model_store import ModelStore, save
from dualdiff_ros.nodes.models import model_info
from dualdiff_ros.nodes.topics import MODEL_INFO_TOPIC, PROPOSE_SERVICE, latched_qos

Response = ProposePlacements.Response
REQUEST = dict(domain="cabinet", state=[1.0, 2.0, 1.0], num_samples=8, seed=3)


@pytest.fixture
def model_dir(tmp_path_factory, tmp_path):
    """A private copy of the tiny models: these tests write new checkpoints into it."""
    return shutil.copytree(tiny_models(tmp_path_factory), tmp_path / "models")


@pytest.fixture
def running(ros_context, spin_in_thread):
    """start(model_dir, nodes, overrides) -> nodes, all on one spinning executor, plus a probe node."""
    started = []
    probe = rclpy.create_node("swap_probe", context=ros_context)

    def start(model_dir, nodes, **overrides):
        executor, new = start_nodes(ros_context, "config/bringup.yaml", str(model_dir), nodes=nodes,
                                    overrides=overrides)
        if not started:
            executor.add_node(probe)
        spin_in_thread(executor)
        started.append((executor, new))
        return new

    yield start, probe
    for executor, nodes in reversed(started):
        stop_nodes(executor, nodes)
    probe.destroy_node()


def perturbed_copy(store: ModelStore, role: str) -> str:
    """Write a slightly changed checkpoint over the current one (atomically); its new version."""
    model = store.load_specialized("cabinet") if role == "specialized" else store.load_general("cabinet")
    with torch.no_grad():
        next(model.denoiser.parameters()).add_(1e-3)
    path = store.specialized_path("cabinet") if role == "specialized" else store.general_path("cabinet")
    return save(model, path)


def announce(publisher, store: ModelStore, role: str) -> None:
    path = store.specialized_path("cabinet") if role == "specialized" else store.general_path("cabinet")
    publisher.publish(model_info(ModelInfo, role, "cabinet", "", path, read_header(path)))


class Stream:
    """Joint requests back to back from a client thread; every reply kept in order."""

    def __init__(self, client):
        self.client, self.replies, self.stop = client, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            self.replies.append(call(self.client, ProposePlacements.Request(mode="joint", **REQUEST)))

    def versions(self):
        return [r.specialized_version for r in list(self.replies)]

    def finish(self):
        self.stop.set()
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive()


def test_specialized_swap_while_requests_stream(running, model_dir, wait_for):
    start, probe = running
    (proposal,) = start(model_dir, ("placement_proposal_node",))
    store = ModelStore(model_dir)
    old = proposal.models.version(("specialized", "cabinet", ""))
    publisher = probe.create_publisher(ModelInfo, MODEL_INFO_TOPIC, latched_qos())
    client = probe.create_client(ProposePlacements, PROPOSE_SERVICE)
    assert client.wait_for_service(timeout_sec=TIMEOUT)

    stream = Stream(client)
    try:
        assert wait_for(lambda: len(stream.replies) >= 5, TIMEOUT), "requests are not flowing"
        new = perturbed_copy(store, "specialized")
        assert new != old
        announce(publisher, store, "specialized")
        assert wait_for(lambda: new in stream.versions()[-3:], TIMEOUT), "the new model never answered"
        assert wait_for(lambda: len(stream.replies) >= stream.versions().index(new) + 3, TIMEOUT)
    finally:
        stream.finish()
    assert all(r.result == Response.RESULT_OK for r in stream.replies), [r.message for r in stream.replies]
    versions = stream.versions()
    first_new = versions.index(new)
    assert set(versions[:first_new]) == {old} and set(versions[first_new:]) == {new}  # one clean switch


def test_a_broken_announcement_keeps_the_old_model(running, model_dir, tmp_path):
    start, probe = running
    (proposal,) = start(model_dir, ("placement_proposal_node",))
    old = proposal.models.version(("specialized", "cabinet", ""))
    publisher = probe.create_publisher(ModelInfo, MODEL_INFO_TOPIC, latched_qos())
    client = probe.create_client(ProposePlacements, PROPOSE_SERVICE)
    assert client.wait_for_service(timeout_sec=TIMEOUT)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not a header")
    for path in (broken, tmp_path / "missing.safetensors"):
        publisher.publish(ModelInfo(role="specialized", domain="cabinet", version="bad", checkpoint_path=str(path)))
    publisher.publish(ModelInfo(role="specialized", domain="attic", version="x", checkpoint_path=str(broken)))
    for _ in range(5):  # the announcements are handled while these are served
        reply = call(client, ProposePlacements.Request(mode="joint", **REQUEST))
        assert reply.result == Response.RESULT_OK, reply.message
        assert reply.specialized_version == old


def test_general_prior_reaches_a_late_proposal_node_and_reloads(running, model_dir, tmp_path, wait_for):
    start, probe = running
    (general_node,) = start(model_dir, ("general_prior_node",))
    announced = Inbox(probe, ModelInfo, MODEL_INFO_TOPIC, latched_qos())
    assert wait_for(lambda: any(m.domain == "cabinet" for m in announced.snapshot()), TIMEOUT)
    info = [m for m in announced.snapshot() if m.domain == "cabinet"][-1]
    assert info.role == "general" and info.version == general_node.versions["cabinet"]
    assert info.checkpoint_path.endswith("cabinet/general.safetensors") and "architecture" in info.metadata_json

    # The proposal node starts later with no models of its own: it learns of the prior from the latch.
    # Its model_dir (tmp_path) holds no <domain>/ folders itself, but the announced file lies under it.
    (proposal,) = start(tmp_path, ("placement_proposal_node",))
    assert wait_for(lambda: proposal.models.version(("general", "cabinet", "")) == info.version, TIMEOUT)
    client = probe.create_client(ProposePlacements, PROPOSE_SERVICE)
    assert client.wait_for_service(timeout_sec=TIMEOUT)
    reply = call(client, ProposePlacements.Request(mode="general", **REQUEST))
    assert reply.result == Response.RESULT_OK and reply.general_version == info.version

    # A retrained prior on disk reaches the proposal node through ~/reload.
    new = perturbed_copy(ModelStore(model_dir), "general")
    reload_client = probe.create_client(Trigger, "/general_prior_node/reload")
    assert reload_client.wait_for_service(timeout_sec=TIMEOUT)
    result = call(reload_client, Trigger.Request())
    assert new in result.message and not result.success  # round_table has no prior: named, not fatal
    assert "round_table" in result.message and "dualdiff train" in result.message
    assert wait_for(lambda: call(client, ProposePlacements.Request(mode="general", **REQUEST)).general_version
                    == new, TIMEOUT)


def test_general_prior_node_follows_its_parameters(running, model_dir, tmp_path, wait_for):
    start, probe = running
    (general_node,) = start(tmp_path / "nothing_yet", ("general_prior_node",))
    assert general_node.versions == {}  # missing priors: warned about, node up
    announced = Inbox(probe, ModelInfo, MODEL_INFO_TOPIC, latched_qos())
    result = general_node.set_parameters([Parameter("domains", value=["cabinet", "attic"])])[0]
    assert not result.successful and "attic" in result.reason
    assert general_node.set_parameters([Parameter("model_dir", value=str(model_dir))])[0].successful
    assert wait_for(lambda: "cabinet" in general_node.versions, TIMEOUT), "no reload after model_dir changed"
    assert wait_for(lambda: any(m.domain == "cabinet" for m in announced.snapshot()), TIMEOUT)
