"""Sampler settings of the served proposer against quality, on validation seeds (not the reported 0-2).

    .venv/bin/python scripts/sampler_sweep.py cabinet ddpm,ddim50,ddim25 [--conditions 300]

Trains (once, cached under runs/sampler_sweep/<domain>/<seed>/) demo-recipe general and
LoRA fine-tuned models for seeds 10 and 11 (or --seeds: 0 1 2 with --conditions 1000 repeats
the `proposer` row of `dualdiff experiment` exactly: same data, models and noise), then samples
each variant for held-out conditions x 10 and prints accuracy and coverage (as `dualdiff experiment`). Variants:
  ddpm | ddpmL              ancestral DDPM, posterior / beta_t variance, every step
  ddim<N> | ddim<N>e<eta>   DDIM with N steps and eta (default 1)
  dpm<N>                    SDE-DPM-Solver++(2M) with N steps
  ...f<F>                   (after ddim / dpm) the last F levels one by one (SamplerConfig.fine_steps)
  ..._g<f>                  general prior guides only above f*T (default: the recipe's)
  ..._c<x>                  bound on the predicted clean sample of the joint (ft_: the single) sampler,
                            normalized units (default 10, as served; 1 = the opt-in composition.clip)
  ft_<sampler>              the fine-tuned model alone instead of the proposer
--fine-tune changes the demo recipe's fine-tuning, e.g. `--fine-tune lora_rank=4,epochs=1200,lr=5e-4`
(keys: lora_rank and any TrainConfig field); each setting gets its own model cache.
"""
import argparse
import re
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from dualdiff_ros.diffusion.checkpoint import load_checkpoint, save_checkpoint
from dualdiff_ros.diffusion.proposer import Proposer, default_composition
from dualdiff_ros.diffusion.sampling import SamplerConfig, sample
from dualdiff_ros.domains import get_domain
from dualdiff_ros.evaluation import experiments, metrics
from dualdiff_ros.model_store import train_general, train_specialized
from dualdiff_ros.recipes import recipe
from dualdiff_ros.runtime import limit_torch_threads
from dualdiff_ros.seeds import stream

VALIDATION_SEEDS = (10, 11)


def fine_tune_recipe(spec: str):
    """The demo recipe with the fine-tuning settings of `spec` ("key=value,..."; "" = unchanged)."""
    base = recipe("demo")
    if not spec:
        return base
    options = dict(item.split("=", 1) for item in spec.split(","))
    rank = int(options.pop("lora_rank", base.fine_tune_lora_rank))
    fields = type(base.fine_tune).__dataclass_fields__
    unknown = set(options) - set(fields)
    if unknown:
        raise SystemExit(f"unknown fine-tune keys {sorted(unknown)}: use lora_rank or one of {sorted(fields)}")
    typed = {k: type(getattr(base.fine_tune, k))(v) for k, v in options.items()}
    return replace(base, fine_tune=replace(base.fine_tune, **typed), fine_tune_lora_rank=rank)


def trained_models(domain, seed: int, root: Path, fine_tune: str = "") -> dict:
    folder = root / domain.name / str(seed)
    tuned_path = folder / (f"fine_tuned_{fine_tune.replace(',', '_')}" if fine_tune else "fine_tuned")
    tuned_path = tuned_path.with_suffix(".safetensors")
    settings = experiments.StudySettings(recipe=fine_tune_recipe(fine_tune), progress=False)
    if tuned_path.exists():
        return {"general": load_checkpoint(folder / "general.safetensors"), "fine_tuned": load_checkpoint(tuned_path)}
    folder.mkdir(parents=True, exist_ok=True)
    general_data = domain.general_dataset(settings.general_size, stream(seed, "general_data"))
    special = domain.specialized_dataset(settings.specialized_size, stream(seed, "specialized_data"))
    if (folder / "general.safetensors").exists():
        general = load_checkpoint(folder / "general.safetensors")
    else:
        general = train_general(domain.name, general_data.conditions, general_data.targets, settings.recipe,
                                stream(seed, "train_general"), False)
        save_checkpoint(general, folder / "general.safetensors")
    tuned = train_specialized(general, special.conditions, special.targets, settings.recipe, "fine_tune",
                              seed=stream(seed, "train_fine_tuned"), progress=False)
    save_checkpoint(tuned, tuned_path)
    return {"general": general, "fine_tuned": tuned}


def parse_variant(name: str) -> tuple[bool, Proposer]:
    """(fine-tuned model alone?, the proposer) for a variant name (see the module docstring)."""
    alone = name.startswith("ft_")
    composition, sampler, clip = default_composition(), SamplerConfig(), SamplerConfig().clip
    for part in name.removeprefix("ft_").split("_"):
        if part.startswith("ddpm"):
            sampler.variance = "large" if part.endswith("L") else "small"
        elif strided := re.fullmatch(r"(ddim|dpm)(\d+)(?:e([\d.]+))?(?:f(\d+))?", part):
            method, steps, eta, fine = strided.groups()
            sampler.method = "ddim" if method == "ddim" else "dpm_solver"
            sampler.steps, sampler.eta, sampler.fine_steps = int(steps), float(eta or 1.0), int(fine or 0)
        elif part.startswith("g"):
            composition.general_min_t_fraction = float(part[1:])
        elif part.startswith("c"):
            clip = float(part[1:])
        else:
            raise SystemExit(f"unknown variant part {part!r} in {name!r}")
    if alone:
        return alone, Proposer(sampler=replace(sampler, clip=clip))
    composition.sampler = replace(sampler, clip=clip)  # the fallback's single-model sampler keeps the default
    return alone, Proposer(composition=composition, sampler=sampler)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("domain", choices=("cabinet", "round_table"))
    parser.add_argument("variants", help="comma-separated variant names")
    parser.add_argument("--conditions", type=int, default=300)
    parser.add_argument("--cache", default="runs/sampler_sweep")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(VALIDATION_SEEDS))
    parser.add_argument("--fine-tune", default="", help="fine-tuning changes to the demo recipe, key=value,...")
    parser.add_argument("--plot", help="also draw accuracy and coverage against the number of steps to this PNG")
    args = parser.parse_args()
    limit_torch_threads()
    domain, results, steps = get_domain(args.domain), {}, {}
    for seed in args.seeds:
        models = trained_models(domain, seed, Path(args.cache), args.fine_tune)
        conditions = domain.sample_conditions(args.conditions, np.random.default_rng(stream(seed, "test")))
        ref_c = np.repeat(conditions, 10, axis=0)
        reference = domain.local_frame(ref_c, domain.sample_specialized_targets(
            ref_c, np.random.default_rng(stream(seed, "reference"))))
        for name in args.variants.split(","):
            alone, proposer = parse_variant(name)
            steps[name] = len(proposer.sampler.timesteps(models["general"].schedule))
            start = time.perf_counter()
            if alone:
                samples = sample(models["fine_tuned"], conditions, 10, stream(seed, "sampling"), proposer.sampler)
            else:
                samples, _ = experiments.sample_configuration(("proposer", ("general", "fine_tuned"), proposer),
                                                              models, conditions, 10, stream(seed, "sampling"))
            ms = 1000 * (time.perf_counter() - start) / len(conditions)
            acc = metrics.accuracy(domain, conditions, samples)
            cov = metrics.coverage(reference, metrics.local_samples(domain, conditions, samples))
            results.setdefault(name, []).append((acc, cov))
            print(f"seed {seed} {name:18s} accuracy {acc:.3f} coverage {cov:.3f} {ms:6.1f} ms/condition", flush=True)
    print(f"\n| {args.domain} variant | accuracy | coverage |\n|---|---|---|")
    for name, rows in results.items():
        r = np.array(rows)
        print(f"| {name} | {r[:, 0].mean():.3f} ± {r[:, 0].std():.3f} | {r[:, 1].mean():.3f} ± {r[:, 1].std():.3f} |")
    if args.plot:
        plot_against_steps(args.plot, args.domain, results, steps, args.seeds)
    return 0


def plot_against_steps(path: str, domain: str, results: dict, steps: dict, seeds) -> None:
    """Accuracy and coverage (mean over seeds) against network steps, one line per kind of grid."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def kind(name):
        sampler = parse_variant(name)[1].sampler
        if sampler.method == "ddpm":
            return "ddpm (every level)"
        return f"{sampler.method}, last {sampler.fine_steps} levels one by one" if sampler.fine_steps \
            else f"{sampler.method}, even strides"

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for label in dict.fromkeys(kind(n) for n in results):
        names = sorted((n for n in results if kind(n) == label), key=steps.get)
        for ax, column in zip(axes, (0, 1)):
            ax.plot([steps[n] for n in names], [np.mean([r[column] for r in results[n]]) for n in names],
                    "o-", label=label)
    for ax, title in zip(axes, ("accuracy", "coverage")):
        ax.set_xlabel("reverse steps (network passes per proposal)")
        ax.set_title(f"{domain}: {title}, seeds {', '.join(map(str, seeds))}")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())
