"""`dualdiff demo`: the whole product in one run on a machine without ROS installed.

1. trains the cabinet and round-table models once (reused on the next run),
2. starts the general-prior, specialized-model and placement-proposal nodes in this process,
3. calls /dualdiff/propose_placements over DDS as a robot would and prints proposals,
4. evaluates every mode on held-out conditions through the service, writes a table and plots.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .domains import get_domain
from .training_jobs import train_domain

DOMAINS = ("cabinet", "round_table")
MODES = ("general", "specialized", "joint")
EVAL_CONDITIONS, EVAL_SAMPLES, EVAL_SEED = 100, 10, 2024


def run_demo(model_dir: str, output: str, recipe_name: str = "demo", retrain: bool = False,
             eval_conditions: int = EVAL_CONDITIONS) -> int:
    start = time.perf_counter()
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    for domain in DOMAINS:
        train_domain(domain, model_dir, recipe_name, force=retrain)
    trained = time.perf_counter()
    rows, examples = _serve_and_query(model_dir, output, eval_conditions)
    _write(output, rows, examples, eval_conditions)
    print(_table(rows))
    print(f"[demo] trained/reused models in {trained - start:.0f} s; served and evaluated in "
          f"{time.perf_counter() - trained:.0f} s. Wrote {output}/results.md, results.json and *_proposals.png")
    print("[demo] next: `make run` serves these models; then, in another shell: "
          "`.venv/bin/dualdiff propose --domain cabinet --state 1.0 2.0 0.5 -n 5`")
    return 0


def _serve_and_query(model_dir: str, output: Path, eval_conditions: int):
    import rclpy
    from rclpy.context import Context

    from .bringup import default_config, start_nodes, stop_nodes
    from .client import ProposalClient

    context = Context()
    rclpy.init(context=context)
    executor, nodes, client = None, [], None
    try:
        executor, nodes = start_nodes(
            context, default_config(), model_dir,
            nodes=("general_prior_node", "specialized_model_node", "placement_proposal_node"),
            overrides={"general_prior_node": {"domains": list(DOMAINS)},
                       "specialized_model_node": {"db_path": str(output / "observations.sqlite"),
                                                  "retrain_every": 0}})
        import threading
        threading.Thread(target=executor.spin, daemon=True).start()
        client = ProposalClient(context, "dualdiff_demo_client")
        if not client.wait_for_service(20.0):
            raise RuntimeError("the placement service did not come up")
        rows, examples = [], {}
        for domain in DOMAINS:
            dom = get_domain(domain)
            client.wait_until_ready(domain, [1.0, 2.0, 0.5])
            examples[domain] = _example(client, dom)
            rows += _evaluate(client, dom, eval_conditions)
        return rows, examples
    finally:
        if client is not None:
            client.close()
        if executor is not None:
            stop_nodes(executor, nodes)
        rclpy.try_shutdown(context=context)


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
