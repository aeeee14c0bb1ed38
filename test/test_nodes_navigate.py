"""Navigate-to through the real placement node over DDS: a map in, poses out, bad maps named."""
import math

import numpy as np
import pytest
import rclpy
from dualdiff_interfaces.srv import ProposePlacements
from nav_msgs.msg import OccupancyGrid
from nodes_support import TIMEOUT, Inbox, call, tiny_navigate_models

from dualdiff_ros.bringup import start_nodes, stop_nodes
from dualdiff_ros.maps import OccupancyMap
from dualdiff_ros.navigate_to import MapCheck
from dualdiff_ros.nodes.simulator_node import occupancy_grid
from dualdiff_ros.nodes.topics import PROPOSE_SERVICE, SCENE_MAP_TOPIC, latched_qos
from dualdiff_ros.sim.perception import step_map
from dualdiff_ros.sim.scene import generate_scene

Response = ProposePlacements.Response


@pytest.fixture(scope="module")
def scene():
    scene = generate_scene(3, 0)
    rect = scene.object_rects[scene.steps[0].object_index]
    return [*map(float, rect[:2]), *map(float, rect[2:4]), float(rect[4]), 0.0, 3.0, 3.0, 0.0, 1.0], step_map(scene, 0)


@pytest.fixture
def served(ros_context, spin_in_thread, tmp_path_factory):
    executor, nodes = start_nodes(ros_context, "config/bringup.yaml", str(tiny_navigate_models(tmp_path_factory)),
                                  nodes=("placement_proposal_node", "simulator_node"),
                                  overrides={"simulator_node": {"scene_seed": 3},
                                             # a small robot: the tiny test models are poor, the plumbing is tested
                                             "placement_proposal_node": {"robot.radius": 1.0}})
    probe = rclpy.create_node("navigate_probe", context=ros_context)
    executor.add_node(probe)
    spin_in_thread(executor)
    client = probe.create_client(ProposePlacements, PROPOSE_SERVICE)
    assert client.wait_for_service(timeout_sec=TIMEOUT)
    yield probe, client
    stop_nodes(executor, [*nodes, probe])


def _request(state, grid_msg=None, frame="map", **fields):
    req = ProposePlacements.Request(domain="navigate_to", state=state, num_samples=8, seed=5, **fields)
    req.header.frame_id = frame
    req.header.stamp.sec = 42
    if grid_msg is not None:
        req.map = grid_msg
    return req


def test_a_map_from_the_simulator_topic_gives_poses_nav2_can_take(served, scene, wait_for):
    probe, client = served
    state, grid = scene
    maps = Inbox(probe, OccupancyGrid, SCENE_MAP_TOPIC, latched_qos(1))
    assert wait_for(lambda: maps.snapshot(), TIMEOUT), "the simulator node publishes no map"
    msg = maps.snapshot()[-1]
    assert (msg.info.width, msg.info.height, msg.header.frame_id) == (grid.width, grid.height, "map")
    reply = call(client, _request(state, msg))
    assert reply.result == Response.RESULT_OK, reply.message
    assert 1 <= len(reply.poses) == len(reply.proposals) <= 8
    searched = "ring search" in reply.message  # the tiny models may find too few: 4 x 8 ring candidates more
    assert reply.candidates_drawn == 16 + 32 * searched and reply.candidates_valid >= len(reply.poses)
    targets = np.array([[p.x, p.y] for p in reply.proposals])
    assert MapCheck(robot_radius=1.0).valid(grid, np.array(state), targets).all()
    for pose, point in zip(reply.poses, reply.proposals):
        assert pose.header.frame_id == "map" and pose.header.stamp.sec == 42
        assert (pose.pose.position.x, pose.pose.position.y) == (point.x, point.y)
        yaw = 2 * math.atan2(pose.pose.orientation.z, pose.pose.orientation.w)
        facing = math.atan2(state[1] - point.y, state[0] - point.x)
        assert abs(math.remainder(yaw - facing, 2 * math.pi)) < 1e-6


def test_without_a_map_poses_still_come_and_face_the_object(served, scene):
    _, client = served
    state, _ = scene
    reply = call(client, _request(state, frame=""))  # empty frame: the node's frame_id parameter
    assert reply.result == Response.RESULT_OK, reply.message
    assert len(reply.poses) == 8 and reply.candidates_drawn == 8
    assert all(p.header.frame_id == "map" for p in reply.poses)


def _bad(grid: OccupancyMap, **change):
    msg = occupancy_grid(grid, "map", rclpy.clock.Clock().now().to_msg())
    for key, value in change.items():
        if key == "frame":
            msg.header.frame_id = value
        elif key == "data":
            msg.data = value
        elif key == "origin_x":
            msg.info.origin.position.x = value
        else:
            setattr(msg.info, key, value)
    return msg


@pytest.mark.parametrize("change, words", [
    ({"frame": "odom"}, "map.header.frame_id 'odom' differs"),
    ({"width": 0}, "width must be positive"),
    ({"resolution": 0.0}, "resolution must be finite and > 0"),
    ({"resolution": -0.1}, "resolution must be finite and > 0"),
    ({"data": bytes(10)}, "data has 10 cells"),
    ({"origin_x": float("nan")}, "map.info.origin is not finite"),
    ({"width": 100_000, "height": 100_000}, "10000000000 cells, more than map.max_cells = 40000000"),
])
def test_a_bad_map_is_named_and_the_node_serves_on(served, scene, change, words):
    _, client = served
    state, grid = scene
    reply = call(client, _request(state, _bad(grid, **change)))
    assert reply.result == Response.RESULT_INVALID_REQUEST and words in reply.message, reply.message
    assert not reply.proposals and not reply.poses
    assert call(client, _request(state)).result == Response.RESULT_OK


def test_a_map_where_nothing_fits_says_how_many_were_drawn(served, scene):
    _, client = served
    state, grid = scene
    full = OccupancyMap(np.full_like(grid.data, 100), grid.resolution, grid.origin_x, grid.origin_y)
    reply = call(client, _request(state, _bad(full)))
    # 16 sampled, then 32 of the ring search
    assert reply.result == Response.RESULT_NO_VALID_PROPOSAL and "none of the 48 candidates" in reply.message
    assert not reply.poses


def test_a_nav2_costmap_gets_poses_and_the_reply_says_how_it_was_read(served, scene):
    """The map as nav2's global costmap publishes it (inflated for this 1 m robot + 0.55 m), defaults untouched."""
    from dualdiff_ros.maps import nav2_costmap

    _, client = served
    state, grid = scene
    reply = call(client, _request(state, _bad(nav2_costmap(grid, inscribed_radius=1.0))))
    assert reply.result == Response.RESULT_OK, reply.message
    assert "map read as a nav2 costmap" in reply.message and len(reply.poses) >= 1
    targets = np.array([[p.x, p.y] for p in reply.proposals])
    assert MapCheck(robot_radius=1.0).valid(grid, np.array(state), targets).all()
