"""Fleet data for the mug_counter example: many homes, each keeping its mugs somewhere on its counter.

    python examples/mug_counter/generate.py --output fleet/mug_counter.parquet --homes 200 --rows 40
    python examples/mug_counter/generate.py --output home.parquet --homes 1 --rows 32 --seed 7   # one home

Written with pyarrow alone, as any robot's or notebook's pipeline would: one row per observation,
columns state.<name> and target.<name> as the spec names them, plus home_id, robot_id, task and
stamp. Each home keeps its mugs in one stretch of the counter (a fraction of its length, placed
where it fits), near the back or the front edge; the counter stands anywhere, turned any way,
so only in the counter's own (SE(2)) frame do the homes' mugs look alike.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DEPTH = 0.6  # the counter top's depth (m); the spec's plausible y is +- half of it


def home_rows(rng: np.random.Generator, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """One home: (states [rows, 4], mugs [rows, 2]) for counters at random poses, mugs in the home's stretch."""
    length = rng.uniform(1.0, 3.5)
    stretch = rng.uniform(0.2, 0.6) * length
    centre = rng.uniform(-(length - stretch) / 2, (length - stretch) / 2)
    edge = rng.choice([-1.0, 1.0]) * rng.uniform(0.05, 0.2)   # back or front half of the top
    x, y = rng.uniform(-8, 8, rows), rng.uniform(-8, 8, rows)
    yaw = rng.uniform(-np.pi, np.pi, rows)
    local_x = centre + rng.uniform(-stretch / 2, stretch / 2, rows)
    local_y = np.clip(edge + rng.normal(0, 0.03, rows), -DEPTH / 2, DEPTH / 2)
    c, s = np.cos(yaw), np.sin(yaw)
    mugs = np.stack([x + c * local_x - s * local_y, y + s * local_x + c * local_y], axis=1)
    return np.stack([x, y, yaw, np.full(rows, length)], axis=1), mugs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--output", required=True, help=".parquet file to write")
    p.add_argument("--homes", type=int, default=200)
    p.add_argument("--rows", type=int, default=40, help="observations per home")
    p.add_argument("--robots", type=int, default=4, help="robots the homes are spread over")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    parts = [home_rows(rng, args.rows) for _ in range(args.homes)]
    states = np.concatenate([s for s, _ in parts])
    mugs = np.concatenate([m for _, m in parts])
    homes = np.repeat([f"home{args.seed}-{h}" for h in range(args.homes)], args.rows)
    robots = np.repeat([f"robot{h % args.robots}" for h in range(args.homes)], args.rows)
    table = pa.table({
        "state.x": states[:, 0], "state.y": states[:, 1], "state.yaw": states[:, 2], "state.length": states[:, 3],
        "target.x": mugs[:, 0], "target.y": mugs[:, 1],
        "home_id": homes.tolist(), "robot_id": robots.tolist(), "task": ["mug"] * len(mugs),
        "stamp": 1.8e9 + np.arange(len(mugs), dtype=np.float64)})
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, args.output)
    print(f"wrote {args.output}: {len(mugs)} observations of {args.homes} home(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
