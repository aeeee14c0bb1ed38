"""Lifecycle, diagnostics and the main loop every dualdiff executable runs."""
from __future__ import annotations

from ..runtime import THREADS_ENV, limit_torch_threads
from .topics import DIAGNOSTICS_PERIOD, DIAGNOSTICS_TOPIC


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


def stop_nodes(executor, nodes) -> None:
    """Stop spinning, then destroy every node (one that is already destroyed is skipped)."""
    import rclpy

    executor.shutdown()
    for node in reversed(nodes):
        try:
            node.destroy_node()
        except Exception as err:  # keep destroying the others (one destroyed before, for instance)
            rclpy.logging.get_logger("dualdiff").debug(f"{type(node).__name__}: {err!r}")
