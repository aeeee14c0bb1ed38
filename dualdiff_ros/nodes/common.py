"""Glue shared by the dualdiff nodes: names, QoS, parameters, lifecycle, diagnostics, model announcements.

Names are relative: under a namespace (`dualdiff_bringup --namespace robot1`, the launch file's
`namespace:=robot1`) the service is /robot1/dualdiff/propose_placements; without one it is
/dualdiff/propose_placements, as before. /diagnostics alone stays absolute: the diagnostic
aggregator listens there, and every status names its node's fully qualified name.
"""
from __future__ import annotations

import json
from pathlib import Path

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from ..domains import SERVED_DOMAINS
from ..model_store import check_task
from ..runtime import THREADS_ENV, limit_torch_threads
from ..serving import TRAIN_HINT, Setting, check_vector, quote  # noqa: F401  (re-exported for the nodes)

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


_TYPES = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
          float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}


def declare(node, name: str, default, description: str, *, int_range: tuple[int, int] | None = None,
            float_range: tuple[float, float] | None = None, read_only: bool = False, choices=None):
    """Declare one parameter with its description and range, so `ros2 param describe` explains it."""
    text = description + (f" One of {', '.join(map(repr, choices))}." if choices else "")
    descriptor = ParameterDescriptor(name=name, description=text, read_only=read_only)
    if isinstance(default, list):
        descriptor.type = ParameterType.PARAMETER_STRING_ARRAY
    else:
        descriptor.type = _TYPES[type(default)]
    if int_range is not None:
        descriptor.integer_range = [IntegerRange(from_value=int_range[0], to_value=int_range[1], step=1)]
    if float_range is not None:
        descriptor.floating_point_range = [FloatingPointRange(from_value=float(float_range[0]),
                                                              to_value=float(float_range[1]), step=0.0)]
    return node.declare_parameter(name, default, descriptor)


def declare_settings(node, settings: tuple[Setting, ...]) -> None:
    """Declare serving.Setting entries as parameters (one table for every node that samples)."""
    for s in settings:
        declare(node, s.name, s.default, s.description, int_range=s.int_range, float_range=s.float_range,
                choices=s.choices, read_only=s.read_only)


def settings_values(node, settings, changes=()) -> dict:
    """The node's current values of `settings` (serving.Setting), with `changes` (Parameters) applied."""
    values = {s.name: node.get_parameter(s.name).value for s in settings}
    values.update({p.name: p.value for p in changes if p.name in values})
    return values


def check_sampling_settings(node, settings, params):
    """An on-set-parameters result: refused unless the sampling settings, changed by `params`, make a Proposer."""
    from rcl_interfaces.msg import SetParametersResult

    from ..serving import proposer_from

    try:
        proposer_from(settings_values(node, settings, params))
    except ValueError as err:
        return SetParametersResult(successful=False, reason=str(err))
    return SetParametersResult(successful=True)


def check_choice(name: str, value, choices) -> str | None:
    """None when `value` is allowed, else the reason (for an on-set-parameters callback)."""
    return None if value in choices else f"{name}={value!r}: use one of {', '.join(map(repr, choices))}"


def check_choices(params, choices: dict):
    """An on-set-parameters result refusing any parameter in `choices` ({name: allowed}) set to another value."""
    from rcl_interfaces.msg import SetParametersResult

    for p in params:
        if p.name in choices:
            reason = check_choice(p.name, p.value, choices[p.name])
            if reason:
                return SetParametersResult(successful=False, reason=reason)
    return SetParametersResult(successful=True)


def check_domains(domains) -> str | None:
    unknown = [d for d in domains if d not in SERVED_DOMAINS]
    if unknown:
        return f"unknown domain {unknown[0]!r}: served domains are {', '.join(SERVED_DOMAINS)}"
    return None


def model_info(msg_type, role: str, domain: str, task: str, path: Path, header: dict):
    """A ModelInfo announcement from a checkpoint's header."""
    meta = header.get("metadata", {})
    summary = {"architecture": header.get("architecture"), "schedule": header.get("schedule"), **meta}
    summary.pop("training", None)  # the full training log stays in the file; keep the message small
    return msg_type(role=role, domain=domain, task=task, version=str(meta.get("version", "")),
                    checkpoint_path=str(path), metadata_json=json.dumps(summary, default=str))


def specialized_checkpoints(model_dir: Path, domains) -> list[tuple[str, str, Path]]:
    """(domain, task, path) of every specialized checkpoint under `model_dir` (ModelStore layout)."""
    found = []
    for domain in domains:
        for path in sorted((Path(model_dir).expanduser() / domain).glob("specialized*.safetensors")):
            stem = path.name[: -len(".safetensors")]
            task = stem[len("specialized-"):] if stem.startswith("specialized-") else ""
            if stem == "specialized" or task:
                found.append((domain, task, path))
    return found


def lifecycle_state(node) -> str:
    """The node's lifecycle state label ("unconfigured", "inactive", "active", ...); "active" for a plain node."""
    machine = getattr(node, "_state_machine", None)
    return machine.current_state[1] if machine is not None else "active"


def log_transition(node, state: str) -> None:
    """One log line per lifecycle transition, so a launch log shows the bring-up."""
    node.get_logger().info(f"lifecycle: {state}")


def bring_up(node) -> None:
    """Configure, then activate a lifecycle node (what the launch file's autostart does); RuntimeError if refused."""
    from rclpy.lifecycle import TransitionCallbackReturn

    if not hasattr(node, "trigger_configure"):
        return
    for name, trigger in (("configure", node.trigger_configure), ("activate", node.trigger_activate)):
        if trigger() != TransitionCallbackReturn.SUCCESS:
            raise RuntimeError(f"{node.get_name()}: {name} failed (lifecycle state {lifecycle_state(node)})")


def publish_diagnostics(node, report, callback_group=None):
    """Every DIAGNOSTICS_PERIOD, one DiagnosticStatus on /diagnostics from `report()` -> (level, message, values).

    The status names the node by its fully qualified name (namespaced robots stay apart) and
    always carries its lifecycle state; it publishes in every state, so a stalled bring-up shows.
    """
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    publisher = node.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)

    def publish() -> None:
        level, message, values = report()
        state = lifecycle_state(node)
        if state != "active":
            level, message = max(level, DiagnosticStatus.WARN), f"{state} (lifecycle): {message}"
        status = DiagnosticStatus(level=level, name=f"dualdiff: {node.get_fully_qualified_name()}",
                                  hardware_id=node.get_fully_qualified_name(), message=message)
        status.values = [KeyValue(key=k, value=str(v)) for k, v in {"lifecycle_state": state, **values}.items()]
        array = DiagnosticArray(status=[status])
        array.header.stamp = node.get_clock().now().to_msg()
        publisher.publish(array)

    node.create_timer(DIAGNOSTICS_PERIOD, publish, callback_group=callback_group)
    return publisher


def spin(start, args=None) -> int:
    """Run nodes until Ctrl-C / SIGTERM: the body of every executable's main (nodes and bring-up).

    `start(threads)` creates the nodes and returns (executor, nodes), after rclpy is up and
    torch's threads are set (`threads` is the number, for the start-up log).
    """
    import signal

    import rclpy
    from rclpy.executors import ExternalShutdownException

    # rclpy's SIGTERM handler shuts the context down, then calls the previous handler: keep that
    # one harmless (the default would kill the process before the nodes are destroyed).
    signal.signal(signal.SIGTERM, lambda *_: None)
    threads = limit_torch_threads()
    rclpy.init(args=args)
    executor, nodes = None, []
    try:
        executor, nodes = start(threads)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # A signal between the executor's "context ok?" check and its wait-set creation surfaces as
        # RCLError ("context is not valid"): a stop like any other, once the context is down.
        if rclpy.ok():
            raise
    finally:
        if executor is not None:
            stop_nodes(executor, nodes)
        rclpy.try_shutdown()
    return 0


def spin_node(node_class, args=None) -> int:
    """Run one node until Ctrl-C / SIGTERM: the body of every node's `main()`."""
    from rclpy.executors import MultiThreadedExecutor

    def start(threads: int):
        node = node_class()
        if node.has_parameter("autostart") and node.get_parameter("autostart").value:
            bring_up(node)
        node.get_logger().info(f"torch intra-op threads: {threads} (${THREADS_ENV})")
        executor = MultiThreadedExecutor()
        executor.add_node(node)
        return executor, [node]

    return spin(start, args)


def declare_autostart(node) -> None:
    """The `autostart` parameter of a lifecycle node's own executable (`ros2 run`)."""
    declare(node, "autostart", True, "The node's own executable (ros2 run) configures and activates it at start; "
            "false leaves it unconfigured for a lifecycle manager. The launch file and dualdiff_bringup set it "
            "false and drive the transitions themselves (their autostart argument).", read_only=True)


def stop_nodes(executor, nodes) -> None:
    """Stop spinning, then destroy every node (one that is already destroyed is skipped)."""
    import rclpy

    executor.shutdown()
    for node in reversed(nodes):
        try:
            node.destroy_node()
        except Exception as err:  # keep destroying the others (one destroyed before, for instance)
            rclpy.logging.get_logger("dualdiff").debug(f"{type(node).__name__}: {err!r}")


def check_domain_and_task(domain: str, task: str) -> str | None:
    """None for a served domain and a well-formed task name, else the reason and the fix."""
    if domain not in SERVED_DOMAINS:
        return f"unknown domain {quote(domain)}: use one of {', '.join(SERVED_DOMAINS)}"
    try:
        check_task(task)
    except ValueError as err:
        return str(err)
    return None


def call_sync(client, request, timeout: float = 10.0, resend_every: float | None = None):
    """Call a service from a thread that is not spinning the client's node; the reply, or TimeoutError.

    `resend_every` (seconds) is for requests that are safe to repeat, such as a proposal: while no
    reply has come, the request goes out again that often, and the first reply wins. Right after
    `wait_for_service` says yes, Fast DDS can still drop the reply, because the server's reply
    writer has not yet matched this client's reply reader (ros2/rmw_fastrtps#842); a request sent
    again a moment later gets through. Never set it for a request that changes state.
    """
    import threading
    import time

    done = threading.Event()
    futures = []
    deadline = time.monotonic() + timeout
    while True:
        future = client.call_async(request)
        future.add_done_callback(lambda _: done.set())
        futures.append(future)
        left = deadline - time.monotonic()
        if done.wait(max(0.0, min(left, resend_every or left))) or time.monotonic() >= deadline:
            break
    answered = [f for f in futures if f.done()]
    for future in futures:
        if not future.done():
            client.remove_pending_request(future)
    if not answered:
        raise TimeoutError(f"{client.srv_name} did not answer within {timeout} s")
    return answered[0].result()


def all_or_none_parameters(node) -> None:
    """Serve the node's parameter services with SetParameters applied all or none.

    ROS applies a SetParameters request one value at a time, so settings that depend on each
    other (sampler.steps with sampler.fine_steps) could land half. Here the whole request is one
    atomic set: every value is applied, or none, and each result carries the reason. Call it
    from a node created with `start_parameter_services=False`.
    """
    from rcl_interfaces.msg import SetParametersResult
    from rclpy.exceptions import ParameterNotDeclaredException
    from rclpy.parameter import Parameter
    from rclpy.parameter_service import ParameterService

    class AllOrNone(ParameterService):
        def _set_parameters_callback(self, request, response):
            params = [Parameter.from_parameter_msg(p) for p in request.parameters]
            try:
                result = self._get_node().set_parameters_atomically(params)
            except ParameterNotDeclaredException as err:
                result = SetParametersResult(successful=False, reason=str(err))
            response.results = [result for _ in params]
            return response

    node._parameter_service = AllOrNone(node)
