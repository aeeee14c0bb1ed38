"""Placement proposal node: serves /dualdiff/propose_placements (the CONTRACT in DESIGN.md).

Every request is checked before the models see it, and every failure is a RESULT_* with a
message naming the bad value and the fix; the node never goes down on a request. Models come
from disk at start and from announcements on /dualdiff/model_info afterwards; an announced
checkpoint is loaded off the request path and swapped in atomically, so a request always runs
on the (general, specialized) pair it started with.
"""
from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from dualdiff_interfaces.msg import ModelInfo
from dualdiff_interfaces.srv import ProposePlacements
from geometry_msgs.msg import Point
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from ..diffusion.checkpoint import CheckpointError, load_checkpoint, read_header
from ..diffusion.composition import METHODS as COMPOSITION_METHODS
from ..diffusion.composition import CompositionConfig
from ..diffusion.proposer import MODES, FallbackPolicy, Proposer, default_sampler
from ..diffusion.sampling import METHODS as SAMPLER_METHODS
from ..diffusion.sampling import SamplerConfig
from ..domains import SERVED_DOMAINS
from ..model_store import ModelStore, check_task
from .common import (
    DIAGNOSTICS_TOPIC,
    MODEL_INFO_TOPIC,
    PROPOSAL_MARKERS_TOPIC,
    PROPOSE_SERVICE,
    TRAIN_HINT,
    TRAIN_SERVICE,
    check_choice,
    check_vector,
    declare,
    latched_qos,
    specialized_checkpoints,
    spin_node,
)

NODE_NAME = "placement_proposal_node"
Response = ProposePlacements.Response
STATE_MEANING = {"cabinet": "the cabinet's x, y, z", "round_table": "the table's x, y, z",
                 "navigate_to": "the 10 navigate-to features"}


class Rejected(Exception):
    """A request we answer with `result` and a message instead of proposals."""

    def __init__(self, result: int, message: str):
        super().__init__(message)
        self.result = result


@dataclass
class Stats:
    served: int = 0
    rejected: int = 0
    internal_errors: int = 0
    last_latency_ms: float = float("nan")


class ModelSlots:
    """Loaded models by (role, domain, task). A request takes its pair in one locked read."""

    def __init__(self):
        self._lock = threading.Lock()
        self._models: dict[tuple[str, str, str], object] = {}

    def put(self, key: tuple[str, str, str], model) -> None:
        with self._lock:
            self._models[key] = model

    def pair(self, domain: str, task: str):
        with self._lock:
            return self._models.get(("general", domain, "")), self._models.get(("specialized", domain, task))

    def version(self, key) -> str:
        with self._lock:
            model = self._models.get(key)
        return model.metadata.get("version", "") if model is not None else ""

    def versions(self) -> dict[str, str]:
        with self._lock:
            items = list(self._models.items())
        return {"/".join(k for k in key if k): m.metadata.get("version", "") for key, m in sorted(items)}


class PlacementProposalNode(Node):
    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self._declare_parameters()
        self.models = ModelSlots()
        self.stats = Stats()
        self.proposer = self._proposer_from({p: self.get_parameter(p).value for p in self._proposer_params()})
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._parameters_changed)

        # Inference on one thread (torch models are not thread-safe); loading and health elsewhere.
        self._inference_group = MutuallyExclusiveCallbackGroup()
        self._models_group = MutuallyExclusiveCallbackGroup()
        self._health_group = MutuallyExclusiveCallbackGroup()
        self.marker_publisher = self.create_publisher(MarkerArray, PROPOSAL_MARKERS_TOPIC, 1)
        self.diagnostics_publisher = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)
        self._load_from_disk()
        self.create_subscription(ModelInfo, MODEL_INFO_TOPIC, self._on_model_info, latched_qos(),
                                 callback_group=self._models_group)
        self.create_service(ProposePlacements, PROPOSE_SERVICE, self._on_propose,
                            callback_group=self._inference_group)
        self.create_timer(1.0, self._publish_diagnostics, callback_group=self._health_group)

    # ---- parameters -------------------------------------------------------------------------
    def _declare_parameters(self) -> None:
        declare(self, "model_dir", "~/.dualdiff/models",
                "ModelStore folder scanned at start; later models arrive on /dualdiff/model_info.",
                read_only=True)
        declare(self, "max_samples", 256, "Most proposals one request may ask for.", int_range=(1, 4096))
        declare(self, "fallback_to_general", True,
                "Answer a joint request from the general prior while no specialized model exists.")
        declare(self, "composition.method", "sum", "How the two experts are composed.",
                choices=COMPOSITION_METHODS)
        declare(self, "composition.general_min_t_fraction", -1.0,
                "Below this fraction of the noise schedule the specialized model refines alone; "
                "-1 = what the general prior's recipe measured best (0.35; 0 for navigate_to).",
                float_range=(-1.0, 1.0))
        declare(self, "composition.weight_general", 1.0, "Exponent of the general prior in the product.",
                float_range=(0.0, 10.0))
        declare(self, "composition.weight_specialized", 1.0, "Exponent of the specialized model.",
                float_range=(0.0, 10.0))
        declare(self, "composition.clip", 0.0,
                "Bound on joint sampling's predicted clean target in the general data's normalized units "
                "(1 = the general prior's training range); 0 = only the sampler's safety net (10). 1 raised "
                "cabinet accuracy by 0.015 but hides disagreeing experts from the fallback check "
                "(docs/RESULTS.md): use it only where the robot's data lies inside the general data's range.",
                float_range=(0.0, 100.0))
        declare(self, "composition.langevin_steps", 0, "Langevin corrector steps per noise level (0 = none).",
                int_range=(0, 100))
        declare(self, "composition.resample_threshold", 0.5, "SMC resamples when ESS/K falls below this.",
                float_range=(0.01, 1.0))
        served = default_sampler()
        declare(self, "sampler.method", served.method,
                "Reverse process: ddpm (every level), ddim (strided ancestral steps with eta = 1) or dpm_solver "
                "(SDE-DPM-Solver++ 2M).", choices=SAMPLER_METHODS)
        declare(self, "sampler.steps", served.steps,
                "ddim / dpm_solver: at most this many steps; 0, or at least the model's levels, = every level.",
                int_range=(0, 10000))
        declare(self, "sampler.fine_steps", served.fine_steps,
                "ddim / dpm_solver: of sampler.steps, take the last this many noise levels one by one and "
                "stride over the rest (0 = evenly spaced steps; must be below sampler.steps).", int_range=(0, 10000))
        declare(self, "sampler.eta", 1.0, "DDIM stochasticity (0 = deterministic).", float_range=(0.0, 1.0))
        declare(self, "fallback.enabled", True, "Fall back to one expert when the two do not overlap.")
        declare(self, "fallback.min_agreement", 0.5,
                "Least fraction of joint proposals the general prior must find typical; else fall back.",
                float_range=(0.0, 1.0))
        declare(self, "fallback.mode", "specialized", "The expert a failed joint request falls back to.",
                choices=("specialized", "general"))
        declare(self, "marker_frame", "map", "frame_id of the proposal markers (the frame of the state).")
        declare(self, "marker_scale", 0.1, "Diameter of a proposal sphere, metres.", float_range=(0.001, 10.0))

    @staticmethod
    def _proposer_params() -> list[str]:
        return ["composition.method", "composition.general_min_t_fraction", "composition.clip",
                "composition.weight_general", "composition.weight_specialized", "composition.langevin_steps",
                "composition.resample_threshold",
                "sampler.method", "sampler.steps", "sampler.fine_steps", "sampler.eta", "fallback.enabled",
                "fallback.min_agreement", "fallback.mode"]

    @staticmethod
    def _proposer_from(values: dict) -> Proposer:
        """A Proposer from parameter values; raises ValueError naming a bad one."""
        sampler = SamplerConfig(method=values["sampler.method"], steps=int(values["sampler.steps"]),
                                fine_steps=int(values["sampler.fine_steps"]), eta=float(values["sampler.eta"]))
        joint_sampler = replace(sampler, clip=float(values["composition.clip"]) or sampler.clip)
        composition = CompositionConfig(
            method=values["composition.method"], weight_general=float(values["composition.weight_general"]),
            weight_specialized=float(values["composition.weight_specialized"]), sampler=joint_sampler,
            resample_threshold=float(values["composition.resample_threshold"]),
            langevin_steps=int(values["composition.langevin_steps"]),
            general_min_t_fraction=_unset_if_negative(values["composition.general_min_t_fraction"]))
        policy = FallbackPolicy(enabled=bool(values["fallback.enabled"]),
                                min_agreement=float(values["fallback.min_agreement"]),
                                fallback_mode=values["fallback.mode"])
        composition.validate(num_train_steps=10**9)  # steps vs the model's schedule: checked per request
        policy.validate()
        return Proposer(composition=composition, sampler=sampler, policy=policy)

    def _check_parameters(self, params) -> SetParametersResult:
        values = {p: self.get_parameter(p).value for p in self._proposer_params()}
        values.update({p.name: p.value for p in params if p.name in values})
        reason = check_choice("composition.method", values["composition.method"], COMPOSITION_METHODS)
        try:
            if reason is None:
                self._proposer_from(values)
        except ValueError as err:
            reason = str(err)
        return SetParametersResult(successful=reason is None, reason=reason or "")

    def _parameters_changed(self, params) -> None:
        if any(p.name in self._proposer_params() for p in params):
            self.proposer = self._proposer_from({p: self.get_parameter(p).value for p in self._proposer_params()})
            self.get_logger().info("sampling settings changed: "
                                   + ", ".join(f"{p.name}={p.value}" for p in params))

    # ---- models ------------------------------------------------------------------------------
    def _load_from_disk(self) -> None:
        store = ModelStore(self.get_parameter("model_dir").value)
        for domain in SERVED_DOMAINS:
            path = store.general_path(domain)
            if path.exists():
                self._load("general", domain, "", path)
            else:
                self.get_logger().info(f"no general prior for {domain} at {path} (waiting for an announcement)")
        for domain, task, path in specialized_checkpoints(store.root, SERVED_DOMAINS):
            self._load("specialized", domain, task, path)

    def _on_model_info(self, msg: ModelInfo) -> None:
        if msg.role not in ("general", "specialized") or msg.domain not in SERVED_DOMAINS:
            self.get_logger().warning(f"ignoring announcement of {msg.role!r} model for {msg.domain!r}: "
                                      f"not a served domain ({', '.join(SERVED_DOMAINS)}) or role")
            return
        self._load(msg.role, msg.domain, msg.task if msg.role == "specialized" else "", Path(msg.checkpoint_path))

    def _load(self, role: str, domain: str, task: str, path: Path) -> bool:
        """Load a checkpoint into its slot unless that version is already there; False on failure."""
        key = (role, domain, task)
        try:
            version = read_header(path).get("metadata", {}).get("version", "")
            if version and version == self.models.version(key):
                return True
            model = load_checkpoint(path)
            want_state, want_target = SERVED_DOMAINS[domain]
            if (model.condition_dim, model.target_dim) != (want_state, want_target):
                raise CheckpointError(f"{path} maps {model.condition_dim} numbers to {model.target_dim}, "
                                      f"{domain} needs {want_state} -> {want_target}")
        except (CheckpointError, OSError) as err:
            self.get_logger().error(f"cannot load {role} model for {domain}: {err}; keeping the previous one")
            return False
        self.models.put(key, model)
        label = f"{domain}/{task}" if task else domain
        self.get_logger().info(f"loaded {role} model {label}: version {version} from {path}")
        return True

    # ---- the service -------------------------------------------------------------------------
    def _on_propose(self, request, response):
        start = time.perf_counter()
        try:
            self._propose(request, response)
            self.stats.served += 1
            self._publish_markers(response)
        except Rejected as rejected:
            response = Response(result=rejected.result, message=str(rejected))
            self.stats.rejected += 1
            self.get_logger().info(f"rejected request ({request.domain!r}, mode {request.mode!r}): {rejected}")
        except Exception as err:  # the node outlives any one request
            response = Response(result=Response.RESULT_INTERNAL_ERROR,
                                message=f"internal error: {type(err).__name__}: {err}")
            self.stats.internal_errors += 1
            self.get_logger().error(f"request ({request.domain!r}, mode {request.mode!r}) failed: {err!r}")
        latency = 1e3 * (time.perf_counter() - start)
        self.stats.last_latency_ms = latency
        self.get_logger().debug(f"{request.domain} {request.mode or 'joint'} x{request.num_samples}: "
                                f"result {response.result} in {latency:.1f} ms")
        return response

    def _propose(self, request, response) -> None:
        domain, task, mode = self._check_request(request)
        general, specialized = self.models.pair(domain, task)
        mode, note = self._resolve_mode(domain, task, mode, general, specialized)
        seed = request.seed or secrets.randbelow(2**31 - 1) + 1  # 0 = fresh randomness
        proposer = self.proposer  # settings, like models, are fixed for the whole request
        try:
            result = proposer.propose(general, specialized, np.asarray(request.state, dtype=np.float64),
                                      int(request.num_samples), mode, seed)
        except LookupError as err:
            raise Rejected(Response.RESULT_MODEL_UNAVAILABLE, str(err)) from err
        if result.message:
            self.get_logger().info(f"{domain}: {result.message}")
        response.result = Response.RESULT_OK
        response.message = "; ".join(m for m in (note, result.message) if m)
        response.proposals = [Point(x=float(t[0]), y=float(t[1]), z=float(t[2]) if len(t) > 2 else 0.0)
                              for t in result.targets]
        response.scores = [float(s) for s in result.scores]
        response.mode_used = result.mode_used
        diag = result.diagnostics
        response.effective_sample_size_fraction = float(diag.get("ess_fraction", 1.0))
        response.log_overlap = float(diag.get("log_overlap", float("nan")))
        response.score_cosine = float(diag.get("score_cosine", float("nan")))
        response.general_agreement = float(diag.get("general_agreement", float("nan")))
        response.general_version = general.metadata.get("version", "") if general is not None else ""
        used_specialized = result.mode_used in ("joint", "specialized")
        response.specialized_version = specialized.metadata.get("version", "") if used_specialized else ""

    def _check_request(self, request) -> tuple[str, str, str]:
        """(domain, task, mode) of a well-formed request; raises Rejected naming the problem and the fix."""
        invalid = Response.RESULT_INVALID_REQUEST
        domain = request.domain
        if domain not in SERVED_DOMAINS:
            raise Rejected(invalid, f"unknown domain {domain!r}: use one of {', '.join(SERVED_DOMAINS)}")
        try:
            task = check_task(request.task)
        except ValueError as err:
            raise Rejected(invalid, str(err)) from err
        mode = request.mode or "joint"
        if mode not in MODES:
            raise Rejected(invalid, f"unknown mode {request.mode!r}: use '' or one of {', '.join(MODES)}")
        state_size = SERVED_DOMAINS[domain][0]
        problem = check_vector("state", request.state, state_size)
        if problem:
            raise Rejected(invalid, f"{problem} ({domain} state = {STATE_MEANING.get(domain, 'its features')})")
        max_samples = self.get_parameter("max_samples").value
        if not 1 <= request.num_samples <= max_samples:
            raise Rejected(invalid, f"num_samples {request.num_samples} is outside 1..{max_samples}: ask for "
                           "at least one and at most max_samples (a parameter of this node)")
        return domain, task, mode

    def _resolve_mode(self, domain, task, mode, general, specialized) -> tuple[str, str]:
        """The mode to run and a note when it differs; Rejected when a needed model is missing."""
        store = ModelStore(self.get_parameter("model_dir").value)
        if general is None and mode in ("joint", "general"):
            raise Rejected(Response.RESULT_MODEL_UNAVAILABLE,
                           f"no general prior loaded for {domain}: expected {store.general_path(domain)}; "
                           f"{TRAIN_HINT} and announce it (general_prior_node ~/reload)")
        if specialized is None and mode in ("joint", "specialized"):
            label = f"{domain} task {task!r}" if task else domain
            hint = (f"no specialized model loaded for {label} (expected {store.specialized_path(domain, task)}): "
                    f"record observations and call {TRAIN_SERVICE}")
            if mode == "joint" and self.get_parameter("fallback_to_general").value:
                self.get_logger().info(f"{hint}: joint request answered from the general prior",
                                       throttle_duration_sec=60.0)
                return "general", hint + "; answered from the general prior"
            raise Rejected(Response.RESULT_MODEL_UNAVAILABLE, hint)
        return mode, ""

    # ---- what others see ---------------------------------------------------------------------
    def _publish_markers(self, response) -> None:
        """RViz: clear the last proposals, then one sphere per proposal, red (low) to green (high score).

        Building a marker per proposal costs about as much as the service call itself, so it is
        skipped while nobody subscribes.
        """
        if self.marker_publisher.get_subscription_count() == 0:
            return
        frame = self.get_parameter("marker_frame").value
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

    def _publish_diagnostics(self) -> None:
        versions = self.models.versions()
        any_general = any(k.startswith("general") for k in versions)
        status = DiagnosticStatus(
            level=DiagnosticStatus.OK if any_general else DiagnosticStatus.WARN,
            name=f"dualdiff: {self.get_name()}", hardware_id=self.get_fully_qualified_name(),
            message=f"{len(versions)} models loaded" if any_general else "no general prior loaded: "
            "requests get RESULT_MODEL_UNAVAILABLE until one is announced")
        values = {"models_loaded": str(len(versions)), "requests_served": str(self.stats.served),
                  "requests_rejected": str(self.stats.rejected),
                  "internal_errors": str(self.stats.internal_errors),
                  "last_latency_ms": f"{self.stats.last_latency_ms:.1f}"}
        values.update({f"version/{k}": v for k, v in versions.items()})
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_publisher.publish(array)


def _unset_if_negative(value: float) -> float | None:
    """Parameters cannot be None: a negative fraction means "let the model decide"."""
    return None if float(value) < 0 else float(value)


def main(args=None) -> int:
    return spin_node(PlacementProposalNode, args)
