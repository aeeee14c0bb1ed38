"""`dualdiff benchmark`: latency and throughput of /dualdiff/propose_placements over real DDS.

Starts the nodes in this process (as `make run` does), then measures
- latency p50 / p99 of sequential cabinet requests (joint by default, 32 proposals each),
- requests per second with `clients` concurrent client nodes.
With `domain="navigate_to"` each request is a held-out navigate-to-ball state with its map
(200 x 200 cells at 0.1 m, the simulator's scene), the map check included.
Writes benchmark.json and benchmark.md to the output folder.
"""
from __future__ import annotations

import json
import os
import platform
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..domains import NAVIGATE_TO

DOMAIN, STATE = "cabinet", (1.0, 2.0, 0.5)


def navigate_request(map_kind: str = "occupancy", resolution: float = 0.1):
    """(state, OccupancyGrid message) of one held-out navigate-to-ball state and its map.

    Default: the occupancy grid, 200 x 200 at 0.1 m. `map_kind` "costmap": that grid as nav2 publishes
    its costmap for the simulator's robot (maps.nav2_costmap); `resolution` 0.05: 400 x 400 cells.
    """
    from builtin_interfaces.msg import Time

    from .. import sim
    from ..nodes.simulator_node import occupancy_grid
    from ..sim.dataset import FULL_SPECIALIZED_TRAIN_TASKS
    from ..sim.occupancy import rasterize_scene

    held = sim.held_out_states(sim.generate(1, sim.ball_task_indices(FULL_SPECIALIZED_TRAIN_TASKS, 2),
                                            sim.SPECIALIZED_TYPES, name="benchmark"))
    i = int(np.argmax([len(r) for r in held.reference]))  # an ordinary state: many recorded valid targets
    scene = sim.generate_scene(int(held.seed[i]), int(held.task_index[i]))
    grid = rasterize_scene(scene, resolution, absent=scene.steps[int(held.step[i])].absent)
    if map_kind == "costmap":
        from ..maps import nav2_costmap
        from ..navigate_to import ROBOT_RADIUS

        grid = nav2_costmap(grid, inscribed_radius=ROBOT_RADIUS)
    elif map_kind != "occupancy":
        raise ValueError(f"map kind {map_kind!r}: use occupancy or costmap")
    return [float(v) for v in held.states[i]], occupancy_grid(grid, "map", Time())


def run_service_benchmark(model_dir: str, output: str, requests: int = 200, clients: int = 8,
                          num_samples: int = 32, overrides: dict | None = None, mode: str = "joint",
                          domain: str = DOMAIN, map_kind: str = "occupancy", map_resolution: float = 0.1) -> dict:
    from ..bringup import running_nodes
    from ..client import ProposalClient

    request = (domain, list(STATE), None) if domain == DOMAIN else (NAVIGATE_TO,
                                                                    *navigate_request(map_kind, map_resolution))
    overrides = {"general_prior_node": {"domains": [domain]}, "placement_proposal_node": dict(overrides or {})}
    with running_nodes(model_dir, ("general_prior_node", "placement_proposal_node"), overrides) as (context, _):
        # One client for the latency phase: the throughput phase's other client nodes, idle but
        # spinning in this process, would otherwise compete with the service for the GIL (+2-4 ms),
        # which a robot's clients in their own processes do not.
        pool = [ProposalClient(context, "dualdiff_bench_client_0")]
        try:
            if not pool[0].wait_for_service(20.0):
                raise RuntimeError("the placement service did not come up")
            pool[0].wait_until_ready(request[0], request[1])
            for _ in range(10):  # warm-up: first calls pay for allocation and discovery
                _call(pool[0], request, num_samples, mode, 0)
            latencies = _sequential(pool[0], request, requests, num_samples, mode)
            pool += [ProposalClient(context, f"dualdiff_bench_client_{i}") for i in range(1, clients)]
            for client in pool[1:]:
                client.wait_for_service(20.0)
            throughput = _concurrent(pool, request, requests, num_samples, mode)
        finally:
            for c in pool:
                c.close()
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "request": {"domain": domain, "mode": mode, "num_samples": num_samples,
                    "map": None if request[2] is None else f"{request[2].info.width} x {request[2].info.height} "
                                                            f"{map_kind} at {map_resolution:g} m"},
        "sequential_requests": requests,
        "latency_ms": {"p50": float(np.percentile(latencies, 50)), "p99": float(np.percentile(latencies, 99)),
                       "mean": float(np.mean(latencies))},
        "concurrent_clients": clients, "requests_per_second": throughput,
        "overrides": overrides or {},
    }
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmark.json").write_text(json.dumps(result, indent=1))
    (out / "benchmark.md").write_text(
        f"| latency p50 (ms) | latency p99 (ms) | requests/s with {clients} clients |\n|---|---|---|\n"
        f"| {result['latency_ms']['p50']:.1f} | {result['latency_ms']['p99']:.1f} | {throughput:.1f} |\n")
    print(json.dumps(result, indent=1))
    return result


def _call(client, request: tuple, num_samples: int, mode: str, seed: int):
    """One request; `request` is (domain, state, map message or None)."""
    domain, state, grid = request
    return client.propose(domain, state, num_samples, mode, seed=seed, grid=grid)


def _sequential(client, request: tuple, requests: int, num_samples: int, mode: str) -> list[float]:
    latencies = []
    for i in range(requests):
        t0 = time.perf_counter()
        reply = _call(client, request, num_samples, mode, i + 1)
        latencies.append(1e3 * (time.perf_counter() - t0))
        if reply.result != 0:
            raise RuntimeError(f"request failed: {reply.message}")
    return latencies


def _concurrent(pool, request: tuple, requests: int, num_samples: int, mode: str) -> float:
    per_client = max(1, requests // len(pool))
    failures = []

    def work(client, offset):
        for i in range(per_client):
            if _call(client, request, num_samples, mode, offset + i + 1).result != 0:
                failures.append(offset + i)

    threads = [threading.Thread(target=work, args=(c, k * per_client)) for k, c in enumerate(pool)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if failures:
        raise RuntimeError(f"{len(failures)} concurrent requests failed")
    return per_client * len(pool) / elapsed
