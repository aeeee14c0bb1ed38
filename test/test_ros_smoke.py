"""Smoke tests of the ROS 2 stack installed from wheels: real DDS traffic, no mocks."""

import signal
import subprocess
import sys
import threading

import pytest
import rclpy
from dualdiff_interfaces.srv import ProposePlacements
from geometry_msgs.msg import Point
from rclpy.executors import MultiThreadedExecutor
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from dualdiff_ros.nodes.calls import call_sync

TIMEOUT = 20.0


def test_geometry_msgs_point():
    point = Point(x=1.0, y=-2.5)
    assert (point.x, point.y, point.z) == (1.0, -2.5, 0.0)


def test_propose_placements_constants():
    response = ProposePlacements.Response
    codes = [
        response.RESULT_OK,
        response.RESULT_INVALID_REQUEST,
        response.RESULT_MODEL_UNAVAILABLE,
        response.RESULT_INTERNAL_ERROR,
    ]
    assert codes == [0, 1, 2, 3]


def test_propose_placements_round_trip(ros_context, spin_in_thread):
    server = rclpy.create_node("smoke_propose_server", context=ros_context)
    client_node = rclpy.create_node("smoke_propose_client", context=ros_context)
    seen = []

    def handle(request, response):
        seen.append(request)
        response.result = ProposePlacements.Response.RESULT_OK
        response.message = "dummy"
        response.proposals = [Point(x=0.25, y=-0.5, z=0.0)]
        response.scores = [0.75]
        response.mode_used = request.mode or "joint"
        response.effective_sample_size_fraction = 1.0
        return response

    server.create_service(ProposePlacements, "smoke/propose_placements", handle)
    client = client_node.create_client(ProposePlacements, "smoke/propose_placements")

    executor = MultiThreadedExecutor(num_threads=2, context=ros_context)
    executor.add_node(server)
    executor.add_node(client_node)
    spin_in_thread(executor)

    assert client.wait_for_service(timeout_sec=TIMEOUT), "service not discovered over DDS"
    request = ProposePlacements.Request(
        domain="cabinet", state=[0.1, 0.2, 0.3], num_samples=1, mode="general", seed=7
    )
    future = client.call_async(request)
    done = threading.Event()
    future.add_done_callback(lambda _f: done.set())
    assert done.wait(TIMEOUT), "no reply within the timeout"

    reply = future.result()
    assert reply.result == ProposePlacements.Response.RESULT_OK
    assert reply.message == "dummy"
    assert len(reply.proposals) == 1
    assert (reply.proposals[0].x, reply.proposals[0].y, reply.proposals[0].z) == (0.25, -0.5, 0.0)
    assert list(reply.scores) == pytest.approx([0.75])
    assert reply.mode_used == "general"
    assert reply.effective_sample_size_fraction == pytest.approx(1.0)

    assert len(seen) == 1
    assert seen[0].domain == "cabinet"
    assert list(seen[0].state) == pytest.approx([0.1, 0.2, 0.3])
    assert seen[0].num_samples == 1 and seen[0].seed == 7


def test_transient_local_reaches_late_subscriber(ros_context, spin_in_thread, wait_for):
    latched = QoSProfile(
        depth=1,
        history=HistoryPolicy.KEEP_LAST,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )
    pub_node = rclpy.create_node("smoke_latched_pub", context=ros_context)
    publisher = pub_node.create_publisher(String, "smoke/model_version", latched)
    publisher.publish(String(data="v1"))
    publisher.publish(String(data="v2"))  # depth 1: only this one is kept for late joiners

    sub_node = rclpy.create_node("smoke_latched_sub", context=ros_context)
    received = []
    sub_node.create_subscription(
        String, "smoke/model_version", lambda msg: received.append(msg.data), latched
    )

    executor = MultiThreadedExecutor(num_threads=2, context=ros_context)
    executor.add_node(pub_node)
    executor.add_node(sub_node)
    spin_in_thread(executor)

    assert wait_for(lambda: len(received) >= 1, timeout=TIMEOUT), "late subscriber got nothing"
    assert received[0] == "v2"
    assert received == ["v2"]


SERVER_PROCESS = """
import rclpy
from geometry_msgs.msg import Point
from rclpy.executors import ExternalShutdownException
from dualdiff_interfaces.srv import ProposePlacements
from dualdiff_ros.nodes.calls import call_sync

def handle(request, response):
    response.result = ProposePlacements.Response.RESULT_OK
    response.proposals = [Point(x=float(len(request.state)), y=2.0, z=0.0)]
    response.mode_used = "joint"
    return response

rclpy.init()
try:
    node = rclpy.create_node("smoke_server_process")
    node.create_service(ProposePlacements, "smoke/propose_placements_xproc", handle)
    print("ready", flush=True)
    rclpy.spin(node)
except (KeyboardInterrupt, ExternalShutdownException):
    pass
finally:
    rclpy.try_shutdown()
"""


def test_propose_placements_across_processes(ros_context, spin_in_thread):
    """The server runs in a child process: discovery and the env (domain id) carry over."""
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER_PROCESS], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        client_node = rclpy.create_node("smoke_xproc_client", context=ros_context)
        client = client_node.create_client(ProposePlacements, "smoke/propose_placements_xproc")
        executor = MultiThreadedExecutor(num_threads=2, context=ros_context)
        executor.add_node(client_node)
        spin_in_thread(executor)

        assert client.wait_for_service(timeout_sec=TIMEOUT), "server process not discovered"
        # Resent while unanswered: the first reply of a fresh pair can be lost (see call_sync).
        request = ProposePlacements.Request(domain="cabinet", state=[1.0, 2.0, 3.0])
        reply = call_sync(client, request, timeout=TIMEOUT, resend_every=1.0)
        assert reply.result == ProposePlacements.Response.RESULT_OK
        assert [(p.x, p.y, p.z) for p in reply.proposals] == [(3.0, 2.0, 0.0)]
    finally:
        server.send_signal(signal.SIGINT)
        try:
            output, _ = server.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            output, _ = server.communicate()
    assert "ready" in output, output


class _DropsFirstRequests:
    """A stand-in for an rclpy client whose first `dropped` requests get no reply, as in the race."""

    srv_name = "/fake/propose_placements"

    def __init__(self, dropped: int):
        self.dropped, self.sent, self.removed = dropped, 0, []

    def call_async(self, request):
        from rclpy.task import Future

        future, self.sent = Future(), self.sent + 1
        if self.sent > self.dropped:
            threading.Timer(0.05, future.set_result, args=(f"reply to request {self.sent}",)).start()
        return future

    def remove_pending_request(self, future):
        self.removed.append(future)


def test_call_sync_resends_until_a_reply_comes():
    client = _DropsFirstRequests(dropped=2)
    assert call_sync(client, "request", timeout=5.0, resend_every=0.2) == "reply to request 3"
    assert client.sent == 3 and len(client.removed) == 2  # the two unanswered ones are forgotten


def test_call_sync_without_resend_sends_once_and_times_out():
    client = _DropsFirstRequests(dropped=1)
    with pytest.raises(TimeoutError, match="/fake/propose_placements did not answer within 0.3 s"):
        call_sync(client, "request", timeout=0.3)
    assert client.sent == 1 and len(client.removed) == 1
