"""Navigate-to through the placement service with the maps a robot has (docs/notes/2026-12-04-nav2-costmaps.md).

    python scripts/navigate_maps.py kinds --model-dir /tmp/nav2-models --states 100 --output runs/nav2-maps
    python scripts/navigate_maps.py size --model-dir /tmp/nav2-models --output runs/nav2-maps

`kinds`: held-out navigate-to-ball states (ball tasks after the 26 training tasks, scene seed 1, as the
study's test split), each asked of `PlacementService.answer` (the placement node's policy, in this
process: no DDS) with its scene's map given three ways: an occupancy grid at 0.1 m, one at 0.05 m, and
the 0.05 m grid as nav2 publishes its global costmap (maps.nav2_costmap: inflation radius = robot
radius + 0.55 m, cost_scaling_factor 3), defaults untouched (map.semantics auto). Every returned pose
is judged by PyBullet. Columns: validity (PyBullet-valid / returned), success@16 (a state with at
least one valid pose), candidates per valid (every candidate checked / those passing the map check),
p50 / p99 of one request.

`size`: one request on a 200 x 200 map (10 m at 0.05 m) and on a 6000 x 6000 one (300 m: the same
scene inside a free building), each through the node's own conversion of the message
(`grid_from` on an OccupancyGrid) and `PlacementService.answer`: median time, and the growth of the
process's peak RSS over the requests (the message itself, 36 MB, exists before; the peak may have been
set while building it) and the peak of what one request allocates (tracemalloc, numpy included).
"""
from __future__ import annotations

import argparse
import array
import inspect
import json
import resource
import time
import tracemalloc
from pathlib import Path

import numpy as np


def load_service(model_dir: str):
    from dualdiff_ros import serving
    from dualdiff_ros.diffusion.checkpoint import load_checkpoint

    service = serving.PlacementService(model_dir)
    root = Path(model_dir) / "navigate_to"
    service.slots.put(("general", "navigate_to", ""), serving.load_for_slot(
        "general", "navigate_to", "", root / "general.safetensors", model_dir))
    service.slots.put(("specialized", "navigate_to", ""), load_checkpoint(root / "specialized.safetensors"))
    return service


def held_out(states: int, tasks: int):
    from dualdiff_ros import sim
    from dualdiff_ros.sim.dataset import FULL_SPECIALIZED_TRAIN_TASKS

    data = sim.generate(1, sim.ball_task_indices(FULL_SPECIALIZED_TRAIN_TASKS, tasks), sim.SPECIALIZED_TYPES,
                        name="held_out")
    return sim.held_out_states(data).head(states)


def map_kinds(held, i: int) -> dict:
    from dualdiff_ros import navigate_to, sim
    from dualdiff_ros.maps import nav2_costmap
    from dualdiff_ros.sim.perception import step_map

    scene = sim.generate_scene(int(held.seed[i]), int(held.task_index[i]))
    step = int(held.step[i])
    fine = step_map(scene, step, 0.05)
    costmap = nav2_costmap(fine, inscribed_radius=navigate_to.ROBOT_RADIUS).with_semantics("occupancy")  # unsaid
    return {"occupancy 0.1 m": step_map(scene, step, 0.1), "occupancy 0.05 m": fine,
            "nav2 costmap 0.05 m": costmap}


def run_kinds(args) -> dict:
    from dualdiff_ros import serving
    from dualdiff_ros.evaluation.navigation import check_proposals

    service = load_service(args.model_dir)
    held = held_out(args.states, args.tasks)
    k = 16
    out = {}
    names = list(map_kinds(held, 0))
    answers = {n: [] for n in names}
    stats = {n: {"drawn": 0, "valid": 0, "ms": [], "refused": 0, "notes": {}} for n in names}
    for i in range(len(held)):
        grids = map_kinds(held, i)
        for name, grid in grids.items():
            t0 = time.perf_counter()
            try:
                a = service.answer("navigate_to", "", "joint", held.states[i], k, seed=i + 1, grid=grid)
                got, drawn, valid, note = a.proposals[:, :2], a.candidates_drawn, a.candidates_valid, a.message
            except serving.Refused as refused:
                got, drawn, valid, note = np.zeros((0, 2)), 0, 0, f"refused {refused.result}"
                stats[name]["refused"] += 1
            stats[name]["ms"].append(1e3 * (time.perf_counter() - t0))
            stats[name]["drawn"] += drawn
            stats[name]["valid"] += valid
            key = note.split(" (")[0] if note.startswith("map read") else ("ring search" if "ring search" in note
                                                                           else note[:40])
            stats[name]["notes"][key] = stats[name]["notes"].get(key, 0) + 1
            answers[name].append(got)
    for name in names:
        padded = np.full((len(held), k, 2), np.nan)
        for i, a in enumerate(answers[name]):
            padded[i, :len(a)] = a
        ok = check_proposals(held, np.nan_to_num(padded, nan=-1e3)) & np.isfinite(padded[..., 0])
        returned = np.isfinite(padded[..., 0]).sum()
        s = stats[name]
        out[name] = {"states": len(held), "validity": float(ok.sum() / max(returned, 1)),
                     "success@16": float(ok.any(axis=1).mean()), "returned_per_state": float(returned / len(held)),
                     "candidates_per_valid": float(s["drawn"] / max(s["valid"], 1)),
                     "p50_ms": float(np.percentile(s["ms"], 50)), "p99_ms": float(np.percentile(s["ms"], 99)),
                     "refused": s["refused"], "notes": s["notes"]}
        print(name, json.dumps(out[name]), flush=True)
    return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_size(args) -> dict:
    from builtin_interfaces.msg import Time

    from dualdiff_ros import sim
    from dualdiff_ros.maps import OccupancyMap
    from dualdiff_ros.nodes.placement_proposal_node import grid_from
    from dualdiff_ros.nodes.simulator_node import occupancy_grid
    from dualdiff_ros.sim.perception import step_map

    service = load_service(args.model_dir)
    held = held_out(1, 2)
    scene = sim.generate_scene(int(held.seed[0]), int(held.task_index[0]))
    house = step_map(scene, int(held.step[0]), 0.05)  # 440 x 440, origin (-1, -1)
    state = held.states[0].copy()
    cell = house.world_to_cell(state[:2])
    small = OccupancyMap(house.data[cell[1] - 100:cell[1] + 100, cell[0] - 100:cell[0] + 100].copy(), 0.05,
                         house.origin_x + (cell[0] - 100) * 0.05, house.origin_y + (cell[1] - 100) * 0.05)
    big = np.zeros((6000, 6000), np.int8)
    big[2800:2800 + house.height, 2800:2800 + house.width] = house.data
    large = OccupancyMap(big, 0.05, house.origin_x - 2800 * 0.05, house.origin_y - 2800 * 0.05)
    def message(grid):  # the OccupancyGrid as rclpy delivers it (data an array of int8)
        msg = occupancy_grid(OccupancyMap(np.zeros((1, 1), np.int8), grid.resolution, grid.origin_x, grid.origin_y),
                             "map", Time())
        msg.info.width, msg.info.height = grid.width, grid.height
        msg.data = array.array("b", grid.to_flat().tobytes())
        return msg

    messages = {"200 x 200": message(small), "6000 x 6000": message(large)}
    del big, large
    if "max_cells" not in inspect.signature(grid_from).parameters:  # the code before 2026-12-04
        old = grid_from
        grid_from = lambda msg, frame, max_cells: old(msg, frame)  # noqa: E731
    max_cells = 40_000_000
    out = {}
    for name, msg in messages.items():
        times = []
        before = peak_rss_mb()
        for r in range(args.repeats):
            t0 = time.perf_counter()
            grid = grid_from(msg, "map", max_cells)
            answer = service.answer("navigate_to", "", "joint", state, 16, seed=r + 1, grid=grid)
            times.append(1e3 * (time.perf_counter() - t0))
            del grid
        rss_growth = peak_rss_mb() - before
        tracemalloc.start()  # a separate request: what one request allocates at its peak (numpy included)
        grid = grid_from(msg, "map", max_cells)
        service.answer("navigate_to", "", "joint", state, 16, seed=1, grid=grid)
        allocated = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        del grid
        out[name] = {"median_ms": float(np.median(times)), "max_ms": float(np.max(times)),
                     "peak_rss_growth_mb": rss_growth, "allocated_peak_mb": allocated, "poses": len(answer.proposals),
                     "message": answer.message}
        print(name, json.dumps(out[name]), flush=True)
    return out


def main(argv=None) -> int:
    from dualdiff_ros.runtime import limit_torch_threads

    limit_torch_threads()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("kinds", "size"))
    parser.add_argument("--model-dir", required=True, help="a ModelStore with navigate_to/general and specialized")
    parser.add_argument("--output", default="runs/nav2-maps")
    parser.add_argument("--states", type=int, default=100, help="held-out ball states (kinds)")
    parser.add_argument("--tasks", type=int, default=60, help="ball tasks generated to find them (kinds)")
    parser.add_argument("--repeats", type=int, default=20, help="requests per map size (size)")
    args = parser.parse_args(argv)
    result = run_kinds(args) if args.what == "kinds" else run_size(args)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / f"{args.what}.json").write_text(json.dumps({"args": vars(args), "result": result}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
