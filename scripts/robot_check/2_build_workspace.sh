#!/usr/bin/env bash
# 2. The README's robot build on a fresh clone of the committed branch: rosdep, colcon.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
BRANCH=${BRANCH:-$(git -C $REPO rev-parse --abbrev-ref HEAD)}
rm -rf $CHECK/ws && mkdir -p $CHECK/ws/src && git clone -q -b $BRANCH $REPO $CHECK/ws/src/dualdiff_ros
cd $CHECK/ws
echo "== colcon list (the root package hides the nested interfaces)"; colcon list
echo "== the old README command"
colcon --log-base $CHECK/oldlog build --build-base $CHECK/oldbuild --install-base $CHECK/oldinstall \
  --packages-select dualdiff_interfaces dualdiff_ros --packages-skip-regex '.*' 2>&1 | grep -i "ignoring unknown"
# rosdep as on a robot: nothing of ours installed (this machine's venv holds dualdiff_interfaces)
for paths in "src" "src src/dualdiff_ros/interfaces"; do
  echo "== rosdep install --simulate --from-paths $paths --ignore-src"
  env -u AMENT_PREFIX_PATH -u CMAKE_PREFIX_PATH rosdep install --simulate --from-paths $paths --ignore-src -y \
    --os=ubuntu:noble 2>&1 | grep -v "^#\|^$" | head -40
done
echo "== colcon build (README)"
colcon build --base-paths src src/dualdiff_ros/interfaces --packages-select dualdiff_interfaces dualdiff_ros \
  --cmake-args -DPython3_EXECUTABLE=$VIRTUAL_ENV/bin/python 2>&1 | tail -3
echo "build rc ${PIPESTATUS[0]}"
