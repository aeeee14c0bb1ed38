"""Latency of a 32-proposal joint request for a home with a context, with the answer check, in process.

    .venv/bin/python scripts/check_latency.py --models artifacts/models-ha --summary artifacts/models-ha-summary

Rows: the service with the set-reading prior and the check (the check's first computation, then the
cached verdict), the same with the check off, the summary-reading prior (last release's path), and a
joint request of a home without a context (general + specialist). Over the service's answer() (no DDS:
the DDS round trip adds the same to every row; `dualdiff benchmark` measures it).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from dualdiff_ros import serving
from dualdiff_ros.domains.homes import homes

STATE = np.array([1.0, 2.0, 0.5])


def service_for(models: str, home_aware: str, values: dict) -> serving.PlacementService:
    svc = serving.PlacementService(models, values)
    svc.slots.put(("general", "cabinet", ""), svc.store.load_general("cabinet"))
    svc.slots.put(("specialized", "cabinet", ""), svc.store.load_specialized("cabinet"))
    svc.slots.put(("home_aware", "cabinet", ""), serving.load_for_slot("home_aware", "cabinet", "", home_aware,
                                                                        home_aware.rsplit("/cabinet/", 1)[0]))
    return svc


def timed(svc, n: int, task: str = "") -> list[float]:
    out = []
    for i in range(n):
        start = time.perf_counter()
        svc.answer("cabinet", task, "joint", STATE, 32, seed=i + 1)
        out.append(1000 * (time.perf_counter() - start))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", required=True)
    p.add_argument("--summary", required=True)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--observations", type=int, default=32)
    args = p.parse_args()
    home = homes("cabinet", 1, 7, "multi")[0]
    rng = np.random.default_rng(0)
    c = home.sample_conditions(args.observations, rng)
    t = home.sample_specialized_targets(c, rng)
    rows = {}
    on = serving.defaults()
    off = {**on, "check.enabled": False}
    svc = service_for(args.models, f"{args.models}/cabinet/home_aware.safetensors", on)
    svc.contexts.put_observations("cabinet", "", c, t)
    timed(svc, 3, "warm")  # no context for task "warm": loads the models' plans
    first = timed(svc, 1)[0]
    rows["set prior + check (cached verdict)"] = timed(svc, args.requests)
    rows["set prior + check (first request: the check itself)"] = [first]
    svc.configure(off)
    rows["set prior, check off"] = timed(svc, args.requests)
    rows["joint, no home context (general + specialist)"] = timed(svc, args.requests, "no_context")
    summary = service_for(args.models, f"{args.summary}/cabinet/home_aware.safetensors", off)
    summary.contexts.put_observations("cabinet", "", c, t)
    timed(summary, 3)
    rows["summary prior, no check (the last release's path)"] = timed(summary, args.requests)
    out = {k: {"p50_ms": float(np.median(v)), "p90_ms": float(np.percentile(v, 90)), "n": len(v)}
           for k, v in rows.items()}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
