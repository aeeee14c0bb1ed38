"""Time to adapt and the learning curve, through the real nodes: a robot records observations one at a time.

`dualdiff adapt` plays a robot in each of `--homes` homes (the thesis's, then the learning curve's
family homes, same seed): for every home it starts the specialized model node and the placement
node on a fresh observation database and a copy of the priors (no specialist yet), then for
n = 1..N records one true location (RecordObservation) and measures

- context seconds: from the n-th acknowledgement to the first joint reply that says it used n
  observations (while the home-aware prior answers: `home_aware.*`);
- swap seconds: after each background retrain (`retrain_every`), from the acknowledgement that
  triggered it to the first reply served by the new specialist (its version in `specialized_version`);
- at chosen n (`--score-at`): accuracy, coverage and looks-to-find of the replies over a fixed set
  of furniture poses, beside the same numbers computed offline (in this process, no ROS) from the
  same home-aware checkpoint, the same observations, the served guidance and pseudo-observations:
  the learning curve's `served` row. The two differ only by sampling noise when the nodes serve what the curve measured.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from ..domains.homes import FAMILIES, homes
from ..seeds import stream
from .report import markdown_table

SCORE_POSES, SCORE_PROPOSALS, REFERENCE = 50, 8, 2000
SCORE_AT = (1, 2, 4, 8, 16, 32, 64, 128)
REPLY_SEEDS = 1_000_000  # offset of the scored requests' seeds from the offline curve's
METRICS = ("accuracy", "coverage", "looks_to_find")


def _wait(predicate, timeout: float, poll: float = 0.02):
    """(seconds, value) until predicate() returns a true value, or (nan, last value) at the timeout."""
    start = time.perf_counter()
    while True:
        value = predicate()
        if value or time.perf_counter() - start > timeout:
            return (time.perf_counter() - start if value else float("nan")), value
        time.sleep(poll)


def priors_only(model_dir, domain: str, into: Path) -> Path:
    """A model folder with the domain's general and home-aware priors and no specialist: a new robot's."""
    source, target = Path(model_dir) / domain, into / domain
    target.mkdir(parents=True, exist_ok=True)
    for stale in target.glob("specialized*.safetensors"):  # an earlier run into the same output trained it
        stale.unlink()
    for name in ("general.safetensors", "home_aware.safetensors"):
        if (source / name).exists():
            shutil.copy2(source / name, target / name)
    if not (target / "general.safetensors").exists():
        raise FileNotFoundError(f"no {source / 'general.safetensors'}: train the priors first "
                                f"(`dualdiff train --domain {domain} --model-dir {model_dir} --home-aware`)")
    return into


def run_adaptation(model_dir, output, domain: str = "cabinet", observations: int = 32, retrain_every: int = 8,
                   score_at=SCORE_AT, seed: int = 0, timeout: float = 120.0, homes_count: int = 1,
                   score_poses: int = SCORE_POSES, family: str = "box") -> dict:
    """Every home in turn; results.json and results.md (per home, and mean ± sd over homes)."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    drawn = homes(domain, homes_count, stream(seed, "homes"), family)
    rows = []
    for index, home in enumerate(drawn):
        rows += adapt_one_home(model_dir, output / home.name, domain, home, index, observations, retrain_every,
                               [n for n in score_at if n <= observations], seed, timeout, score_poses)
        result = {"domain": domain, "family": family, "homes": [h.name for h in drawn[:index + 1]],
                  "retrain_every": retrain_every,
                  "rows": rows, "summary": summarize(rows), "model_dir": str(model_dir), "seed": seed}
        (output / "results.json").write_text(json.dumps(result, indent=1))
        write_tables(output / "results.md", result)
    return result


def adapt_one_home(model_dir, folder: Path, domain: str, home, index: int, observations: int, retrain_every: int,
                   score_at, seed: int, timeout: float, score_poses: int) -> list[dict]:
    from dualdiff_interfaces.srv import RecordObservation

    from ..bringup import running_nodes
    from ..client import ProposalClient
    from .learning_curve import held_out_poses, observation_sequence

    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "observations.sqlite"
    db.unlink(missing_ok=True)
    models = priors_only(model_dir, domain, folder / "models")
    # The learning curve's observations and poses of this home and seed, so the two curves compare.
    obs_c, obs_t = observation_sequence(home, index, seed, observations)
    poses, reference_local = held_out_poses(home, index, seed, score_poses, REFERENCE)
    offline = OfflineCurve(models, domain, home, poses, reference_local, seed + 1000 * index)
    overrides = {"specialized_model_node": {"db_path": str(db), "retrain_every": retrain_every,
                                            "min_observations": min(8, retrain_every)}}
    rows = []
    with running_nodes(models, ("specialized_model_node", "placement_proposal_node"), overrides) as (ctx, _):
        client = ProposalClient(ctx, "dualdiff_adapt_client")
        record = client.node.create_client(RecordObservation, "specialized_model_node/record_observation")
        try:
            client.wait_for_service(20.0)
            record.wait_for_service(timeout_sec=20.0)
            client.wait_until_ready(domain, list(poses[0]), timeout=60.0, mode="general")

            def ask(mode="joint", pose=poses[0], n=1, seed=1):
                return client.propose(domain, list(pose), n, mode, seed=seed)

            # one seed per scored pose, as the offline curve has (one seed for all would draw the same
            # local-frame points at every pose), far from the offline seeds: the two differ by noise only
            reply_seeds = REPLY_SEEDS + seed + 1000 * index + np.arange(len(poses))

            version = ""
            for n in range(1, observations + 1):
                future = record.call_async(RecordObservation.Request(domain=domain, state=list(obs_c[n - 1]),
                                                                     target=list(obs_t[n - 1])))
                _wait(future.done, 30.0)
                ack = future.result()
                if ack is None or ack.result != 0:
                    raise RuntimeError(f"observation {n} not acknowledged: {ack.message if ack else 'timeout'}")
                row = {"home": home.name, "observations": n}
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
                    answers = [ask(pose=p, n=SCORE_PROPOSALS, seed=int(s)) for p, s in zip(poses, reply_seeds)]
                    row.update(served_scores(home, poses, answers, reference_local))
                    if row["answered_by"] == "home_aware":
                        row.update({f"offline_{k}": v for k, v in
                                    offline.scores(home.region_frame(obs_c[:n], obs_t[:n])).items()})
                rows.append(row)
                print(f"[adapt] {json.dumps(row)}", flush=True)
        finally:
            client.node.destroy_client(record)
            client.close()
    return rows


def served_scores(home, poses: np.ndarray, answers, reference_local: np.ndarray) -> dict:
    """The learning curve's metrics of the service's replies (best first, as a robot looks at them)."""
    from .learning_curve import score_samples

    bad = next((a for a in answers if a.result != 0 or len(a.proposals) != SCORE_PROPOSALS), None)
    if bad is not None:
        raise RuntimeError(f"a scoring request got result {bad.result} with {len(bad.proposals)} proposals: "
                           f"{bad.message}")
    got = np.array([[[q.x, q.y, q.z] for q in a.proposals] for a in answers])
    return score_samples(home, poses, got, reference_local, SCORE_PROPOSALS)


class OfflineCurve:
    """The learning curve's served row for the same poses, from the checkpoint the nodes serve."""

    def __init__(self, models: Path, domain: str, home, poses, reference_local, seed: int):
        from ..diffusion.checkpoint import load_checkpoint
        from ..model_store import ModelStore

        path = ModelStore(models).home_aware_path(domain)
        self.model = load_checkpoint(path) if path.exists() else None
        self.home, self.poses, self.reference, self.seed = home, poses, reference_local, seed

    def samples(self, observed_local: np.ndarray) -> np.ndarray | None:
        """Proposals at the guidance and pseudo-observations the service uses at this N (None: no home-aware answer)."""
        from .learning_curve import served_samples

        if self.model is None:
            return None
        return served_samples(self.model, self.home, observed_local, self.poses, SCORE_PROPOSALS, self.seed)[0]

    def scores(self, observed_local: np.ndarray) -> dict:
        from .learning_curve import score_samples

        samples = self.samples(observed_local)
        if samples is None:
            return {}
        return score_samples(self.home, self.poses, samples, self.reference, SCORE_PROPOSALS)


def summarize(rows: list[dict]) -> list[dict]:
    """Per n: mean ± sd over homes of the seconds and of the served and offline metrics."""
    out = []
    for n in sorted({r["observations"] for r in rows}):
        at = [r for r in rows if r["observations"] == n]
        entry = {"observations": n, "homes": len(at)}
        for key in ("context_seconds", "swap_seconds", *METRICS, *(f"offline_{m}" for m in METRICS)):
            vals = [r[key] for r in at if r.get(key) is not None and np.isfinite(r[key])]
            if vals:
                entry[key] = f"{np.mean(vals):.3f} ± {np.std(vals):.3f}" if len(vals) > 1 else f"{vals[0]:.3f}"
        if len(entry) > 2:
            out.append(entry)
    return out


def write_tables(path: Path, result: dict) -> None:
    columns = ["observations", "homes", "context_seconds", "swap_seconds", *METRICS, *(f"offline_{m}" for m in METRICS)]
    summary = [r for r in result["summary"] if any(k in r for k in METRICS) or "swap_seconds" in r]
    per_home = markdown_table(result["rows"], ["home", "observations", "answered_by", "context_seconds",
                                               "swap_seconds", *METRICS, *(f"offline_{m}" for m in METRICS)])
    path.write_text(f"# time to adapt and the curve through the nodes: {result['domain']}\n\n"
                    f"Homes {result['homes']}, seed {result['seed']}; mean ± sd over homes; `offline_*`: the same "
                    f"checkpoint and observations in-process (the learning curve's served row).\n\n"
                    f"{markdown_table(summary, columns)}\n\n## Every home\n\n{per_home}")


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--model-dir", required=True, help="ModelStore folder (general prior; home_aware if trained)")
    p.add_argument("--output", required=True)
    p.add_argument("--domain", default="cabinet", choices=["cabinet", "round_table"])
    p.add_argument("--observations", type=int, default=32)
    p.add_argument("--retrain-every", type=int, default=8)
    p.add_argument("--homes", type=int, default=1,
                   help="homes of the learning curve's --family (same --seed), one after another")
    p.add_argument("--family", default="box", choices=FAMILIES,
                   help="box (the thesis's home first), multi (2-4 places) or held_out (shapes no model trained on)")
    p.add_argument("--score-at", type=int, nargs="+", default=list(SCORE_AT), metavar="N",
                   help="observation counts at which the replies are scored beside the offline curve")
    p.add_argument("--score-poses", type=int, default=SCORE_POSES, help="furniture poses scored at each N")
    p.add_argument("--seed", type=int, default=0)
    return p


def run_from_args(args) -> int:
    run_adaptation(args.model_dir, args.output, args.domain, args.observations, args.retrain_every,
                   score_at=tuple(args.score_at), seed=args.seed, homes_count=args.homes, score_poses=args.score_poses,
                   family=args.family)
    print((Path(args.output) / "results.md").read_text().split("## Every home")[0])
    return 0
