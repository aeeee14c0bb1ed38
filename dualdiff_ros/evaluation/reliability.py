"""`dualdiff reliability`: what a hostile or careless client gets, under load and across kill -9.

Against real nodes over DDS with the models in `model_dir` (cabinet):
1. probes: absurd observations and states, huge strings, a bad task name, a forged model
   announcement, a request over the compute budget; each probe's result code and message;
2. load: 8 clients x 100 requests at once (every fifth one bad): failures, p50 / p99;
3. small requests while large ones run: p50 / p99 of 1-proposal requests beside a client sending
   the costliest request the budget allows;
4. durability: the specialized node as its own process, killed with SIGKILL while a client
   records observations; acknowledged ids against the ids in the database after a restart.
Writes reliability.json and reliability.md.
"""
from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .report import markdown_table

DOMAIN, STATE = "cabinet", [1.0, 2.0, 0.5]


def _probes(client, record, announce, model_dir: Path) -> list[dict]:
    """Each probe once: what came back."""
    from dualdiff_interfaces.msg import ModelInfo
    from dualdiff_interfaces.srv import RecordObservation

    from ..nodes.calls import call_sync

    def observation(state, target, task=""):
        reply = call_sync(record, RecordObservation.Request(domain=DOMAIN, task=task, state=state, target=target))
        return reply.result, reply.message

    def propose(**fields):
        reply = client.propose(fields.pop("domain", DOMAIN), fields.pop("state", STATE), fields.pop("n", 8),
                               fields.pop("mode", "joint"), seed=3, task=fields.pop("task", ""))
        finite = all(np.isfinite([p.x, p.y, p.z]).all() for p in reply.proposals)
        return reply.result, reply.message + ("" if finite else " [NON-FINITE PROPOSAL]")

    rows = []

    def probe(name, outcome):
        code, message = outcome
        rows.append({"probe": name, "result": code, "message": message[:110].replace("|", "/"),
                     "message_bytes": len(message.encode())})

    probe("observation target 1e300", observation(STATE, [1e300, 2.0, 1.0]))
    probe("observation target 1e9", observation(STATE, [1e9, 2.0, 1.0]))
    probe("observation 1 km from the furniture", observation(STATE, [1001.0, 2.0, 1.0]))
    probe("observation task 'mugs\\n'", observation(STATE, STATE, "mugs\n"))
    probe("state 1e25, joint", propose(state=[1e25, 2.0, 1.0]))
    probe("state 1e25, general", propose(state=[1e25, 2.0, 1.0], mode="general"))
    probe("1 MB domain string", propose(domain="x" * 1_000_000))
    probe("1 MB mode string", propose(mode="x" * 1_000_000))
    probe("task 'mugs\\n'", propose(task="mugs\n", mode="specialized"))
    probe("256 proposals, default settings", propose(n=256))
    announce.publish(ModelInfo(role="specialized", domain=DOMAIN,
                               checkpoint_path=str(model_dir / "round_table" / "specialized.safetensors")))
    time.sleep(1.0)
    probe("after a forged announcement (round-table specialist as cabinet's)", propose(mode="specialized"))
    return rows


def _load(pool, per_client: int) -> dict:
    """Every client sends `per_client` requests at once, every fifth one with an absurd state."""
    latencies, wrong, lock = [], [], threading.Lock()

    def work(k, client):
        for i in range(per_client):
            bad = (k + i) % 5 == 0
            t0 = time.perf_counter()
            reply = client.propose(DOMAIN, [1e25, 0.0, 0.0] if bad else STATE, 16, "joint", seed=k * 1000 + i + 1)
            ms = 1e3 * (time.perf_counter() - t0)
            with lock:
                latencies.append(ms)
                if reply.result != (1 if bad else 0):
                    wrong.append((k, i, reply.result, reply.message[:80]))

    threads = [threading.Thread(target=work, args=(k, c)) for k, c in enumerate(pool)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"clients": len(pool), "requests": len(latencies), "wrong_results": len(wrong),
            "p50_ms": float(np.percentile(latencies, 50)), "p99_ms": float(np.percentile(latencies, 99))}


def _small_beside_large(small, large, seconds: float, large_samples: int) -> dict:
    """p50 / p99 of 1-proposal requests while another client keeps sending large ones."""
    stop, large_ms, small_ms = threading.Event(), [], []

    def heavy():
        while not stop.is_set():
            t0 = time.perf_counter()
            large.propose(DOMAIN, STATE, large_samples, "joint", seed=1)
            large_ms.append(1e3 * (time.perf_counter() - t0))

    thread = threading.Thread(target=heavy)
    thread.start()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        t0 = time.perf_counter()
        small.propose(DOMAIN, STATE, 1, "joint", seed=2)
        small_ms.append(1e3 * (time.perf_counter() - t0))
    stop.set()
    thread.join()
    return {"large_samples": large_samples, "large_p50_ms": float(np.percentile(large_ms, 50)),
            "small_requests": len(small_ms), "small_p50_ms": float(np.percentile(small_ms, 50)),
            "small_p99_ms": float(np.percentile(small_ms, 99))}


def _kill_rounds(model_dir: Path, work: Path, rounds: int, seconds: float) -> list[dict]:
    """Record observations from this process while the specialized node (a child process) is SIGKILLed."""
    import rclpy
    from dualdiff_interfaces.srv import RecordObservation
    from rclpy.context import Context

    from ..learning import ObservationStore
    from ..nodes.calls import call_sync

    db = work / "kill9.sqlite"
    out = []
    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node("dualdiff_kill9_client", context=context)
    from rclpy.executors import SingleThreadedExecutor
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    client = node.create_client(RecordObservation, "/specialized_model_node/record_observation")
    try:
        for r in range(rounds):
            child = subprocess.Popen(
                [sys.executable, "-c", "from dualdiff_ros.nodes.specialized_model_node import main; main()",
                 "--ros-args",
                 "-p", f"model_dir:={model_dir}", "-p", f"db_path:={db}", "-p", "retrain_every:=0"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            # Discovery may still list the killed node's service: wait for a real answer of the new one.
            deadline, up = time.monotonic() + 60.0, False
            while not up and time.monotonic() < deadline and child.poll() is None:
                try:
                    up = call_sync(client, RecordObservation.Request(domain="?"), timeout=2.0).result != 0
                except TimeoutError:
                    pass
            if not up:
                child.kill()
                raise RuntimeError("the specialized node did not come up")
            acked: list[int] = []
            killer = threading.Timer(seconds, lambda: child.send_signal(signal.SIGKILL))
            killer.start()
            rng = np.random.default_rng(r)
            while child.poll() is None:
                target = [1.0 + rng.uniform(-0.4, 0.4), 2.0 + rng.uniform(-0.4, 0.4), 1.0]
                try:
                    reply = call_sync(client, RecordObservation.Request(domain=DOMAIN, state=STATE, target=target),
                                      timeout=2.0)
                except TimeoutError:
                    break
                if reply.result == 0:
                    acked.append(int(reply.observation_id))
            child.wait()
            killer.cancel()
            with ObservationStore(db) as store:
                present = set(store.ids(DOMAIN))
            out.append({"round": r + 1, "acknowledged": len(acked),
                        "present": len(set(acked) & present), "lost": len(set(acked) - present)})
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    return out


def run_reliability(model_dir: str, output: str, per_client: int = 100, kill_rounds: int = 3,
                    kill_after: float = 4.0, small_seconds: float = 10.0) -> dict:
    from dualdiff_interfaces.msg import ModelInfo
    from dualdiff_interfaces.srv import RecordObservation

    from .. import serving
    from ..bringup import running_nodes
    from ..client import ProposalClient
    from ..nodes.topics import MODEL_INFO_TOPIC, latched_qos

    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    model_dir = Path(model_dir).expanduser()
    nodes = ("specialized_model_node", "placement_proposal_node")
    overrides = {"specialized_model_node": {"db_path": str(out / "probes.sqlite"), "retrain_every": 0}}
    with running_nodes(str(model_dir), nodes, overrides) as (context, started):
        pool = [ProposalClient(context, f"dualdiff_reliability_{i}") for i in range(8)]
        try:
            for c in pool:
                c.wait_for_service(20.0)
            pool[0].wait_until_ready(DOMAIN, STATE)
            record = pool[0].node.create_client(RecordObservation, "/specialized_model_node/record_observation")
            record.wait_for_service(timeout_sec=20.0)
            announce = pool[0].node.create_publisher(ModelInfo, MODEL_INFO_TOPIC, latched_qos())
            probes = _probes(pool[0], record, announce, model_dir)
            load = _load(pool, per_client)
            proposer = next(n for n in started if n.get_name() == "placement_proposal_node")
            budget = proposer.get_parameter("budget.max_sample_passes").value
            schedule = proposer.service.slots.pair(DOMAIN, "")[0].schedule
            largest = min(proposer.get_parameter("max_samples").value,
                          budget // proposer.service.proposer.passes_per_sample(schedule, "joint"))
            beside = _small_beside_large(pool[1], pool[2], small_seconds, int(largest))
        finally:
            for c in pool:
                c.close()
    kills = _kill_rounds(model_dir, out, kill_rounds, kill_after)
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "model_dir": str(model_dir), "budget.max_sample_passes": serving.defaults()["budget.max_sample_passes"],
              "probes": probes, "load": load, "small_beside_large": beside, "kill9": kills}
    (out / "reliability.json").write_text(json.dumps(result, indent=1))
    text = ("## probes\n\n" + markdown_table(probes, ["probe", "result", "message_bytes", "message"])
            + "\n## load\n\n" + markdown_table([load], list(load), digits={"p50_ms": 1, "p99_ms": 1})
            + "\n## small requests beside large ones\n\n" + markdown_table([beside], list(beside), digits={
                "large_p50_ms": 1, "small_p50_ms": 1, "small_p99_ms": 1})
            + "\n## kill -9\n\n" + markdown_table(kills, ["round", "acknowledged", "present", "lost"]))
    (out / "reliability.md").write_text(text)
    print(text)
    return result
