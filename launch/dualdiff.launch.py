"""Launch the four dualdiff nodes with config/bringup.yaml, and bring the lifecycle nodes up.

    ros2 launch dualdiff_ros dualdiff.launch.py [model_dir:=/path/to/models] [config:=/path/to/params.yaml]
        [namespace:=robot1] [autostart:=true|false] [rviz:=false|true]

Every node gets its section of `config`, then model_dir (default ~/.dualdiff/models) on top.
The three model nodes are lifecycle nodes: with autostart (the default) each is configured as
soon as its process is up and activated once it is inactive; autostart:=false leaves them
unconfigured for a lifecycle manager. namespace:=robot1 puts every name under /robot1
(/robot1/dualdiff/propose_placements); /diagnostics stays absolute. rviz:=true opens
rviz/dualdiff.rviz. Without `ros2 launch` (no ROS install), `dualdiff_bringup --config
config/bringup.yaml [--namespace robot1]` starts the same nodes in one process.
"""
import lifecycle_msgs.msg
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, RegisterEventHandler
from launch.conditions import IfCondition
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.substitutions import FindPackageShare

# Start order: announcers first, so the proposal node finds their latched models at once.
LIFECYCLE_NODES = ("general_prior_node", "specialized_model_node", "placement_proposal_node")


def _transition(node, transition_id, condition):
    return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=transition_id),
                     condition=condition)


def generate_launch_description():
    config = LaunchConfiguration("config")
    namespace = LaunchConfiguration("namespace")
    autostart = IfCondition(LaunchConfiguration("autostart"))
    # autostart false for the node itself: this launch file, not the node, drives its transitions.
    parameters = [config, {"model_dir": LaunchConfiguration("model_dir")}]
    actions = [
        DeclareLaunchArgument(
            "config", default_value=PathJoinSubstitution([FindPackageShare("dualdiff_ros"), "config", "bringup.yaml"]),
            description="ROS parameter file with one section per node"),
        DeclareLaunchArgument(
            "model_dir", default_value="~/.dualdiff/models",
            description="ModelStore folder for every node (overrides the config's model_dir)"),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of every node, e.g. robot1"),
        DeclareLaunchArgument(
            "autostart", default_value="true",
            description="Configure and activate the lifecycle nodes; false leaves them to a lifecycle manager"),
        DeclareLaunchArgument("rviz", default_value="false", description="Open RViz with rviz/dualdiff.rviz"),
    ]
    for name in LIFECYCLE_NODES:
        node = LifecycleNode(package="dualdiff_ros", executable=name, name=name, namespace=namespace,
                             parameters=[*parameters, {"autostart": False}], output="screen")
        # Once, after the first configure: a later deactivate (by a lifecycle manager or
        # `ros2 lifecycle set`) must stay deactivated.
        activate = RegisterEventHandler(OnStateTransition(
            target_lifecycle_node=node, start_state="configuring", goal_state="inactive", handle_once=True,
            entities=[_transition(node, lifecycle_msgs.msg.Transition.TRANSITION_ACTIVATE, autostart)]))
        # The handler goes first: the configure event must not overtake it.
        actions += [node, activate, _transition(node, lifecycle_msgs.msg.Transition.TRANSITION_CONFIGURE, autostart)]
    actions += [
        Node(package="dualdiff_ros", executable="simulator_node", name="simulator_node", namespace=namespace,
             parameters=parameters, output="screen"),
        Node(package="rviz2", executable="rviz2", name="rviz2", namespace=namespace, output="screen",
             arguments=["-d", PathJoinSubstitution([FindPackageShare("dualdiff_ros"), "rviz", "dualdiff.rviz"])],
             condition=IfCondition(LaunchConfiguration("rviz"))),
    ]
    return LaunchDescription(actions)
