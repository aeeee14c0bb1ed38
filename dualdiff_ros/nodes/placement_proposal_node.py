"""Placement proposal node: serves dualdiff/propose_placements (docs/ros_interfaces.md, "Contract").

Glue around serving.PlacementService, which checks every request and holds the policy: this
node declares its settings as parameters, loads models from disk when configured and from
announcements on dualdiff/model_info afterwards (off the request path, swapped in
atomically, so a request always runs on the pair it started with), and turns requests and
answers into messages. A bad request is a RESULT_* with a message; the node never goes down.
A lifecycle node: configure loads, activate serves, deactivate refuses (RESULT_MODEL_UNAVAILABLE
naming the state), cleanup releases the models.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from dualdiff_interfaces.msg import HomeContext, ModelInfo, PlacementProposals
from dualdiff_interfaces.srv import ProposePlacements
from geometry_msgs.msg import Point, PoseStamped, Quaternion
from nav_msgs.msg import OccupancyGrid
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from .. import serving
from ..diffusion.checkpoint import CheckpointError
from ..domains.spec import NAME
from ..maps import OccupancyMap, quaternion_to_yaw, yaw_to_quaternion
from ..spec_training import catalogue
from .checks import check_sampling_settings
from .lifecycle import lifecycle_state, log_transition, publish_diagnostics, spin_node
from .parameters import all_or_none_parameters, declare, declare_autostart, declare_settings, settings_values
from .topics import (
    HOME_CONTEXT_DEPTH,
    HOME_CONTEXT_TOPIC,
    MODEL_INFO_TOPIC,
    PROPOSAL_MARKERS_TOPIC,
    PROPOSALS_TOPIC,
    PROPOSE_SERVICE,
    latched_qos,
)

NODE_NAME = "placement_proposal_node"
Response = ProposePlacements.Response


@dataclass
class Stats:
    served: int = 0
    rejected: int = 0
    internal_errors: int = 0
    refused_models: int = 0
    last_latency_ms: float = float("nan")


class PlacementProposalNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, start_parameter_services=False, **kwargs)
        all_or_none_parameters(self)
        declare(self, "model_dir", "~/.dualdiff/models",
                "ModelStore folder scanned at start; later models arrive on /dualdiff/model_info "
                "(only files under this folder are accepted).", read_only=True)
        declare_settings(self, serving.SETTINGS)
        declare(self, "frame_id", "map", "Frame of state, map and poses when a request's header leaves frame_id empty.")
        declare(self, "marker_frame", "", "frame_id of the proposal markers; empty = the request's frame.")
        declare(self, "marker_scale", 0.1, "Diameter of a proposal sphere, metres.", float_range=(0.001, 10.0))
        declare_autostart(self)
        self.service = serving.PlacementService(self.get_parameter("model_dir").value,
                                                settings_values(self, serving.SETTINGS))
        self.models = self.service.slots
        self.stats = Stats()
        self.add_on_set_parameters_callback(lambda params: check_sampling_settings(self, serving.SETTINGS, params))
        self.add_post_set_parameters_callback(self._parameters_changed)

        # Inference on one thread (torch models are not thread-safe); loading and health elsewhere.
        self._inference_group = MutuallyExclusiveCallbackGroup()
        self._models_group = MutuallyExclusiveCallbackGroup()
        self._health_group = MutuallyExclusiveCallbackGroup()
        self.marker_publisher = self.create_publisher(MarkerArray, PROPOSAL_MARKERS_TOPIC, 1)
        # What the robot was told, for rosbag: every RESULT_OK answer, stamped, in the request's frame.
        self.proposals_publisher = self.create_publisher(PlacementProposals, PROPOSALS_TOPIC, 10)
        self._model_info_subscription = self._context_subscription = None
        # The service exists in every state, so a request to an idle node gets a reason, not silence.
        self.create_service(ProposePlacements, PROPOSE_SERVICE, self._on_propose,
                            callback_group=self._inference_group)
        self.diagnostics_publisher = publish_diagnostics(self, self._health, callback_group=self._health_group)

    # ---- lifecycle ---------------------------------------------------------------------------
    def on_configure(self, state) -> TransitionCallbackReturn:
        self._load_from_disk()
        self._model_info_subscription = self.create_subscription(
            ModelInfo, MODEL_INFO_TOPIC, self._on_model_info, latched_qos(), callback_group=self._models_group)
        self._context_subscription = self.create_subscription(
            HomeContext, HOME_CONTEXT_TOPIC, self._on_home_context, latched_qos(HOME_CONTEXT_DEPTH),
            callback_group=self._models_group)
        log_transition(self, "configured (inactive)")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        log_transition(self, "active")
        return super().on_activate(state)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        log_transition(self, "inactive")
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self._release()
        log_transition(self, "cleaned up (unconfigured)")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        self._release()
        log_transition(self, "shut down (finalized)")
        return TransitionCallbackReturn.SUCCESS

    def _release(self) -> None:
        for name in ("_model_info_subscription", "_context_subscription"):
            if getattr(self, name) is not None:
                self.destroy_subscription(getattr(self, name))
                setattr(self, name, None)
        self.models.clear()
        self.get_logger().info("models released")

    # ---- parameters -------------------------------------------------------------------------
    def _parameters_changed(self, params) -> None:
        names = {s.name for s in serving.SETTINGS}
        if any(p.name in names for p in params):
            self.service.configure(settings_values(self, serving.SETTINGS))
            self.get_logger().info("settings changed: " + ", ".join(f"{p.name}={p.value}" for p in params))

    # ---- models ------------------------------------------------------------------------------
    def _load_from_disk(self) -> None:
        """Every domain of model_dir (spec_training.catalogue: the built-in ones, each whose prior carries a spec)."""
        store = self.service.store
        domains = list(catalogue(store.root))
        for domain in domains:
            path = store.general_path(domain)
            if path.exists():
                self._load("general", domain, "", path)
            else:
                self.get_logger().info(f"no general prior for {domain} at {path} (waiting for an announcement)")
        for domain, task, path in store.specialized_checkpoints(domains):
            self._load("specialized", domain, task, path)
        for domain in domains:
            if store.home_aware_path(domain).exists():
                self._load(serving.HOME_AWARE, domain, "", store.home_aware_path(domain))

    def _on_home_context(self, msg: HomeContext) -> None:
        """A home's observations as the specialized node summarized them (the home-aware prior reads them)."""
        try:
            self.service.contexts.put(msg.domain, msg.task, int(msg.count), list(msg.summary),
                                      [(p.x, p.y, p.z) for p in msg.points])
        except ValueError as err:
            self.get_logger().warning(f"ignored a home context for {serving.quote(msg.domain)}: {err}",
                                      throttle_duration_sec=10.0)

    def _on_model_info(self, msg: ModelInfo) -> None:
        """Load an announced model; a domain new to this node is served from then on (its spec is in the file)."""
        if msg.role not in ("general", "specialized", serving.HOME_AWARE) or not NAME.fullmatch(msg.domain):
            self._refuse_model(f"ignoring announcement of {serving.quote(msg.role)} model for "
                               f"{serving.quote(msg.domain)}: not a domain name or not a role (general, "
                               f"specialized, {serving.HOME_AWARE})")
            return
        self._load(msg.role, msg.domain, msg.task if msg.role == "specialized" else "", Path(msg.checkpoint_path))

    def _load(self, role: str, domain: str, task: str, path: Path) -> bool:
        """Verify and load a checkpoint into its slot (every time: a file can change in place); False if refused."""
        key = (role, domain, task)
        try:
            model = serving.load_for_slot(role, domain, task, path, self.service.store.root)
        except (CheckpointError, OSError, ValueError) as err:
            self.models.refuse(key, str(err))
            self._refuse_model(f"refused {role} model for {domain}{'/' + task if task else ''}: {err}; "
                               "keeping the previous one")
            return False
        version = model.metadata.get("version", "")
        if version == self.models.version(key):
            return True
        self.models.put(key, model)
        label = f"{domain}/{task}" if task else domain
        self.get_logger().info(f"loaded {role} model {label}: version {version} from {path}")
        return True

    def _refuse_model(self, message: str) -> None:
        """One line per refusal reason and 10 s at most: a flood of forged announcements cannot flood the log."""
        self.stats.refused_models += 1
        self.get_logger().error(message, throttle_duration_sec=10.0)

    # ---- the service -------------------------------------------------------------------------
    def _on_propose(self, request, response):
        start = time.perf_counter()
        try:
            state = lifecycle_state(self)
            if state != "active":
                raise serving.Refused(Response.RESULT_MODEL_UNAVAILABLE,
                                      serving.not_active(self.get_fully_qualified_name(), state))
            frame = request.header.frame_id or self.get_parameter("frame_id").value
            grid = grid_from(request.map, frame, int(self.get_parameter("map.max_cells").value))
            answer = self.service.answer(request.domain, request.task, request.mode, request.state,
                                         int(request.num_samples), int(request.seed), grid,
                                         float(request.min_separation))
            _fill(response, answer, frame, request.header.stamp)
            self.stats.served += 1
            self._publish_proposals(request, response, frame)
            self._publish_markers(response, frame)
        except serving.Refused as refused:
            response = Response(result=refused.result, message=str(refused))
            self.stats.rejected += 1
            self.get_logger().info(f"refused request ({serving.quote(request.domain)}, mode "
                                   f"{serving.quote(request.mode)}): {refused}", throttle_duration_sec=1.0)
        except Exception as err:  # the node outlives any one request
            response = Response(result=Response.RESULT_INTERNAL_ERROR,
                                message=f"internal error: {type(err).__name__}: {err}")
            self.stats.internal_errors += 1
            self.get_logger().error(f"request ({serving.quote(request.domain)}) failed: {err!r}",
                                    throttle_duration_sec=1.0)
        latency = 1e3 * (time.perf_counter() - start)
        self.stats.last_latency_ms = latency
        self.get_logger().debug(f"{serving.quote(request.domain)} x{request.num_samples}: "
                                f"result {response.result} in {latency:.1f} ms")
        return response

    # ---- what others see ---------------------------------------------------------------------
    def _publish_markers(self, response, request_frame: str) -> None:
        """RViz: clear the last proposals, then one sphere per proposal, red (low) to green (high score).

        Building a marker per proposal costs about as much as the service call itself, so it is
        skipped while nobody subscribes.
        """
        if self.marker_publisher.get_subscription_count() == 0:
            return
        frame = self.get_parameter("marker_frame").value or request_frame
        scale = float(self.get_parameter("marker_scale").value)
        stamp = self.get_clock().now().to_msg()
        clear = Marker(action=Marker.DELETEALL, ns="dualdiff_proposals")
        clear.header.frame_id, clear.header.stamp = frame, stamp
        scores = np.asarray(response.scores, dtype=np.float64)
        span = float(scores.max() - scores.min()) if len(scores) else 0.0
        markers = [clear]
        for i, (point, score) in enumerate(zip(response.proposals, scores)):
            level = (score - scores.min()) / span if span > 0 else 1.0
            m = Marker(ns="dualdiff_proposals", id=i, type=Marker.SPHERE, action=Marker.ADD,
                       color=ColorRGBA(r=float(1 - level), g=float(level), b=0.2, a=0.9))
            m.header.frame_id, m.header.stamp = frame, stamp
            m.pose.position = point
            m.pose.orientation.w = 1.0
            m.scale.x = m.scale.y = m.scale.z = scale
            markers.append(m)
        self.marker_publisher.publish(MarkerArray(markers=markers))

    def _publish_proposals(self, request, response, frame: str) -> None:
        msg = PlacementProposals(domain=request.domain, task=request.task, mode_used=response.mode_used,
                                 state=[float(v) for v in request.state], proposals=response.proposals,
                                 poses=[p.pose for p in response.poses], scores=response.scores,
                                 general_version=response.general_version,
                                 specialized_version=response.specialized_version)
        stamp = request.header.stamp
        msg.header.frame_id = frame
        msg.header.stamp = stamp if (stamp.sec or stamp.nanosec) else self.get_clock().now().to_msg()
        self.proposals_publisher.publish(msg)

    def _health(self):
        versions = self.models.versions()
        any_general = any(k.startswith("general") for k in versions)
        level = DiagnosticStatus.OK if any_general else DiagnosticStatus.WARN
        message = f"{len(versions)} models loaded" if any_general else (
            "no general prior loaded: requests get RESULT_MODEL_UNAVAILABLE until one is announced")
        values = {"models_loaded": str(len(versions)), "requests_served": str(self.stats.served),
                  "requests_rejected": str(self.stats.rejected),
                  "internal_errors": str(self.stats.internal_errors),
                  "models_refused": str(self.stats.refused_models),
                  "last_latency_ms": f"{self.stats.last_latency_ms:.1f}"}
        values.update({f"version/{k}": v for k, v in versions.items()})
        return level, message, values


def grid_from(msg: OccupancyGrid, frame: str, max_cells: int | None = None) -> OccupancyMap | None:
    """The request's map (None when its data is empty); Refused naming the bad field or a map over `max_cells`."""
    if len(msg.data) == 0:
        return None
    if max_cells is not None:  # before any pass over the cells
        serving.check_map_size(msg.info.width, msg.info.height, {"map.max_cells": max_cells})
    invalid = Response.RESULT_INVALID_REQUEST
    if msg.header.frame_id and msg.header.frame_id != frame:
        raise serving.Refused(invalid, f"map.header.frame_id {serving.quote(msg.header.frame_id)} differs from the "
                              f"request's frame {serving.quote(frame)}: send the map in the state's frame")
    info = msg.info
    p, q = info.origin.position, info.origin.orientation
    if not all(math.isfinite(v) for v in (p.x, p.y, q.x, q.y, q.z, q.w)):
        raise serving.Refused(invalid, "map.info.origin is not finite: every number of the pose must be finite")
    try:
        return OccupancyMap.from_flat(np.frombuffer(msg.data, dtype=np.int8), info.width, info.height,
                                      info.resolution, p.x, p.y, float(quaternion_to_yaw([q.x, q.y, q.z, q.w])))
    except ValueError as err:
        raise serving.Refused(invalid, f"map: {err} (map.info width, height, resolution and data must agree)") from err


def _fill(response, answer: serving.Answer, frame: str, stamp) -> None:
    """An Answer into the reply message: proposals, one pose per proposal in the request's frame, diagnostics."""
    response.result = Response.RESULT_OK
    response.message = answer.message
    response.proposals = [Point(x=float(t[0]), y=float(t[1]), z=float(t[2]) if len(t) > 2 else 0.0)
                          for t in answer.proposals]
    response.scores = [float(s) for s in answer.scores]
    response.mode_used = answer.mode_used
    diag = answer.diagnostics
    response.effective_sample_size_fraction = float(diag.get("ess_fraction", 1.0))
    response.log_overlap = float(diag.get("log_overlap", float("nan")))
    response.score_cosine = float(diag.get("score_cosine", float("nan")))
    response.general_agreement = float(diag.get("general_agreement", float("nan")))
    response.general_version = answer.general_version
    response.specialized_version = answer.specialized_version
    response.candidates_drawn, response.candidates_valid = answer.candidates_drawn, answer.candidates_valid
    yaws = answer.yaws if answer.yaws is not None else np.zeros(len(answer.proposals))
    quaternions = yaw_to_quaternion(yaws).reshape(-1, 4)
    poses = []
    for point, (qx, qy, qz, qw) in zip(response.proposals, quaternions):
        pose = PoseStamped()
        pose.header.frame_id, pose.header.stamp = frame, stamp
        pose.pose.position = point
        pose.pose.orientation = Quaternion(x=float(qx), y=float(qy), z=float(qz), w=float(qw))
        poses.append(pose)
    response.poses = poses


def main(args=None) -> int:
    return spin_node(PlacementProposalNode, args)
