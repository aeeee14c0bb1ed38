"""Names and QoS of what the dualdiff nodes publish and serve.

Names are relative: under a namespace (`dualdiff_bringup --namespace robot1`, the launch file's
`namespace:=robot1`) the service is /robot1/dualdiff/propose_placements; without one it is
/dualdiff/propose_placements, as before. /diagnostics alone stays absolute: the diagnostic
aggregator listens there, and every status names its node's fully qualified name.
"""
from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

MODEL_INFO_TOPIC = "dualdiff/model_info"
TRAINING_PROGRESS_TOPIC = "dualdiff/training_progress"
OBSERVATIONS_TOPIC = "dualdiff/observations"
PROPOSE_SERVICE = "dualdiff/propose_placements"
PROPOSALS_TOPIC = "dualdiff/proposals"
HOME_CONTEXT_TOPIC = "dualdiff/home_context"
HOME_CONTEXT_DEPTH = 64  # latched contexts kept for late joiners: one per (domain, task)
TRAIN_SERVICE = "dualdiff/train_specialized"
TRAIN_ACTION = "dualdiff/train_specialized"  # the action; the service of the same name is its thin wrapper
PROPOSAL_MARKERS_TOPIC = "dualdiff/proposal_markers"
SCENE_MARKERS_TOPIC = "dualdiff/scene_markers"
SCENE_MAP_TOPIC = "dualdiff/scene_map"
DIAGNOSTICS_TOPIC = "/diagnostics"  # absolute on purpose (the aggregator's topic); see the module docstring
DIAGNOSTICS_PERIOD = 1.0

# Latched announcements: every model a node announced stays there for late joiners.
# 64 > (served domains x tasks) on any robot we know of, and covers a few reloads.
MODEL_INFO_DEPTH = 64


def latched_qos(depth: int = MODEL_INFO_DEPTH) -> QoSProfile:
    """Transient-local + reliable: a subscriber that starts later still gets the last `depth` messages."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)
