"""Object type in the navigate-to prior's condition, or size only: which serves the unseen ball best.

Issue 13's question, measured: does the general prior serve the ball better with the object type
in its condition (dropped to a null token part of the time), or with size only?

The ball is a type the general data never has, so a type-conditioned prior can only serve it with the
null token ("null-type"); "size-only" is the served model (the state carries the object's size).
Guidance on the map (classifier-free, `SamplerConfig.guidance`) is swept for both. Every proposal is
judged by PyBullet. Demo-size models (the demo recipe) keep a seed to minutes:

    .venv/bin/python scripts/navigate_type_condition.py --data-dir runs/navdata --seeds 0 1 \
        --output runs/nav_type
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from dualdiff_ros import sim
from dualdiff_ros.diffusion.proposer import Proposer
from dualdiff_ros.domains import NAVIGATE_TO
from dualdiff_ros.evaluation.navigation import NavigationSettings, Perception, check_proposals, load_datasets
from dualdiff_ros.model_store import train_general, train_specialized
from dualdiff_ros.navigate_to import PatchSpec
from dualdiff_ros.recipes import recipe
from dualdiff_ros.seeds import stream
from dualdiff_ros.sim.dataset import GENERAL_TYPES
from dualdiff_ros.training_jobs import mark_map_block, navigation_conditions

TYPE_DROPOUT = 0.2


def type_columns(data, seed: int, dropout: float) -> np.ndarray:
    """One-hot object type over the general types, or the null token (all zeros).

    Rows of other types (the ball) and a `dropout` share of the rest get the null token.
    """
    names = data.type_names
    out = np.zeros((len(names), len(GENERAL_TYPES)))
    for j, kind in enumerate(GENERAL_TYPES):
        out[names == kind, j] = 1.0
    out[np.random.default_rng(seed).random(len(out)) < dropout] = 0.0
    return out


def train_pair(general_data, ball_train, rec, seed: int, typed: bool):
    gc, gt = navigation_conditions(general_data, rec, stream(seed, "general_data"))
    bc, bt = navigation_conditions(ball_train, rec, stream(seed, "specialized_data"), both=True)
    if typed:
        gc = np.concatenate([gc, type_columns(general_data, seed, TYPE_DROPOUT)], axis=1)
        bc = np.concatenate([bc, np.zeros((len(bc), len(GENERAL_TYPES)))], axis=1)
    general = train_general(NAVIGATE_TO, gc, gt, rec, stream(seed, "train_general"), progress=False)
    mark_map_block(general, rec)
    special = train_specialized(general, bc, bt, rec, "fine_tune", task="ball", seed=stream(seed, "train_fine_tuned"),
                                progress=False)
    mark_map_block(special, rec)
    return general, special


def raw_validity(general, special, held, conds, guidance: float, mode: str, seed: int) -> dict:
    p = Proposer()
    p.sampler = replace(p.sampler, guidance=guidance)
    p.composition = replace(p.composition, sampler=replace(p.composition.sampler, guidance=guidance))
    out = np.stack([p.propose(general, special, c, 16, mode, seed=seed + i).targets for i, c in enumerate(conds)])
    ok = check_proposals(held, out)
    return {"validity": float(ok.mean()), "success": float(ok.any(axis=1).mean())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--states", type=int, default=150)
    parser.add_argument("--guidance", type=float, nargs="+", default=[1.0, 1.5, 2.0])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rec = recipe("demo", NAVIGATE_TO)
    general_data, ball_train, ball_test = load_datasets(NavigationSettings(data_dir=args.data_dir))
    held = sim.held_out_states(ball_test).head(args.states)
    spec = PatchSpec.from_dict(rec.perception)
    base = Perception(held, spec).conditions(held.states)
    rows, output = [], Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        for typed in (False, True):
            start = time.time()
            general, special = train_pair(general_data, ball_train, rec, seed, typed)
            conds = np.concatenate([base, np.zeros((len(base), len(GENERAL_TYPES)))], axis=1) if typed else base
            for w in args.guidance:
                for mode in ("general", "joint"):
                    row = {"seed": seed, "conditioning": "null-type" if typed else "size-only", "guidance": w,
                           "mode": mode, **raw_validity(general, special, held, conds, w, mode, seed),
                           "train_seconds": round(time.time() - start, 1)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
            (output / "results.json").write_text(json.dumps({"rows": rows, "states": len(held)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
