# Shared environment of the robot check (docs/robot_check.md): this repo's .venv for the Jazzy wheels,
# plus launch / launch_ros / ros2cli built from source under $CHECK (never inside the repository).
CHECK=${CHECK:-/tmp/ros2check}
REPO=${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
export VIRTUAL_ENV=$REPO/.venv
export PATH=$CHECK/bin:$CHECK/pylib/bin:$VIRTUAL_ENV/bin:/usr/bin:/bin
export PYTHONPATH=$CHECK/pylib
export AMENT_PREFIX_PATH=$VIRTUAL_ENV CMAKE_PREFIX_PATH=$VIRTUAL_ENV
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-77} ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST DUALDIFF_THREADS=1
# rosdep against a local copy of ros/rosdistro (no rosdep init, no network)
export ROSDEP_SOURCE_PATH=$CHECK/rosdep_src ROSDISTRO_INDEX_URL=file://$CHECK/rosdistro/index-local.yaml
export ROS_HOME=$CHECK/roshome ROS_DISTRO=jazzy
if [ -f $CHECK/ci_ws/install/setup.bash ]; then set +u; source $CHECK/ci_ws/install/setup.bash; set -u; fi
