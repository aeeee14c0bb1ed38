"""General prior node: checks each domain's general checkpoint and announces it on a latched topic.

The prior is trained off the robot (`dualdiff train`); this node makes the robot's copy
visible: which version is installed, where, and with what metadata. The proposal node
loads what is announced, so a prior replaced on disk reaches it through `~/reload`.
"""
from __future__ import annotations

import threading

from dualdiff_interfaces.msg import ModelInfo
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from std_srvs.srv import Trigger

from ..diffusion.checkpoint import CheckpointError, load_checkpoint, read_header
from ..model_store import ModelStore
from .common import (
    MODEL_INFO_TOPIC,
    TRAIN_HINT,
    all_or_none_parameters,
    check_domains,
    declare,
    latched_qos,
    model_info,
    spin_node,
)

NODE_NAME = "general_prior_node"


class GeneralPriorNode(Node):
    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, start_parameter_services=False, **kwargs)
        all_or_none_parameters(self)
        declare(self, "model_dir", "~/.dualdiff/models",
                "Folder of the ModelStore: <model_dir>/<domain>/general.safetensors.")
        declare(self, "domains", ["cabinet", "round_table", "navigate_to"], "Domains whose general prior is announced.")
        self.versions: dict[str, str] = {}  # domain -> announced version
        self._lock = threading.Lock()
        self._reload_wanted = False
        self.publisher = self.create_publisher(ModelInfo, MODEL_INFO_TOPIC, latched_qos())
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._parameters_changed)
        self.create_service(Trigger, "~/reload", self._on_reload)
        # Parameter changes only raise a flag: the reload runs here, not inside the parameter service.
        self.create_timer(0.2, self._reload_if_wanted)
        self.reload()

    def _check_parameters(self, params) -> SetParametersResult:
        for p in params:
            if p.name == "domains":
                reason = check_domains(p.value or [])
                if reason:
                    return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _parameters_changed(self, params) -> None:
        if any(p.name in ("model_dir", "domains") for p in params):
            self._reload_wanted = True

    def _reload_if_wanted(self) -> None:
        if self._reload_wanted:
            self._reload_wanted = False
            self.reload()

    def _on_reload(self, request, response):
        announced, missing = self.reload()
        response.success = not missing
        response.message = "; ".join([f"{d}: version {v}" for d, v in announced.items()] + missing)
        return response

    def reload(self) -> tuple[dict[str, str], list[str]]:
        """Verify and announce every configured domain's prior; returns (announced, problems)."""
        store = ModelStore(self.get_parameter("model_dir").value)
        domains = list(self.get_parameter("domains").value or [])
        announced, problems = {}, []
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
                msg = model_info(ModelInfo, "general", domain, "", path, header)
                self.publisher.publish(msg)
                announced[domain] = msg.version
                if self.versions.get(domain) != msg.version:
                    self.get_logger().info(f"general prior {domain}: version {msg.version} from {path}")
                self.versions[domain] = msg.version
        return announced, problems


def main(args=None) -> int:
    return spin_node(GeneralPriorNode, args)
