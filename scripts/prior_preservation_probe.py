"""Prior preservation (DreamBooth style) on the cabinet: fine-tune on N observations + ratio x N prior samples.

    .venv/bin/python scripts/prior_preservation_probe.py > runs/prior_preservation_probe.log

The prior's samples are drawn at the observations' own furniture poses. Thesis home and two homes of
the family, N = 8 and 32, ratios 0, 0.5, 1, 2; one JSON line per row (accuracy / coverage / looks of the
fine-tune alone and of the proposer over it). Results: docs/notes/2026-12-01-few-observations.md.
"""
from __future__ import annotations

import json

import numpy as np
import torch

from dualdiff_ros.diffusion.proposer import Proposer
from dualdiff_ros.diffusion.sampling import sample
from dualdiff_ros.domains.homes import homes
from dualdiff_ros.evaluation.learning_curve import propose_all, score_samples
from dualdiff_ros.model_store import train_general, train_specialized
from dualdiff_ros.recipes import recipe

RATIOS = (0.0, 0.5, 1.0, 2.0)


def with_prior_samples(general, conditions, targets, ratio: float):
    """The observations plus round(ratio x N) samples of the prior at resampled observation poses."""
    m = int(round(ratio * len(conditions)))
    if not m:
        return conditions, targets
    poses = conditions[np.random.default_rng(7).integers(0, len(conditions), m)]
    return np.concatenate([conditions, poses]), np.concatenate([targets, sample(general, poses, 1, seed=8)[:, 0]])


def main() -> None:
    torch.set_num_threads(1)
    rec = recipe("demo")
    family = homes("cabinet", 3, 2100)
    data = family[0].general_dataset(55_398, 1)
    general = train_general("cabinet", data.conditions, data.targets, rec, 11, False)
    for index, home in enumerate(family):
        rng = np.random.default_rng(100 + index)
        for n in (8, 32):
            c = home.sample_conditions(n, rng)
            t = home.sample_specialized_targets(c, rng)
            test = home.sample_conditions(200, np.random.default_rng(5))
            ref_rng = np.random.default_rng(6)
            ref_c = test[ref_rng.integers(0, 200, 2000)]
            reference = home.local_frame(ref_c, home.sample_specialized_targets(ref_c, ref_rng))
            for ratio in RATIOS:
                cc, tt = with_prior_samples(general, c, t, ratio)
                tuned = train_specialized(general, cc, tt, rec, "fine_tune", seed=13, progress=False)
                alone = score_samples(home, test, propose_all(Proposer(), None, tuned, test, 10, 5), reference, 10)
                joint = score_samples(home, test, propose_all(Proposer(), general, tuned, test, 10, 5), reference, 10)
                print(json.dumps({"home": home.name, "N": n, "ratio": ratio, "fine_tuned": alone, "proposer": joint}),
                      flush=True)


if __name__ == "__main__":
    main()
