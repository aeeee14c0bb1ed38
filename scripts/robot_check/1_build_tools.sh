#!/usr/bin/env bash
# 1. Build the real Jazzy launch, launch_ros and ros2 CLI from their public sources into $CHECK.
#    Needs clones (branch jazzy) of ros2/launch, ros2/launch_ros, ros2/ros2cli, ros2/rosidl_runtime_py,
#    ros2/rcl_interfaces under $CHECK/src, and of ros/rosdistro under $CHECK/src/rosdistro.
set -euxo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd $CHECK
PY=$VIRTUAL_ENV/bin/python
rm -rf pylib && mkdir -p pylib bin
$PY -m pip install -q --target pylib osrf-pycommon psutil rosdep
for d in launch/launch launch/launch_xml launch/launch_yaml launch_ros/launch_ros launch_ros/ros2launch \
         rosidl_runtime_py ros2cli/ros2cli ros2cli/ros2run ros2cli/ros2service ros2cli/ros2topic \
         ros2cli/ros2lifecycle ros2cli/ros2action ros2cli/ros2param ros2cli/ros2node ros2cli/ros2pkg; do
  $PY -m pip install -q --no-deps --no-build-isolation --target pylib "src/$d"
done
# rosdep's setuptools must not shadow the venv's (colcon builds the ament_python package with it)
rm -rf pylib/setuptools* pylib/_distutils_hack pylib/distutils-precedence.pth pylib/pkg_resources
printf '#!/usr/bin/env bash\nexec %s -c "import sys; from ros2cli.cli import main; sys.exit(main())" "$@"\n' "$PY" > bin/ros2
chmod +x bin/ros2
# composition_interfaces (launch_ros imports it) built with colcon
rm -rf ci_ws && mkdir -p ci_ws/src && cp -r src/rcl_interfaces/composition_interfaces ci_ws/src/
(cd ci_ws && colcon build --merge-install --cmake-args -DBUILD_TESTING=OFF > ../ci_build.log 2>&1)
# a local rosdep database: rosdistro's base.yaml and python.yaml, the jazzy distribution file
rm -rf rosdistro rosdep_src && mkdir -p rosdistro rosdep_src
cp -r src/rosdistro/rosdep src/rosdistro/jazzy src/rosdistro/index-v4.yaml rosdistro/
$PY - <<PYEOF
import yaml
d = yaml.safe_load(open("$CHECK/rosdistro/index-v4.yaml"))
d["distributions"] = {"jazzy": {**d["distributions"]["jazzy"], "distribution": ["file://$CHECK/rosdistro/jazzy/distribution.yaml"]}}
d["distributions"]["jazzy"].pop("distribution_cache", None)
yaml.safe_dump(d, open("$CHECK/rosdistro/index-local.yaml", "w"))
PYEOF
printf 'yaml file://%s/rosdistro/rosdep/base.yaml\nyaml file://%s/rosdistro/rosdep/python.yaml\n' $CHECK $CHECK > rosdep_src/20-local.list
rosdep update --rosdistro jazzy
echo TOOLS_OK
