"""`dualdiff bench-train`: training samples per second with 1 and with N processes at one global batch.

Each run spawns its processes (gloo on 127.0.0.1, one torch thread each) and trains the
navigate-to general prior's network (width 256, 4 layers, 267 condition numbers) on a shard set
of random rows through the real loop (training.run_training, shards read lazily), after a
warm-up. samples/s = steps x global batch / seconds of the timed run. The load average before
and after is recorded: other processes on the machine change the figure.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import time
from pathlib import Path

import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, opts: dict, out: str) -> None:
    import torch

    from ..diffusion.cluster import Cluster
    from ..diffusion.model import DiffusionModel
    from ..diffusion.normalizer import Normalizer
    from ..diffusion.schedules import NoiseSchedule
    from ..diffusion.shards import ShardRows, ShardSet
    from ..diffusion.training import TrainConfig, run_training

    torch.set_num_threads(opts["threads"])
    cluster = Cluster.start("cpu", f"tcp://127.0.0.1:{port}" if world > 1 else None, rank, world)
    try:
        shards = ShardSet(opts["data"])
        dc, dt = shards.column_dim("conditions"), shards.column_dim("targets")
        torch.manual_seed(opts["seed"])
        model = DiffusionModel.create({"name": "mlp", "width": opts["width"], "depth": opts["depth"]},
                                      NoiseSchedule(kind="linear", num_steps=100),
                                      Normalizer(-4 * np.ones(dt), 4 * np.ones(dt)),
                                      Normalizer(-4 * np.ones(dc), 4 * np.ones(dc)), {}, False)
        rows = ShardRows(shards, model)
        times = []
        for steps in (opts["warmup"], opts["steps"]):
            config = TrainConfig(steps=steps, batch_size=opts["global_batch"], seed=opts["seed"], progress=False,
                                 lr_schedule="constant")
            cluster.barrier()
            t0 = time.perf_counter()
            result = run_training(model, rows, config, shards.data_sha256, cluster=cluster)
            cluster.barrier()
            times.append(time.perf_counter() - t0)
        if cluster.is_main:
            Path(out).write_text(json.dumps({"processes": world, "seconds": times[1], "final_loss": result.losses[-1],
                                             "samples_per_second": opts["steps"] * opts["global_batch"] / times[1]}))
    finally:
        cluster.close()


def measure(processes: int, opts: dict) -> dict:
    """One timed run with `processes` ranks (spawned here); its samples/s and seconds."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "result.json")
        mp.spawn(_worker, args=(processes, _free_port(), opts, out), nprocs=processes, join=True)
        return json.loads(Path(out).read_text())


def random_shards(path: Path, rows: int, cond_dim: int, seed: int):
    from ..diffusion.shards import ShardSet, ShardWriter

    if (path / "manifest.json").exists():
        return ShardSet(path)
    rng = np.random.default_rng(seed)
    writer = ShardWriter(path, rows_per_shard=max(1, rows // 4))
    writer.append(conditions=rng.normal(size=(rows, cond_dim)), targets=rng.normal(size=(rows, 2)))
    return writer.close()


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--output", default="runs/bench-train", help="folder for results.json and the random shard set")
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    p.add_argument("--global-batch", type=int, default=2048, help="rows per optimizer step, over all processes")
    p.add_argument("--steps", type=int, default=60, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=1, help="timed runs per process count (the best is reported)")
    p.add_argument("--rows", type=int, default=65_536)
    p.add_argument("--cond-dim", type=int, default=267, help="condition numbers per row (navigate-to: 267)")
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--seed", type=int, default=0)
    return p


def run_from_args(args) -> int:
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    shards = random_shards(out / "data", args.rows, args.cond_dim, args.seed)
    opts = {"data": str(shards.root), "global_batch": args.global_batch, "steps": args.steps, "warmup": args.warmup,
            "width": args.width, "depth": args.depth, "threads": args.threads, "seed": args.seed}
    runs = []
    for n in args.processes:
        for _ in range(args.repeats):
            load_before = os.getloadavg()
            r = measure(n, opts)
            r["load_before"] = [round(v, 2) for v in load_before]
            r["load_after"] = [round(v, 2) for v in os.getloadavg()]
            runs.append(r)
            print(f"{n} process(es): {r['samples_per_second']:.0f} samples/s ({r['seconds']:.1f} s for {args.steps} "
                  f"steps of {args.global_batch}), load {r['load_before']} -> {r['load_after']}")
    best = {n: max(r["samples_per_second"] for r in runs if r["processes"] == n) for n in args.processes}
    base = best[args.processes[0]]
    ratios = {n: round(v / base, 3) for n, v in best.items()}
    print("ratio to", args.processes[0], "process(es):", ratios)
    result = {"settings": opts, "runs": runs, "best_samples_per_second": best, "ratio": ratios,
              "cpus": os.cpu_count(), "created_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}
    (out / "results.json").write_text(json.dumps(result, indent=1))
    return 0
