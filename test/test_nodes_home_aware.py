"""The loop a robot runs in a new home, over DDS: record an observation, the next answer uses it.

No training runs: the specialized node publishes the home's context on each acknowledged
observation and the placement node's home-aware prior reads it (docs/ros_interfaces.md).
"""
import shutil
import time

import numpy as np
import pytest
import rclpy
from dualdiff_interfaces.srv import ForgetObservations, ProposePlacements, RecordObservation
from nodes_support import call, tiny_models

from dualdiff_ros.bringup import start_nodes, stop_nodes
from dualdiff_ros.domains.homes import BoxRegion, home_domain
from dualdiff_ros.nodes.topics import PROPOSE_SERVICE
from dualdiff_ros.training_jobs import train_home_aware

STATE = [1.0, 2.0, 0.5]


@pytest.fixture
def robot(ros_context, spin_in_thread, tmp_path_factory, tmp_path):
    model_dir = tmp_path / "models"
    shutil.copytree(tiny_models(tmp_path_factory) / "cabinet", model_dir / "cabinet")
    train_home_aware("cabinet", model_dir, "quick", progress=False)
    executor, nodes = start_nodes(ros_context, "config/bringup.yaml", str(model_dir),
                                  nodes=("specialized_model_node", "placement_proposal_node"),
                                  overrides={"specialized_model_node": {"db_path": str(tmp_path / "obs.sqlite"),
                                                                        "retrain_every": 0}})
    probe = rclpy.create_node("home_probe", context=ros_context)
    executor.add_node(probe)
    spin_in_thread(executor)

    class Robot:
        record = probe.create_client(RecordObservation, "/specialized_model_node/record_observation")
        forget = probe.create_client(ForgetObservations, "/specialized_model_node/forget_observations")
        propose = probe.create_client(ProposePlacements, PROPOSE_SERVICE)
        placement = next(n for n in nodes if n.get_name() == "placement_proposal_node")

    yield Robot
    stop_nodes(executor, nodes)
    probe.destroy_node()


def _ask(robot):
    return call(robot.propose, ProposePlacements.Request(domain="cabinet", state=STATE, num_samples=6, seed=2))


def _until(robot, predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        reply = _ask(robot)
        if predicate(reply) or time.monotonic() > deadline:
            return reply
        time.sleep(0.05)


def test_each_acknowledged_observation_reaches_the_next_answers(robot):
    first = _until(robot, lambda r: r.result == 0)
    assert first.result == 0 and first.mode_used != "home_aware"  # no observations yet: today's answer
    home = home_domain("cabinet", BoxRegion((-1.0, -1.0, 0.0), (0.0, 0.0, 0.5)))
    rng = np.random.default_rng(0)
    seen = []
    for n in (1, 2, 3):
        c = home.sample_conditions(1, rng)
        t = home.sample_specialized_targets(c, rng)
        seen.append(home.region_frame(c, t)[0])
        ack = call(robot.record, RecordObservation.Request(domain="cabinet", state=list(c[0]), target=list(t[0])))
        assert ack.result == 0 and ack.observations_total == n
        reply = _until(robot, lambda r, n=n: f"{n} observation" in r.message)
        assert reply.result == 0 and reply.mode_used == "home_aware", reply.message
        assert f"this home's {n} observation" in reply.message and len(reply.proposals) == 6
    # the context carried the observations themselves (the set encoder reads them), in the home's frame
    np.testing.assert_allclose(robot.placement.service.contexts.get("cabinet", "").points, np.array(seen), atol=1e-9)
    gone = call(robot.forget, ForgetObservations.Request(domain="cabinet", all_of_domain_task=True))
    assert gone.result == 0 and gone.forgotten == 3
    after = _until(robot, lambda r: r.mode_used != "home_aware")
    assert after.mode_used != "home_aware", after.message


def test_dualdiff_adapt_measures_the_time_to_adapt(tmp_path_factory, tmp_path):
    """Two homes through the real nodes, each a new robot (no specialist), beside the offline curve."""
    import math

    from dualdiff_ros.evaluation.adaptation import run_adaptation

    model_dir = tmp_path / "models"
    shutil.copytree(tiny_models(tmp_path_factory) / "cabinet", model_dir / "cabinet")
    train_home_aware("cabinet", model_dir, "quick", progress=False)
    result = run_adaptation(model_dir, tmp_path / "adapt", observations=3, retrain_every=100, score_at=(2,),
                            homes_count=2, score_poses=6)
    rows = result["rows"]
    assert [(r["home"], r["observations"]) for r in rows] == [(h, n) for h in ("thesis", "home1") for n in (1, 2, 3)]
    assert all(math.isfinite(r["context_seconds"]) and r["context_seconds"] < 5 for r in rows)
    assert all(r["answered_by"] == "home_aware" for r in rows)
    assert not (tmp_path / "adapt" / "home1" / "models" / "cabinet" / "specialized.safetensors").exists()
    for r in (r for r in rows if r["observations"] == 2):
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["offline_accuracy"] <= 1 and 1 <= r["looks_to_find"] <= 8
        assert abs(r["accuracy"] - r["offline_accuracy"]) < 0.4  # same checkpoint, observations, served setting
    assert result["summary"][1]["observations"] == 2 and result["summary"][1]["homes"] == 2
    assert "| 2 | 2 |" in (tmp_path / "adapt" / "results.md").read_text()
