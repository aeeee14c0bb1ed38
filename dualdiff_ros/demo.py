"""`dualdiff demo`: the whole product in one run on a machine without ROS installed.

1. trains the cabinet, round-table and navigate-to models once (reused on the next run), and the
   cabinet's and round table's home-aware priors (set encoder, fleet homes of many shapes), so the
   nodes answer a home's first observations as a robot's would,
2. starts the general-prior, specialized-model, placement-proposal and simulator nodes in this process,
3. calls /dualdiff/propose_placements over DDS as a robot would and prints proposals; for
   navigate-to it takes the simulator's map from /dualdiff/scene_map, as a robot takes nav2's,
   prints the poses it gets back and checks them in PyBullet,
4. evaluates every mode on held-out conditions through the service, writes a table and plots.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .domains import NAVIGATE_TO, get_domain
from .training_jobs import train_domain, train_home_aware

DOMAINS = ("cabinet", "round_table")
MODES = ("general", "specialized", "joint")
EVAL_CONDITIONS, EVAL_SAMPLES, EVAL_SEED = 100, 10, 2024


def run_demo(model_dir: str, output: str, recipe_name: str = "demo", retrain: bool = False,
             eval_conditions: int = EVAL_CONDITIONS) -> int:
    start = time.perf_counter()
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    for domain in (*DOMAINS, NAVIGATE_TO):
        train_domain(domain, model_dir, recipe_name, force=retrain)
    for domain in DOMAINS:
        train_home_aware(domain, model_dir, recipe_name, force=retrain)
    trained = time.perf_counter()
    rows, examples, navigation = _serve_and_query(model_dir, output, eval_conditions)
    _write(output, rows, examples, eval_conditions)
    _draw_navigation(output / "navigate_to_poses.png", navigation)
    print(_table(rows))
    print(f"[demo] navigate_to: {navigation['valid'].sum()} of {len(navigation['valid'])} poses valid in PyBullet "
          f"({navigation['drawn']} candidates drawn, {navigation['map_valid']} passed the map check)")
    print(f"[demo] trained/reused models in {trained - start:.0f} s; served and evaluated in "
          f"{time.perf_counter() - trained:.0f} s. Wrote {output}/results.md, results.json and *_proposals.png")
    print("[demo] next: `make run` serves these models; then, in another shell: "
          "`.venv/bin/dualdiff propose --domain cabinet --state 1.0 2.0 0.5 -n 5`")
    return 0


def _serve_and_query(model_dir: str, output: Path, eval_conditions: int):
    from .bringup import running_nodes
    from .client import ProposalClient

    nodes = ("general_prior_node", "specialized_model_node", "placement_proposal_node", "simulator_node")
    overrides = {"general_prior_node": {"domains": [*DOMAINS, NAVIGATE_TO]},
                 "specialized_model_node": {"db_path": str(output / "observations.sqlite"), "retrain_every": 0}}
    with running_nodes(model_dir, nodes, overrides) as (context, started):
        client = ProposalClient(context, "dualdiff_demo_client")
        try:
            if not client.wait_for_service(20.0):
                raise RuntimeError("the placement service did not come up")
            rows, examples = [], {}
            for domain in DOMAINS:
                dom = get_domain(domain)
                client.wait_until_ready(domain, [1.0, 2.0, 0.5])
                examples[domain] = _example(client, dom)
                rows += _evaluate(client, dom, eval_conditions)
            simulator = next(n for n in started if n.get_name() == "simulator_node")
            return rows, examples, _navigate(client, simulator)
        finally:
            client.close()


def _navigate(client, simulator, num_poses: int = 8) -> dict:
    """One held-out navigate-to-ball state: its map from the simulator node's topic, poses from the service."""
    from nav_msgs.msg import OccupancyGrid

    from . import sim
    from .nodes.topics import SCENE_MAP_TOPIC, latched_qos
    from .sim.dataset import FULL_SPECIALIZED_TRAIN_TASKS

    held = sim.held_out_states(sim.generate(1, sim.ball_task_indices(FULL_SPECIALIZED_TRAIN_TASKS, 2),
                                            sim.SPECIALIZED_TYPES, name="demo"))
    state, seed, task, step = held.states[0], int(held.seed[0]), int(held.task_index[0]), int(held.step[0])
    from rclpy.parameter import Parameter

    # Show that scene, then take its map from the latched topic (depth 1: this scene's), as from nav2.
    simulator.set_parameters([Parameter("scene_seed", value=seed), Parameter("scene_task", value=task),
                              Parameter("scene_step", value=step)])
    maps: list = []
    topic = client.node.create_subscription(OccupancyGrid, SCENE_MAP_TOPIC, maps.append, latched_qos(1)).topic_name
    deadline = time.monotonic() + 20.0
    while not maps:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no map on {topic}")
        time.sleep(0.05)
    grid = maps[-1]
    client.wait_until_ready(NAVIGATE_TO, state)
    reply = client.propose(NAVIGATE_TO, state, num_poses, "joint", seed=7, grid=grid, frame_id="map")
    print(f"[demo] navigate_to ball at ({state[0]:.2f}, {state[1]:.2f}), map {grid.info.width} x "
          f"{grid.info.height} from {topic}: result {reply.result} {reply.message}")
    poses = np.array([[p.pose.position.x, p.pose.position.y,
                       2 * np.arctan2(p.pose.orientation.z, p.pose.orientation.w)] for p in reply.poses]).reshape(-1, 3)
    for pose, (x, y, yaw), s in list(zip(reply.poses, poses, reply.scores))[:4]:
        print(f"         pose ({x:6.2f}, {y:6.2f}) yaw {np.degrees(yaw):7.1f} deg in {pose.header.frame_id!r}, "
              f"score {s:7.3f}")
    scene = sim.generate_scene(seed, task)
    with sim.World() as world:
        world.load(scene)
        world.set_step(scene.steps[step])
        valid = world.check_targets(scene.steps[step].object_index, poses[:, :2]) if len(poses) else np.zeros(0, bool)
    return {"scene": scene, "step": step, "state": state, "poses": poses, "valid": valid,
            "drawn": reply.candidates_drawn, "map_valid": reply.candidates_valid}


def _draw_navigation(path: Path, nav: dict) -> None:
    """Top-down: the scene and the poses the service returned, and the map patch the denoiser saw."""
    from matplotlib.figure import Figure

    from . import sim
    from .navigate_to import PatchSpec, patch
    from .sim.perception import step_map

    fig = Figure(figsize=(11, 5.2))
    left, right = fig.subplots(1, 2)
    scene, step, state = nav["scene"], nav["step"], nav["state"]
    sim.draw_scene(scene, object_index=scene.steps[step].object_index, proposals=nav["poses"][:, :2],
                   valid=nav["valid"], absent=scene.steps[step].absent, ax=left,
                   title="navigate_to: poses from the service (green = valid in PyBullet)")
    for x, y, yaw in nav["poses"]:
        left.arrow(x, y, 0.8 * np.cos(yaw), 0.8 * np.sin(yaw), head_width=0.3, color="tab:green")
    spec = PatchSpec()
    half = spec.half_extent
    cmap = "Greys_r" if spec.features == "clearance" else "Greys"  # obstacles dark either way
    right.imshow(patch(step_map(scene, step), state, spec), origin="lower", cmap=cmap, vmin=0, vmax=1,
                 extent=(state[0] - half, state[0] + half, state[1] - half, state[1] + half))
    right.scatter(*nav["poses"][:, :2].T, s=12, c="tab:green")
    right.plot(state[0], state[1], "o", color="tab:orange")
    right.set_title(f"the map patch in the condition ({spec.cells} x {spec.cells}, {spec.features})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _example(client, dom) -> dict:
    """One condition, every mode, 200 proposals: printed briefly and plotted."""
    state = [1.0, 2.0, 0.5]
    out = {"state": state}
    for mode in MODES:
        reply = client.propose(dom.name, state, 200, mode, seed=7)
        points = np.array([[p.x, p.y, p.z] for p in reply.proposals])
        out[mode] = {"points": points, "scores": np.array(reply.scores), "mode_used": reply.mode_used,
                     "message": reply.message}
        print(f"[demo] {dom.name} {mode:11s} state {state}: result {reply.result} mode_used {reply.mode_used}"
              f" {reply.message}")
        for p, s in list(zip(points, reply.scores))[:3]:
            print(f"         proposal ({p[0]:6.3f}, {p[1]:6.3f}, {p[2]:6.3f}) score {s:7.3f}")
    return out


def _evaluate(client, dom, eval_conditions: int) -> list[dict]:
    """Accuracy and coverage of each mode on held-out conditions, every proposal through the service."""
    from .evaluation import metrics

    rng = np.random.default_rng(EVAL_SEED)
    conditions = dom.sample_conditions(eval_conditions, rng)
    ref_c = np.repeat(conditions, EVAL_SAMPLES, axis=0)
    reference = dom.local_frame(ref_c, dom.sample_specialized_targets(ref_c, rng))
    rows = []
    for mode in MODES:
        t0 = time.perf_counter()
        samples = []
        for i, c in enumerate(conditions):
            reply = client.propose(dom.name, c, EVAL_SAMPLES, mode, seed=1 + i)
            if reply.result != 0:
                raise RuntimeError(f"{dom.name}/{mode}: {reply.message}")
            samples.append([[p.x, p.y, p.z] for p in reply.proposals])
        samples = np.array(samples)
        local = metrics.local_samples(dom, conditions, samples)
        rows.append({"domain": dom.name, "mode": mode, "accuracy": metrics.accuracy(dom, conditions, samples),
                     "coverage": metrics.coverage(reference, local),
                     "ms_per_request": 1000 * (time.perf_counter() - t0) / len(conditions)})
    return rows


def _table(rows) -> str:
    from .evaluation.report import markdown_table

    return markdown_table(rows, ["domain", "mode", "accuracy", "coverage", "ms_per_request"],
                          ["domain", "mode", "accuracy", "coverage", f"ms/request ({EVAL_SAMPLES} proposals)"],
                          digits={"ms_per_request": 1})


def _write(output: Path, rows, examples, eval_conditions: int):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (output / "results.json").write_text(json.dumps(rows, indent=1))
    (output / "results.md").write_text(
        f"# dualdiff demo\n\n{eval_conditions} held-out conditions x {EVAL_SAMPLES} proposals, every one "
        "through /dualdiff/propose_placements.\n\n" + _table(rows))
    for domain, ex in examples.items():
        dom = get_domain(domain)
        fig, axes = plt.subplots(1, len(MODES), figsize=(4 * len(MODES), 4))
        cond = np.array([ex["state"]])
        truth = dom.sample_specialized_targets(np.repeat(cond, 1000, axis=0), np.random.default_rng(0))
        for ax, mode in zip(axes, MODES):
            pts = ex[mode]["points"]
            inside = dom.in_specialized_region(np.repeat(cond, len(pts), axis=0), pts)
            ax.scatter(truth[:, 0], truth[:, 1], s=2, c="#9ecae1", label="this home's true region")
            ax.scatter(pts[inside, 0], pts[inside, 1], s=6, c="tab:green", label="proposal inside")
            ax.scatter(pts[~inside, 0], pts[~inside, 1], s=6, c="tab:red", label="proposal outside")
            ax.set_title(f"{mode} (used {ex[mode]['mode_used']}): {inside.mean():.2f} inside", fontsize=9)
            ax.set_aspect("equal")
        axes[0].legend(fontsize=7, loc="lower left")
        fig.suptitle(f"{domain}: 200 proposals for state {ex['state']} (top view)")
        fig.tight_layout()
        fig.savefig(output / f"{domain}_proposals.png", dpi=100)
        plt.close(fig)
