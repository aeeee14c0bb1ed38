"""Shared pytest set-up: ROS isolation, a private rclpy context per test, executor threads.

ROS isolation happens at import time, before any test module imports rclpy: DDS discovery
stays on this machine (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``) and every test process
gets its own ``ROS_DOMAIN_ID`` (1..100, derived from the pid), so parallel test runs and
other ROS processes on the machine do not see each other.  Child processes (nodes started
with ``subprocess``) inherit both variables.

Fixtures:

``ros_context``
    A private, initialized ``rclpy.context.Context``; shut down after the test
    (``rclpy.try_shutdown(context=...)``).  Create nodes and executors on it::

        node = rclpy.create_node("probe", context=ros_context)
        executor = MultiThreadedExecutor(context=ros_context)

``spin_in_thread``
    A function ``spin_in_thread(executor) -> threading.Thread`` that spins ``executor`` in a
    daemon thread.  At teardown every executor it started is stopped with
    ``executor.shutdown()`` and its thread joined (before ``ros_context`` shuts down).

``ros_domain_id``
    The ``ROS_DOMAIN_ID`` (int) this test process uses.

Helper: ``wait_for(predicate, timeout=10.0, period=0.01) -> bool`` polls until
``predicate()`` is true; the ``wait_for`` fixture returns it.
"""

import os
import threading
import time

import pytest

ROS_DOMAIN_ID_RANGE = (1, 100)  # inclusive; 0 is the default domain of every robot and shell


def unique_ros_domain_id(pid: int | None = None) -> int:
    """A ROS domain id in 1..100 that differs between concurrently running test processes."""
    low, high = ROS_DOMAIN_ID_RANGE
    pid = os.getpid() if pid is None else pid
    return low + pid % (high - low + 1)


def _isolate_ros() -> int:
    domain_id = unique_ros_domain_id()
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ["ROS_DOMAIN_ID"] = str(domain_id)
    # Deprecated in Jazzy and warned about when set next to the discovery range.
    os.environ.pop("ROS_LOCALHOST_ONLY", None)
    os.environ.pop("ROS_STATIC_PEERS", None)
    return domain_id


ROS_DOMAIN_ID = _isolate_ros()


def pytest_configure(config):
    # lark (rosidl's IDL parser, imported by rclpy) imports the deprecated sre_* modules.
    config.addinivalue_line("filterwarnings", "ignore:module 'sre_:DeprecationWarning")


def wait_for(predicate, timeout: float = 10.0, period: float = 0.01) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return bool(predicate())
        time.sleep(period)


@pytest.fixture
def ros_domain_id() -> int:
    return ROS_DOMAIN_ID


@pytest.fixture(name="wait_for")
def wait_for_fixture():
    return wait_for


@pytest.fixture
def ros_context():
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        rclpy.try_shutdown(context=context)


def _spin(executor) -> None:
    from rclpy.executors import ExternalShutdownException

    try:
        executor.spin()
    except (ExternalShutdownException, KeyboardInterrupt):
        pass
    except Exception as exc:  # a context shut down under the spinning executor
        if type(exc).__name__ not in ("RCLError", "ShutdownException", "InvalidHandle"):
            raise


class _Spinners:
    """Executors spun in daemon threads, stopped and joined at teardown."""

    def __init__(self) -> None:
        self._running: list = []

    def __call__(self, executor, name: str | None = None) -> threading.Thread:
        thread = threading.Thread(
            target=_spin, args=(executor,), name=name or f"spin-{len(self._running)}", daemon=True
        )
        thread.start()
        self._running.append((executor, thread))
        return thread

    def stop_all(self, timeout: float = 10.0) -> None:
        errors = []
        while self._running:
            executor, thread = self._running.pop()
            try:
                executor.shutdown(timeout_sec=timeout)
            except Exception as exc:  # keep stopping the others
                errors.append(exc)
            thread.join(timeout)
            if thread.is_alive():
                errors.append(RuntimeError(f"executor thread {thread.name} did not stop in {timeout} s"))
        if errors:
            raise errors[0]


@pytest.fixture
def spin_in_thread(ros_context):
    # Depends on ros_context so that it is torn down first: executors stop before the
    # context shuts down.
    spinners = _Spinners()
    try:
        yield spinners
    finally:
        spinners.stop_all()
