"""Sampler settings of the served proposer against quality, on validation seeds (not the reported 0-2).

    .venv/bin/python scripts/sampler_sweep.py cabinet ddpm,ddim50,ddim25 [--conditions 300]

Trains (once, cached under runs/sampler_sweep/<domain>/<seed>/) demo-recipe general and
LoRA fine-tuned models for seeds 10 and 11 (or --seeds: 0 1 2 with --conditions 1000 repeats
the `proposer` row of `dualdiff experiment` exactly: same data, models and noise), then samples
each variant for held-out conditions x 10 and prints accuracy and coverage (as `dualdiff experiment`). Variants:
  ddpm | ddpmL              ancestral DDPM, posterior / beta_t variance, every step
  ddim<N> | ddim<N>e<eta>   DDIM with N steps and eta (default 1)
  dpm<N>                    SDE-DPM-Solver++(2M) with N steps
  ..._g<f>                  general prior guides only above f*T (default: the recipe's)
  ft_<sampler>              the fine-tuned model alone instead of the proposer
"""
import argparse
import time
from pathlib import Path

import numpy as np
import torch

from dualdiff_ros.diffusion.checkpoint import load_checkpoint, save_checkpoint
from dualdiff_ros.diffusion.proposer import Proposer, default_composition
from dualdiff_ros.diffusion.sampling import SamplerConfig, sample
from dualdiff_ros.domains import get_domain
from dualdiff_ros.evaluation import experiments, metrics
from dualdiff_ros.model_store import train_general, train_specialized
from dualdiff_ros.recipes import recipe

VALIDATION_SEEDS = (10, 11)


def trained_models(domain, seed: int, root: Path) -> dict:
    folder = root / domain.name / str(seed)
    if (folder / "fine_tuned.safetensors").exists():
        return {k: load_checkpoint(folder / f"{k}.safetensors") for k in ("general", "fine_tuned")}
    folder.mkdir(parents=True, exist_ok=True)
    settings = experiments.StudySettings(recipe=recipe("demo"), progress=False)
    streams = experiments.DATA_STREAMS
    general_data = domain.general_dataset(settings.general_size, seed * 100 + streams["general"])
    special = domain.specialized_dataset(settings.specialized_size, seed * 100 + streams["specialized"])
    general = train_general(domain.name, general_data.conditions, general_data.targets, settings.recipe,
                            seed * 100 + 11, False)
    tuned = train_specialized(general, special.conditions, special.targets, settings.recipe, "fine_tune",
                              seed=seed * 100 + 13, progress=False)
    save_checkpoint(general, folder / "general.safetensors")
    save_checkpoint(tuned, folder / "fine_tuned.safetensors")
    return {"general": general, "fine_tuned": tuned}


def parse_variant(name: str) -> tuple[bool, Proposer]:
    """(fine-tuned model alone?, the proposer) for a variant name (see the module docstring)."""
    alone = name.startswith("ft_")
    composition, sampler = default_composition(), SamplerConfig()
    for part in name.removeprefix("ft_").split("_"):
        if part.startswith("ddpm"):
            sampler.variance = "large" if part.endswith("L") else "small"
        elif part.startswith("ddim"):
            steps, _, eta = part[4:].partition("e")
            sampler.method, sampler.steps, sampler.eta = "ddim", int(steps), float(eta or 1.0)
        elif part.startswith("dpm"):
            sampler.method, sampler.steps = "dpm_solver", int(part[3:])
        elif part.startswith("g"):
            composition.general_min_t_fraction = float(part[1:])
        else:
            raise SystemExit(f"unknown variant part {part!r} in {name!r}")
    composition.sampler = sampler
    return alone, Proposer(composition=composition, sampler=sampler)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("domain", choices=("cabinet", "round_table"))
    parser.add_argument("variants", help="comma-separated variant names")
    parser.add_argument("--conditions", type=int, default=300)
    parser.add_argument("--cache", default="runs/sampler_sweep")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(VALIDATION_SEEDS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    domain, results = get_domain(args.domain), {}
    for seed in args.seeds:
        models = trained_models(domain, seed, Path(args.cache))
        conditions = domain.sample_conditions(args.conditions, np.random.default_rng(seed * 100 + 3))
        ref_c = np.repeat(conditions, 10, axis=0)
        reference = domain.local_frame(ref_c, domain.sample_specialized_targets(
            ref_c, np.random.default_rng(seed * 100 + 4)))
        for name in args.variants.split(","):
            alone, proposer = parse_variant(name)
            start = time.perf_counter()
            if alone:
                samples = sample(models["fine_tuned"], conditions, 10, seed * 100 + 5, proposer.sampler)
            else:
                samples, _ = experiments.sample_configuration(("proposer", ("general", "fine_tuned"), proposer),
                                                              models, conditions, 10, seed * 100 + 5)
            ms = 1000 * (time.perf_counter() - start) / len(conditions)
            acc = metrics.accuracy(domain, conditions, samples)
            cov = metrics.coverage(reference, metrics.local_samples(domain, conditions, samples))
            results.setdefault(name, []).append((acc, cov))
            print(f"seed {seed} {name:18s} accuracy {acc:.3f} coverage {cov:.3f} {ms:6.1f} ms/condition", flush=True)
    print(f"\n| {args.domain} variant | accuracy | coverage |\n|---|---|---|")
    for name, rows in results.items():
        r = np.array(rows)
        print(f"| {name} | {r[:, 0].mean():.3f} ± {r[:, 0].std():.3f} | {r[:, 1].mean():.3f} ± {r[:, 1].std():.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
