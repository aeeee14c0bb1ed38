"""All dualdiff nodes in one process and one executor: `ros2 launch` for machines without ROS installed.

    dualdiff_bringup --config config/bringup.yaml [--model-dir DIR] [--namespace robot1] [--no-autostart]
                     [--nodes general_prior_node ...]

Each node takes its parameters from the YAML section named after it (`node_name: ros__parameters:`,
the same file launch/dualdiff.launch.py passes); `--model-dir` overrides every node's model_dir.
`--namespace robot1` puts every name under /robot1 (/robot1/dualdiff/propose_placements). The
lifecycle nodes are configured and activated in start order unless `--no-autostart` (then a
lifecycle manager drives them). SIGINT / SIGTERM stop it cleanly (exit code 0).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
from pathlib import Path

import rclpy
import yaml
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter

from .nodes.general_prior_node import GeneralPriorNode
from .nodes.lifecycle import bring_up, spin, stop_nodes  # noqa: F401  (stop_nodes: for start_nodes' callers)
from .nodes.placement_proposal_node import PlacementProposalNode
from .nodes.simulator_node import SimulatorNode
from .nodes.specialized_model_node import SpecializedModelNode
from .runtime import THREADS_ENV

# Start order: announcers first, so the proposal node finds their latched models at once.
NODE_CLASSES = {
    "general_prior_node": GeneralPriorNode,
    "specialized_model_node": SpecializedModelNode,
    "placement_proposal_node": PlacementProposalNode,
    "simulator_node": SimulatorNode,
}


def default_config() -> Path:
    """config/bringup.yaml of a source checkout, else the installed share/dualdiff_ros/config copy."""
    for candidate in (Path(__file__).resolve().parent.parent / "config" / "bringup.yaml",
                      Path(sys.prefix) / "share" / "dualdiff_ros" / "config" / "bringup.yaml"):
        if candidate.is_file():
            return candidate
    return candidate


def _flatten(prefix: str, values: dict) -> dict:
    out = {}
    for key, value in values.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        out.update(_flatten(name, value) if isinstance(value, dict) else {name: value})
    return out


def node_parameters(config: str | Path | None, node_name: str, overrides: dict | None = None) -> list[Parameter]:
    """One node's parameters from a ROS parameter file (`/**` first, then its own section), then `overrides`.

    Nested YAML maps become dotted names (`composition: {method: smc}` -> `composition.method`), as in ROS.
    """
    values = {}
    if config is not None:
        with open(config) as f:
            document = yaml.safe_load(f) or {}
        for section in ("/**", node_name):
            if section in document:
                body = document[section]
                if not isinstance(body, dict) or "ros__parameters" not in body:
                    raise ValueError(f"{config}: section {section!r} has no ros__parameters")
                values.update(_flatten("", body["ros__parameters"] or {}))
    values.update(overrides or {})
    return [Parameter(name, value=value) for name, value in values.items()]


def start_nodes(context=None, config: str | Path | None = None, model_dir: str | None = None,
                nodes=tuple(NODE_CLASSES), overrides: dict[str, dict] | None = None, num_threads: int | None = None,
                namespace: str = "", autostart: bool = True):
    """Create the named nodes on `context` with their YAML parameters; (executor, nodes) not yet spinning.

    `overrides` maps a node name to {parameter: value}, applied last (tests use it for tiny settings).
    `namespace` prefixes every relative name; with `autostart` each lifecycle node is configured and
    activated as it is created (announcers first), else it stays unconfigured.
    """
    unknown = [n for n in nodes if n not in NODE_CLASSES]
    if unknown:
        raise ValueError(f"unknown node {unknown[0]!r}: choose from {', '.join(NODE_CLASSES)}")
    # Enough threads that a long simulator evaluation, an inference and a training request never
    # starve the parameter services and timers (threads are cheap; most of them wait).
    executor = MultiThreadedExecutor(num_threads=num_threads or max(8, os.cpu_count() or 1), context=context)
    started = []
    try:
        for name in (n for n in NODE_CLASSES if n in nodes):
            extra = dict((overrides or {}).get(name, {}))
            if model_dir is not None:
                extra["model_dir"] = str(model_dir)
            params = node_parameters(config, name, extra)
            node = NODE_CLASSES[name](context=context, parameter_overrides=params, namespace=namespace)
            started.append(node)
            for p in params:
                if not node.has_parameter(p.name):
                    node.get_logger().warning(f"{config}: {name} has no parameter {p.name!r} (ignored)")
            if autostart:
                bring_up(node)
            executor.add_node(node)
    except BaseException:
        for node in started:
            node.destroy_node()
        executor.shutdown()
        raise
    return executor, started


@contextlib.contextmanager
def running_nodes(model_dir, nodes, overrides: dict[str, dict] | None = None, namespace: str = ""):
    """Nodes spinning in this process on a private context, for the demo, benchmarks and probes.

    Yields (context, nodes); on exit the nodes are stopped and the context shut down.
    """
    context = rclpy.context.Context()
    rclpy.init(context=context)
    executor, started, spinner = None, [], None
    try:
        executor, started = start_nodes(context, default_config(), model_dir, nodes=nodes, overrides=overrides,
                                        namespace=namespace)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        yield context, started
    finally:
        if executor is not None:
            # The spin thread must be done before its nodes and context go: a callback still running
            # on a destroyed node can take the process down at exit.
            executor.shutdown()
            if spinner is not None:
                spinner.join(timeout=10)
            stop_nodes(executor, started)
        rclpy.try_shutdown(context=context)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="dualdiff_bringup", description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(default_config()), help="ROS parameter file (default: %(default)s)")
    ap.add_argument("--model-dir", help="model folder for every node (overrides the config's model_dir)")
    ap.add_argument("--nodes", nargs="+", default=list(NODE_CLASSES), choices=list(NODE_CLASSES),
                    help="which nodes to start (default: all)")
    ap.add_argument("--namespace", default="", help="ROS namespace of every node, e.g. robot1 (default: none)")
    ap.add_argument("--no-autostart", dest="autostart", action="store_false",
                    help="leave the lifecycle nodes unconfigured (a lifecycle manager drives them)")
    args, ros_args = ap.parse_known_args(argv)
    if not Path(args.config).is_file():
        ap.error(f"config {args.config} does not exist")

    def start(threads: int):
        executor, nodes = start_nodes(None, args.config, args.model_dir, args.nodes, namespace=args.namespace,
                                      autostart=args.autostart)
        rclpy.logging.get_logger("dualdiff_bringup").info(
            f"started {', '.join(n.get_name() for n in nodes)} from {args.config} "
            f"{'in namespace /' + args.namespace.strip('/') + ' ' if args.namespace.strip('/') else ''}"
            f"(torch intra-op threads: {threads}, ${THREADS_ENV})")
        return executor, nodes

    spin(start, [sys.argv[0], *ros_args])
    rclpy.logging.get_logger("dualdiff_bringup").info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
