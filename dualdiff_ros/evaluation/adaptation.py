"""Time to adapt, through the real nodes: a robot in a new home records observations one at a time.

`dualdiff adapt` starts the specialized model node and the placement node on a fresh observation
database, then plays a robot in the thesis's home: for n = 1..N it records one true location
(RecordObservation), and measures

- context seconds: from the n-th acknowledgement to the first joint reply that says it used n
  observations (while the home-aware prior answers: `home_aware.*`);
- swap seconds: after each background retrain (`retrain_every`), from the acknowledgement that
  triggered it to the first reply served by the new specialist (its version in `specialized_version`);
- the replies' accuracy in the home at chosen n (`--score-at`), over a fixed set of furniture poses.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ..domains.homes import homes
from .report import markdown_table

SCORE_POSES, SCORE_PROPOSALS = 20, 8


def _wait(predicate, timeout: float, poll: float = 0.02):
    """(seconds, value) until predicate() returns a true value, or (nan, last value) at the timeout."""
    start = time.perf_counter()
    while True:
        value = predicate()
        if value or time.perf_counter() - start > timeout:
            return (time.perf_counter() - start if value else float("nan")), value
        time.sleep(poll)


def run_adaptation(model_dir, output, domain: str = "cabinet", observations: int = 32, retrain_every: int = 8,
                   score_at=(1, 2, 4, 8, 16, 32), seed: int = 0, timeout: float = 120.0) -> dict:
    from dualdiff_interfaces.srv import RecordObservation

    from ..bringup import running_nodes
    from ..client import ProposalClient

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    db = output / "observations.sqlite"
    db.unlink(missing_ok=True)
    home = homes(domain, 1)[0]
    rng = np.random.default_rng(seed)
    obs_c = home.sample_conditions(observations, rng)
    obs_t = home.sample_specialized_targets(obs_c, rng)
    poses = home.sample_conditions(SCORE_POSES, np.random.default_rng(seed + 1))
    overrides = {"specialized_model_node": {"db_path": str(db), "retrain_every": retrain_every,
                                            "min_observations": min(8, retrain_every)}}
    rows = []
    with running_nodes(model_dir, ("specialized_model_node", "placement_proposal_node"), overrides) as (ctx, _):
        client = ProposalClient(ctx, "dualdiff_adapt_client")
        record = client.node.create_client(RecordObservation, "specialized_model_node/record_observation")
        try:
            client.wait_for_service(20.0)
            record.wait_for_service(timeout_sec=20.0)
            client.wait_until_ready(domain, list(poses[0]), timeout=60.0)

            def ask(mode="joint", pose=poses[0], n=1):
                return client.propose(domain, list(pose), n, mode, seed=1)

            version = ask("specialized").specialized_version if ask("specialized").result == 0 else ""
            for n in range(1, observations + 1):
                future = record.call_async(RecordObservation.Request(domain=domain, state=list(obs_c[n - 1]),
                                                                     target=list(obs_t[n - 1])))
                _wait(future.done, 30.0)
                ack = future.result()
                if ack is None or ack.result != 0:
                    raise RuntimeError(f"observation {n} not acknowledged: {ack.message if ack else 'timeout'}")
                row = {"observations": n}
                seconds, reply = _wait(lambda n=n: (r := ask()).result == 0 and (
                    f"this home's {n} observation" in r.message or r.mode_used != "home_aware") and r, 5.0)
                # once the composed specialist answers, the home-aware prior's context no longer applies
                row["context_seconds"] = seconds if reply and reply.mode_used == "home_aware" else None
                row["answered_by"] = reply.mode_used if reply else ""
                if n % retrain_every == 0:
                    row["swap_seconds"], fresh = _wait(
                        lambda: (r := ask("specialized")).result == 0 and r.specialized_version != version and r,
                        timeout)
                    version = fresh.specialized_version if fresh else version
                if n in score_at:
                    answers = [ask(pose=p, n=SCORE_PROPOSALS) for p in poses]
                    got = np.array([[q.x, q.y, q.z] for a in answers for q in a.proposals])
                    at = np.repeat(poses, [len(a.proposals) for a in answers], axis=0)
                    row["accuracy"] = float(home.in_specialized_region(at, got).mean())
                rows.append(row)
                print(f"[adapt] {json.dumps(row)}", flush=True)
        finally:
            client.node.destroy_client(record)
            client.close()
    result = {"domain": domain, "home": "thesis", "retrain_every": retrain_every, "rows": rows,
              "model_dir": str(model_dir)}
    (output / "results.json").write_text(json.dumps(result, indent=1))
    table = markdown_table(rows, ["observations", "answered_by", "context_seconds", "swap_seconds", "accuracy"])
    (output / "results.md").write_text(f"# time to adapt: {domain}, thesis home\n\n{table}")
    print(table)
    return result


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--model-dir", required=True, help="ModelStore folder (general prior; home_aware if trained)")
    p.add_argument("--output", required=True)
    p.add_argument("--domain", default="cabinet", choices=["cabinet", "round_table"])
    p.add_argument("--observations", type=int, default=32)
    p.add_argument("--retrain-every", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    return p


def run_from_args(args) -> int:
    run_adaptation(args.model_dir, args.output, args.domain, args.observations, args.retrain_every, seed=args.seed)
    return 0
