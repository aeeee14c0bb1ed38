"""Two robots on one ROS graph: namespaced bring-ups side by side do not see each other.

Every name of the nodes is relative, so `namespace="robot1"` puts the service at
/robot1/dualdiff/propose_placements and the latched announcements at /robot1/dualdiff/model_info.
"""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import rclpy
from dualdiff_interfaces.srv import ProposePlacements
from nodes_support import TIMEOUT, call, tiny_models

from dualdiff_ros.bringup import start_nodes, stop_nodes

ROOT = Path(__file__).resolve().parent.parent
Response = ProposePlacements.Response
REQUEST = ProposePlacements.Request(domain="cabinet", state=[1.0, 2.0, 1.0], num_samples=3, mode="general", seed=1)
MODEL_NODES = ("general_prior_node", "specialized_model_node", "placement_proposal_node")


def test_two_namespaced_bringups_side_by_side(ros_context, spin_in_thread, tmp_path_factory, tmp_path, wait_for):
    robot1 = shutil.copytree(tiny_models(tmp_path_factory), tmp_path / "robot1")
    robot2 = tmp_path / "robot2"  # a robot whose prior is not installed yet
    started = []
    for name, model_dir in (("robot1", robot1), ("robot2", robot2)):
        started.append(start_nodes(ros_context, "config/bringup.yaml", str(model_dir), nodes=MODEL_NODES,
                                   namespace=name, overrides={"specialized_model_node": {
                                       "db_path": str(tmp_path / f"{name}.sqlite")}}))
    probe = rclpy.create_node("namespace_probe", context=ros_context)
    started[0][0].add_node(probe)
    for executor, _ in started:
        spin_in_thread(executor)
    try:
        clients = {name: probe.create_client(ProposePlacements, f"/{name}/dualdiff/propose_placements")
                   for name in ("robot1", "robot2")}
        assert all(c.wait_for_service(timeout_sec=TIMEOUT) for c in clients.values())
        first = call(clients["robot1"], REQUEST)
        assert first.result == Response.RESULT_OK, first.message
        second = call(clients["robot2"], REQUEST)
        assert second.result == Response.RESULT_MODEL_UNAVAILABLE  # robot1's prior never reached robot2

        proposal2 = started[1][1][2]
        assert proposal2.get_fully_qualified_name() == "/robot2/placement_proposal_node"
        assert proposal2.stats.refused_models == 0  # robot1's announcements never arrived there either
        topics = dict(probe.get_topic_names_and_types())
        assert "/robot1/dualdiff/model_info" in topics and "/robot2/dualdiff/model_info" in topics
        assert "/dualdiff/model_info" not in topics
        services = dict(probe.get_service_names_and_types())
        assert "/dualdiff/propose_placements" not in services
        assert "/robot1/specialized_model_node/record_observation" in services
        assert wait_for(lambda: "/diagnostics" in dict(probe.get_topic_names_and_types()), TIMEOUT)
    finally:
        for executor, nodes in reversed(started):
            stop_nodes(executor, nodes)
        probe.destroy_node()


def test_the_bringup_command_takes_a_namespace(ros_context, tmp_path, wait_for):
    process = subprocess.Popen(
        [sys.executable, "-m", "dualdiff_ros.bringup", "--config", str(ROOT / "config" / "bringup.yaml"),
         "--model-dir", str(tmp_path / "m"), "--namespace", "robot1", "--nodes", "placement_proposal_node"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, HOME=str(tmp_path)), cwd=ROOT)
    probe = rclpy.create_node("bringup_namespace_probe", context=ros_context)
    try:
        def served():
            return "/robot1/dualdiff/propose_placements" in dict(probe.get_service_names_and_types())
        assert wait_for(served, 60), "no /robot1/dualdiff/propose_placements"
        assert "/dualdiff/propose_placements" not in dict(probe.get_service_names_and_types())
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        probe.destroy_node()
