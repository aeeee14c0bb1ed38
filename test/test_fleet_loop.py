"""The fleet loop end to end for a built-in domain: two robots' observations -> Parquet -> one prior -> served.

Robot 1's observations are in its database; robot 2's come as a recorded bag, imported first. Both
export, a prior trains on the two exports through `dualdiff train --spec`, and a third robot's
placement node serves it over DDS.
"""
import numpy as np
import pytest
import rclpy
import yaml
from dualdiff_interfaces.srv import ProposePlacements
from nodes_support import TIMEOUT, call
from test_observation_exchange import write_bag

from dualdiff_ros.bringup import start_nodes, stop_nodes
from dualdiff_ros.cli import main as cli_main
from dualdiff_ros.diffusion.checkpoint import read_header
from dualdiff_ros.domains.spec import builtin_spec
from dualdiff_ros.learning import ObservationStore
from dualdiff_ros.nodes.topics import PROPOSE_SERVICE


def cabinet_rows(n, seed):
    """What a robot observes in the cabinet domain: plates anywhere in the cabinet's box."""
    rng = np.random.default_rng(seed)
    states = rng.uniform([-4, -4, 0], [6, 6, 3], size=(n, 3))
    return states, states + rng.uniform([-1, -1, 0], [1, 1, 1], size=(n, 3))


@pytest.fixture
def fleet_prior(tmp_path):
    s1, t1 = cabinet_rows(400, 1)
    with ObservationStore(tmp_path / "robot1.db") as store:
        store.add_many(("cabinet", "", s.tolist(), t.tolist(), None) for s, t in zip(s1, t1))
    s2, t2 = cabinet_rows(400, 2)
    write_bag(tmp_path / "robot2_bag", [("cabinet", "", s.tolist(), t.tolist(), (1_800_000_000 + i, 0))
                                        for i, (s, t) in enumerate(zip(s2, t2))], "MCAP")
    assert cli_main(["observations", "import", str(tmp_path / "robot2_bag"), "--db", str(tmp_path / "robot2.db")]) == 0
    for robot in ("robot1", "robot2"):
        assert cli_main(["observations", "export", "--db", str(tmp_path / f"{robot}.db"), "--output",
                         str(tmp_path / "exports" / f"{robot}.parquet"), "--robot-id", robot]) == 0
    # The built-in cabinet spec with sizes of its own for this small fleet (the spec's `recipes`).
    spec = builtin_spec("cabinet").to_dict()
    spec["recipes"] = {"quick": {"width": 64, "depth": 2, "general_epochs": 100, "general_batch_size": 128}}
    (tmp_path / "cabinet.yaml").write_text(yaml.safe_dump(spec))
    models = tmp_path / "models"
    assert cli_main(["--threads", "1", "train", "--spec", str(tmp_path / "cabinet.yaml"), "--data",
                     str(tmp_path / "exports"), "--model-dir", str(models), "--recipe", "quick"]) == 0
    return models


def test_two_robots_record_export_train_and_a_third_serves(fleet_prior, ros_context, spin_in_thread):
    header = read_header(fleet_prior / "cabinet" / "general.safetensors")["metadata"]
    assert header["fleet_data"]["rows"] == 800 and header["fleet_data"]["robots"] == 2
    executor, nodes = start_nodes(ros_context, "config/bringup.yaml", str(fleet_prior),
                                  nodes=("placement_proposal_node",))
    probe = rclpy.create_node("fleet_loop_probe", context=ros_context)
    executor.add_node(probe)
    spin_in_thread(executor)
    try:
        client = probe.create_client(ProposePlacements, PROPOSE_SERVICE)
        assert client.wait_for_service(timeout_sec=TIMEOUT), "proposal service not discovered"
        state = [1.0, 2.0, 1.0]
        reply = call(client, ProposePlacements.Request(domain="cabinet", state=state, num_samples=32,
                                                       mode="general", seed=3))
        assert reply.result == ProposePlacements.Response.RESULT_OK, reply.message
        assert reply.general_version == header["version"]
        offsets = np.array([[p.x, p.y, p.z] for p in reply.proposals]) - state
        inside = np.all((offsets >= [-1.3, -1.3, -0.3]) & (offsets <= [1.3, 1.3, 1.3]), axis=1)
        assert inside.mean() >= 0.6, f"{inside.mean():.2f} of the proposals near the cabinet's box"
    finally:
        stop_nodes(executor, [*nodes, probe])
