"""Launch the four dualdiff nodes with config/bringup.yaml.

    ros2 launch dualdiff_ros dualdiff.launch.py [model_dir:=/path/to/models] [config:=/path/to/params.yaml]

Every node gets its section of `config`, then model_dir (default ~/.dualdiff/models) on top.
Without `ros2 launch` (no ROS install), `dualdiff_bringup --config config/bringup.yaml` starts
the same nodes in one process.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    config = LaunchConfiguration("config")
    model_dir = {"model_dir": LaunchConfiguration("model_dir")}
    return LaunchDescription([
        DeclareLaunchArgument(
            "config", default_value=PathJoinSubstitution([FindPackageShare("dualdiff_ros"), "config", "bringup.yaml"]),
            description="ROS parameter file with one section per node"),
        DeclareLaunchArgument(
            "model_dir", default_value="~/.dualdiff/models",
            description="ModelStore folder for every node (overrides the config's model_dir)"),
        # Announcers first: the proposal node picks their latched models up when it starts.
        Node(package="dualdiff_ros", executable="general_prior_node", name="general_prior_node",
             parameters=[config, model_dir], output="screen"),
        Node(package="dualdiff_ros", executable="specialized_model_node", name="specialized_model_node",
             parameters=[config, model_dir], output="screen"),
        Node(package="dualdiff_ros", executable="placement_proposal_node", name="placement_proposal_node",
             parameters=[config, model_dir], output="screen"),
        Node(package="dualdiff_ros", executable="simulator_node", name="simulator_node",
             parameters=[config, model_dir], output="screen"),
    ])
