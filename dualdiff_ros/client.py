"""A small synchronous client of dualdiff/propose_placements (in its namespace), for the demo, benchmarks, users.

The node spins in a background executor; `propose()` blocks the calling thread only.
"""
from __future__ import annotations

import threading
import time

import rclpy
from dualdiff_interfaces.srv import ProposePlacements
from rclpy.executors import MultiThreadedExecutor

from .nodes.calls import call_sync
from .nodes.topics import PROPOSE_SERVICE

# Seconds without a reply before the first request to a server is sent again (see call_sync).
FIRST_REPLY_RESEND_S = 1.0


class ProposalClient:
    def __init__(self, context=None, name: str = "dualdiff_client", namespace: str = ""):
        """`namespace` = the robot's (e.g. "robot1"): the service is then /robot1/dualdiff/propose_placements."""
        self.node = rclpy.create_node(name, context=context, namespace=namespace or None)
        self.client = self.node.create_client(ProposePlacements, PROPOSE_SERVICE)
        self._reply_path_matched = False
        self._executor = MultiThreadedExecutor(num_threads=2, context=context)
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._executor.spin, daemon=True)
        self._thread.start()

    def wait_for_service(self, timeout: float = 10.0) -> bool:
        return self.client.wait_for_service(timeout_sec=timeout)

    def propose(self, domain: str, state, num_samples: int, mode: str = "", seed: int = 0, task: str = "",
                timeout: float = 30.0, grid=None, frame_id: str = "",
                min_separation: float = 0.0) -> ProposePlacements.Response:
        """One request; `grid` is a nav_msgs/OccupancyGrid (e.g. from /dualdiff/scene_map or nav2)."""
        request = ProposePlacements.Request(domain=domain, task=task, state=[float(v) for v in state],
                                            num_samples=int(num_samples), mode=mode, seed=int(seed),
                                            min_separation=float(min_separation))
        request.header.frame_id = frame_id
        if grid is not None:
            request.map = grid
        # Until one reply has come back, the reply path may not be matched yet (see call_sync):
        # resend the (read-only) request; afterwards a slow reply is just slow.
        resend = None if self._reply_path_matched else FIRST_REPLY_RESEND_S
        reply = call_sync(self.client, request, timeout, resend_every=resend)
        self._reply_path_matched = True
        return reply

    def wait_until_ready(self, domain: str, state, timeout: float = 30.0,
                         mode: str = "joint") -> ProposePlacements.Response:
        """Poll with a one-sample request of `mode` until the node answers it with its models (RESULT_OK).

        "joint" waits for both models; "general" only for the prior (a new robot has no specialist).
        """
        deadline = time.monotonic() + timeout
        while True:
            reply = self.propose(domain, state, 1, mode, seed=1)
            if reply.result == ProposePlacements.Response.RESULT_OK and reply.mode_used == mode:
                return reply
            if time.monotonic() > deadline:
                raise TimeoutError(f"models for {domain} not ready: {reply.message}")
            time.sleep(0.2)

    def close(self):
        self._executor.shutdown()
        self._thread.join(timeout=5)
        self.node.destroy_node()


def propose_once(domain, state, num_samples, mode, seed, task, timeout, min_separation: float = 0.0) -> int:
    """`dualdiff propose`: print one reply of running nodes (exit 1 unless RESULT_OK)."""
    rclpy.init()
    try:
        client = ProposalClient()
        if not client.wait_for_service(timeout):
            print(f"no {client.client.srv_name} service found within {timeout} s: start the nodes (`make run`)")
            return 1
        reply = client.propose(domain, state, num_samples, mode, seed, task, timeout,
                               min_separation=min_separation)
        print(f"result {reply.result} mode_used {reply.mode_used!r} {reply.message}")
        for p, s in zip(reply.proposals, reply.scores):
            print(f"  ({p.x:8.3f}, {p.y:8.3f}, {p.z:8.3f})  score {s:8.3f}")
        client.close()
        return 0 if reply.result == ProposePlacements.Response.RESULT_OK else 1
    finally:
        rclpy.try_shutdown()
