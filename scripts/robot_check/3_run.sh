#!/usr/bin/env bash
# 3. The README robot section against the built workspace, with the real ros2 CLI and ros2 launch.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd $CHECK/ws
set +u; source install/setup.bash; set -u
M=$CHECK/models; export HOME=$CHECK/home; mkdir -p $HOME
step() { echo; echo "== $*"; }
step "ros2 run dualdiff_ros dualdiff train (quick recipe, cabinet)"
[ -f $M/cabinet/general.safetensors ] || ros2 run dualdiff_ros dualdiff train --domain cabinet --model-dir $M --recipe quick 2>&1 | tail -2
step "ros2 launch dualdiff_ros dualdiff.launch.py model_dir:=$M namespace:=robot1"
# a background job of a non-interactive shell ignores SIGINT: restore it before exec, so Ctrl-C reaches launch
( trap - INT; exec ros2 launch dualdiff_ros dualdiff.launch.py model_dir:=$M namespace:=robot1 ) > $CHECK/launch.log 2>&1 &
LAUNCH=$!
for i in $(seq 90); do [ "$(grep -c "lifecycle: active" $CHECK/launch.log)" -ge 3 ] && break; sleep 1; done
grep "lifecycle:" $CHECK/launch.log | sed "s/\[[0-9.]*\] //"
step "a second robot side by side: namespace:=robot2 (its own HOME, so its own observation store)"
mkdir -p $CHECK/home2
( trap - INT; export HOME=$CHECK/home2; exec ros2 launch dualdiff_ros dualdiff.launch.py model_dir:=$M namespace:=robot2 ) > $CHECK/launch2.log 2>&1 &
LAUNCH2=$!
for i in $(seq 90); do [ "$(grep -c "lifecycle: active" $CHECK/launch2.log)" -ge 3 ] && break; sleep 1; done
for r in robot1 robot2; do echo "$r: $(ros2 service call /$r/dualdiff/propose_placements dualdiff_interfaces/srv/ProposePlacements "{domain: cabinet, state: [1.0, 2.0, 0.5], num_samples: 2, mode: general}" 2>&1 | grep -o "result=[0-9]*")"; done
ros2 node list --no-daemon 2>&1 | sort
kill -INT $LAUNCH2; wait $LAUNCH2; echo "robot2 launch exit code $?"
step "ros2 lifecycle get"
for n in general_prior_node specialized_model_node placement_proposal_node; do echo "$n: $(ros2 lifecycle get /robot1/$n 2>&1)"; done
step "ros2 service list (namespaced)"
ros2 service list --no-daemon 2>&1 | grep -E "dualdiff/|record|evaluate|generate|reload" | grep -v "_action"
step "ros2 action list"
ros2 action list 2>&1
step "ros2 service call /robot1/dualdiff/propose_placements"
ros2 service call /robot1/dualdiff/propose_placements dualdiff_interfaces/srv/ProposePlacements \
  "{domain: cabinet, state: [1.0, 2.0, 0.5], num_samples: 5, mode: joint, seed: 0}" 2>&1 | grep -o "result=[0-9]*, message='[^']*'\|mode_used='[^']*'\|general_version='[^']*'" | head -3
step "ros2 topic echo --once /robot1/dualdiff/proposals (while a request is served)"
( sleep 3; ros2 service call /robot1/dualdiff/propose_placements dualdiff_interfaces/srv/ProposePlacements \
  "{header: {frame_id: odom, stamp: {sec: 42}}, domain: cabinet, state: [1.0, 2.0, 0.5], num_samples: 2, mode: general, seed: 3}" > /dev/null 2>&1 ) &
timeout 30 ros2 topic echo --once /robot1/dualdiff/proposals dualdiff_interfaces/msg/PlacementProposals 2>&1 | head -8
step "record 8 observations, then the training action with feedback"
for i in $(seq 8); do
  ros2 service call /robot1/specialized_model_node/record_observation dualdiff_interfaces/srv/RecordObservation \
    "{domain: cabinet, state: [1.0, 2.0, 0.5], target: [0.$i, 1.5, 0.7]}" 2>&1 | grep -o "result=[0-9]*" | tr '\n' ' '
done; echo
timeout 120 ros2 action send_goal --feedback /robot1/dualdiff/train_specialized dualdiff_interfaces/action/TrainSpecialized "{domain: cabinet}" 2>&1 | grep -v "^$" | grep -E "Goal|status|result|version|step: (1|[0-9]*0)$" | tail -8
step "the simulator's evaluation action (ring baseline) with feedback"
timeout 120 ros2 action send_goal --feedback /robot1/simulator_node/evaluate_proposals dualdiff_interfaces/action/EvaluateProposals "{mode: ring, num_states: 3, samples_per_state: 4, seed: 1}" 2>&1 | grep -E "Goal|stage|states_done|status|validity_rate" | tail -6
step "ros2 param get / lifecycle deactivate -> refusal"
ros2 param get /robot1/placement_proposal_node max_samples 2>&1
ros2 lifecycle set /robot1/placement_proposal_node deactivate 2>&1
ros2 service call /robot1/dualdiff/propose_placements dualdiff_interfaces/srv/ProposePlacements "{domain: cabinet, state: [1.0, 2.0, 0.5], num_samples: 5}" 2>&1 | grep -o "result=[0-9]*, message='[^']*'"
step "/diagnostics (absolute)"
timeout 20 ros2 topic echo --once /diagnostics diagnostic_msgs/msg/DiagnosticArray 2>&1 | grep -E "name:|hardware_id" | head -2
step "Ctrl-C"
kill -INT $LAUNCH; wait $LAUNCH; echo "launch exit code $?"
grep -E "process has finished cleanly|exit code|ERROR|Traceback" $CHECK/launch.log | head -8
