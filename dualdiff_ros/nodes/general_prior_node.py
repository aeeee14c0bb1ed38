"""General prior node: checks each domain's general checkpoint and announces it on a latched topic.

The prior is trained off the robot (`dualdiff train`); this node makes the robot's copy
visible: which version is installed, where, and with what metadata. The proposal node
loads what is announced, so a prior replaced on disk reaches it through `~/reload`.
A lifecycle node: configure verifies the checkpoints, activate announces them (and reloads on
parameter changes and `~/reload` from then on), cleanup forgets them.
"""
from __future__ import annotations

import threading

from diagnostic_msgs.msg import DiagnosticStatus
from dualdiff_interfaces.msg import ModelInfo
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import ParameterUninitializedException
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.parameter import Parameter
from std_srvs.srv import Trigger

from ..diffusion.checkpoint import CheckpointError, load_checkpoint, read_header
from ..model_store import ModelStore
from ..serving import TRAIN_HINT, not_active
from ..spec_training import catalogue
from .checks import check_domains
from .lifecycle import lifecycle_state, log_transition, publish_diagnostics, spin_node
from .models import model_info
from .parameters import all_or_none_parameters, declare, declare_autostart
from .topics import MODEL_INFO_TOPIC, latched_qos

NODE_NAME = "general_prior_node"


class GeneralPriorNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, start_parameter_services=False, **kwargs)
        all_or_none_parameters(self)
        declare(self, "model_dir", "~/.dualdiff/models",
                "Folder of the ModelStore: <model_dir>/<domain>/general.safetensors.")
        declare(self, "domains", Parameter.Type.STRING_ARRAY, "Domains whose general prior is announced; unset or "
                "empty = every built-in domain and every domain whose prior in model_dir carries a spec (`dualdiff "
                "train --spec`), found again at every reload.")
        declare_autostart(self)
        self.versions: dict[str, str] = {}  # domain -> announced version
        self.problems: list[str] = []
        self._verified: list[ModelInfo] = []  # checked at configure, announced at activate
        self._lock = threading.Lock()
        self._reload_wanted = False
        self.publisher = self.create_publisher(ModelInfo, MODEL_INFO_TOPIC, latched_qos())
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._parameters_changed)
        self.create_service(Trigger, "~/reload", self._on_reload)
        # Parameter changes only raise a flag: the reload runs here, not inside the parameter service.
        self.create_timer(0.2, self._reload_if_wanted)
        publish_diagnostics(self, self._health)

    # ---- lifecycle ---------------------------------------------------------------------------
    def on_configure(self, state) -> TransitionCallbackReturn:
        self._verified, self.problems = self.verify()
        log_transition(self, "configured (inactive)")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        self._announce(self._verified)
        log_transition(self, "active")
        return super().on_activate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        with self._lock:
            self._verified, self.versions, self.problems = [], {}, []
        log_transition(self, "cleaned up (unconfigured)")
        return TransitionCallbackReturn.SUCCESS

    def _health(self):
        level = DiagnosticStatus.WARN if self.problems else DiagnosticStatus.OK
        message = f"{len(self.versions)} general priors announced" + (
            f"; {len(self.problems)} missing or refused" if self.problems else "")
        return level, message, {**{f"version/{d}": v for d, v in sorted(self.versions.items())},
                                **{f"problem/{i}": p for i, p in enumerate(self.problems)}}

    def _check_parameters(self, params) -> SetParametersResult:
        model_dir = next((p.value for p in params if p.name == "model_dir"), self.get_parameter("model_dir").value)
        for p in params:
            if p.name == "domains":
                reason = check_domains([d for d in p.value or [] if d], model_dir)
                if reason:
                    return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _parameters_changed(self, params) -> None:
        if any(p.name in ("model_dir", "domains") for p in params):
            self._reload_wanted = True

    def _reload_if_wanted(self) -> None:
        if self._reload_wanted and lifecycle_state(self) == "active":
            self._reload_wanted = False
            self.reload()

    def _on_reload(self, request, response):
        state = lifecycle_state(self)
        if state != "active":
            response.success, response.message = False, not_active(self.get_fully_qualified_name(), state)
            return response
        announced, missing = self.reload()
        response.success = not missing
        response.message = "; ".join([f"{d}: version {v}" for d, v in announced.items()] + missing)
        return response

    def reload(self) -> tuple[dict[str, str], list[str]]:
        """Verify and announce every configured domain's prior; returns (announced, problems)."""
        verified, problems = self.verify()
        self.problems = problems
        return self._announce(verified), problems

    def _announce(self, verified: list[ModelInfo]) -> dict[str, str]:
        announced = {}
        with self._lock:
            for msg in verified:
                self.publisher.publish(msg)
                announced[msg.domain] = msg.version
                if self.versions.get(msg.domain) != msg.version:
                    self.get_logger().info(f"general prior {msg.domain}: version {msg.version} "
                                           f"from {msg.checkpoint_path}")
                self.versions[msg.domain] = msg.version
        return announced

    def _configured_domains(self) -> list[str]:
        """The `domains` parameter's names; [] while it is unset (= every domain found)."""
        try:
            return [d for d in self.get_parameter("domains").value or [] if d]
        except ParameterUninitializedException:
            return []

    def verify(self) -> tuple[list[ModelInfo], list[str]]:
        """Every configured domain's prior checked on disk: (announcements to make, problems)."""
        store = ModelStore(self.get_parameter("model_dir").value)
        domains = self._configured_domains() or list(catalogue(store.root))
        verified, problems = [], []
        with self._lock:
            for domain in domains:
                path = store.general_path(domain)
                try:
                    header = read_header(path)  # cheap: a missing or foreign file fails here
                    load_checkpoint(path)       # full check: the weights match their digest
                except (CheckpointError, OSError) as err:
                    problem = f"{domain}: {err}" if path.exists() else (
                        f"{domain}: no general prior at {path}; {TRAIN_HINT}, then call ~/reload")
                    self.get_logger().warning(problem)
                    problems.append(problem)
                    continue
                verified.append(model_info(ModelInfo, "general", domain, "", path, header))
        return verified, problems


def main(args=None) -> int:
    return spin_node(GeneralPriorNode, args)
