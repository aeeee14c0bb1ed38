"""The specialization studies: train general / specialized / fine-tuned models, compare configurations.

`run_study("cabinet" | "round_table" | "overlap", ...)` trains every model for every seed,
samples each configuration for held-out conditions and writes results.json, results.md and
plots. Seeds: training data, test conditions and sampling noise come from disjoint streams
derived from the seed (seeds.stream), so no test condition is ever a training one.
Model names: "general" (the prior), "scratch" (trained on the home's data alone) and
"fine_tuned" (the prior fine-tuned on it, what the specialized node serves as "specialized").
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..diffusion.composition import CompositionConfig, compose
from ..diffusion.proposer import Proposer
from ..diffusion.sampling import SamplerConfig, sample
from ..diffusion.training import data_digest
from ..domains import get_domain
from ..domains.round_table import OVERLAP_SETTINGS
from ..model_store import Recipe, train_general, train_specialized
from ..seeds import stream
from . import metrics
from .report import markdown_table

STUDIES = ("cabinet", "round_table", "overlap")
SCATTER_SAMPLES = 200  # proposals drawn for the one condition each study plots


@dataclass
class StudySettings:
    """Full settings follow the thesis (the Recipe's defaults); `quick()` shrinks everything for tests."""

    general_size: int = 55_398
    specialized_size: int = 128
    test_conditions: int = 1000
    samples_per_condition: int = 10
    seeds: tuple = (0, 1, 2)
    recipe: Recipe = field(default_factory=Recipe)
    progress: bool = True

    @classmethod
    def quick(cls) -> "StudySettings":
        from ..recipes import recipe
        return cls(general_size=4000, specialized_size=64, test_conditions=40, samples_per_condition=8,
                   seeds=(0,), recipe=recipe("quick"), progress=False)


def configurations() -> dict:
    """Name -> (kind, models, composition). Models are keys of the trained-model dict."""
    sampler = SamplerConfig()
    smc = CompositionConfig(method="smc", langevin_steps=1, sampler=sampler)
    return {
        "oracle": ("oracle", (), None),
        "general": ("single", ("general",), None),
        "scratch": ("single", ("scratch",), None),
        "fine_tuned": ("single", ("fine_tuned",), None),
        "joint": ("compose", ("general", "scratch"), CompositionConfig(method="sum", sampler=sampler)),
        "fine_tuned_joint": ("compose", ("general", "fine_tuned"), CompositionConfig(method="sum", sampler=sampler)),
        "weighted": ("compose", ("general", "fine_tuned"),
                     CompositionConfig(method="weighted", weight_general=0.5, weight_specialized=1.5,
                                       sampler=sampler)),
        "corrected": ("compose", ("general", "scratch"), smc),
        "corrected_fine_tuned": ("compose", ("general", "fine_tuned"), smc),
        "proposer": ("proposer", ("general", "fine_tuned"), None),
    }


def train_models(domain, settings: StudySettings, seed: int, generals: dict | None = None) -> tuple[dict, dict]:
    """General, scratch and fine-tuned models for one seed, plus loss curves.

    `generals` caches general priors by their training data: the overlap family shares one
    general dataset, so its six settings share one prior per seed.
    """
    general_data = domain.general_dataset(settings.general_size, stream(seed, "general_data"))
    special = domain.specialized_dataset(settings.specialized_size, stream(seed, "specialized_data"))
    recipe, progress = settings.recipe, settings.progress
    key = (data_digest(general_data.conditions, general_data.targets), seed)
    generals = {} if generals is None else generals
    if key not in generals:
        generals[key] = train_general(domain.name, general_data.conditions, general_data.targets, recipe,
                                      stream(seed, "train_general"), progress)
    general = generals[key]
    models = {"general": general}
    for name, method in (("scratch", "scratch"), ("fine_tuned", "fine_tune")):
        models[name] = train_specialized(general, special.conditions, special.targets, recipe, method,
                                         seed=stream(seed, f"train_{name}"), progress=progress)
    curves = {name: m.metadata["training"][-1]["losses"] for name, m in models.items()}
    return models, curves


def sample_configuration(spec, models, conditions, k, seed, domain=None) -> tuple[np.ndarray, dict]:
    """Samples [n, k, d] of one configuration and its diagnostics; any domain, scored elsewhere.

    Shared by the synthetic studies and the navigate-to study so a configuration name means the same
    sampler everywhere. Only "oracle" needs `domain`.
    """
    kind, keys, composition = spec
    extra = {}
    if kind == "oracle":
        rng = np.random.default_rng(seed)
        samples = domain.sample_specialized_targets(np.repeat(conditions, k, axis=0), rng).reshape(
            len(conditions), k, -1)
    elif kind == "single":
        samples = sample(models[keys[0]], conditions, k, seed)
        extra["model_evaluations"] = models[keys[0]].schedule.num_steps
    elif kind == "compose":
        comp = compose(models[keys[0]], models[keys[1]], conditions, k, composition, seed)
        samples = comp.samples
        extra.update(model_evaluations=comp.model_evaluations, ess_fraction=float(comp.ess_fraction.mean()),
                     log_overlap=float(np.median(comp.log_overlap)), score_cosine=float(comp.score_cosine.mean()))
    else:
        if isinstance(composition, Proposer):
            proposer = composition
        else:  # None: the served product's defaults
            proposer = Proposer() if composition is None else Proposer(composition=composition)
        out = [proposer.propose(models[keys[0]], models[keys[1]], c, k, "joint", seed + i)
               for i, c in enumerate(conditions)]
        samples = np.stack([p.targets for p in out])
        extra["fallback_rate"] = float(np.mean([p.mode_used != "joint" for p in out]))
        extra["general_agreement"] = float(np.mean([p.diagnostics["general_agreement"] for p in out]))
    return samples, extra


def evaluate_configuration(name, spec, models, domain, conditions, reference_local, k, seed) -> tuple[dict, np.ndarray]:
    start = time.perf_counter()
    samples, extra = sample_configuration(spec, models, conditions, k, seed, domain)
    seconds = time.perf_counter() - start
    local = metrics.local_samples(domain, conditions, samples)
    precision, recall = metrics.precision_recall(reference_local, local)
    row = {"configuration": name, "accuracy": metrics.accuracy(domain, conditions, samples),
           "out_of_range_distance": metrics.out_of_range_distance(domain, conditions, samples),
           "coverage": metrics.coverage(reference_local, local), "precision": precision, "recall": recall,
           "ms_per_condition": 1000 * seconds / len(conditions), **extra}
    return row, samples


def run_domain(domain, settings: StudySettings, output: Path, only: list | None = None,
               generals: dict | None = None) -> list[dict]:
    rows, configs = [], configurations()
    if only:
        configs = {k: v for k, v in configs.items() if k in only}
    for seed in settings.seeds:
        models, curves = train_models(domain, settings, seed, generals)
        rng = np.random.default_rng(stream(seed, "test"))
        conditions = domain.sample_conditions(settings.test_conditions, rng)
        ref_rng = np.random.default_rng(stream(seed, "reference"))
        ref_c = np.repeat(conditions, settings.samples_per_condition, axis=0)
        reference_local = domain.local_frame(ref_c, domain.sample_specialized_targets(ref_c, ref_rng))
        for name, spec in configs.items():
            row, _ = evaluate_configuration(name, spec, models, domain, conditions, reference_local,
                                            settings.samples_per_condition, stream(seed, "sampling"))
            rows.append({"domain": domain.name, "seed": seed, **row})
        if seed == settings.seeds[0]:
            from . import plots
            shown = conditions[:1]
            samples = {name: sample_configuration(spec, models, shown, SCATTER_SAMPLES, 0, domain)[0][0]
                       for name, spec in configs.items()}
            plots.configuration_scatter(domain, shown[0], samples, output / f"{domain.name}_scatter.png")
            plots.loss_curves(curves, output / f"{domain.name}_loss.png")
    return rows


def summarize(rows: list[dict], keys=("accuracy", "coverage", "recall", "precision", "out_of_range_distance",
                                      "ms_per_condition")) -> list[dict]:
    """Mean and sd over seeds for each (domain, configuration)."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["domain"], r["configuration"]), []).append(r)
    out = []
    for (dom, conf), rs in groups.items():
        entry = {"domain": dom, "configuration": conf, "seeds": len(rs)}
        for key in keys + ("fallback_rate", "general_agreement", "log_overlap", "ess_fraction", "score_cosine",
                           "model_evaluations"):
            vals = [r[key] for r in rs if key in r and r[key] is not None and not np.isnan(r[key])]
            if vals:
                entry[key] = (float(np.mean(vals)), float(np.std(vals)))
        out.append(entry)
    return out


TABLE_COLUMNS = ["domain", "configuration", "accuracy", "coverage", "recall", "precision", "out_of_range_distance",
                 "ms_per_condition", "fallback_rate", "general_agreement", "log_overlap", "model_evaluations"]


def run_study(study: str, output: str | Path, settings: StudySettings | None = None,
              only: list | None = None) -> dict:
    if study not in STUDIES:
        raise ValueError(f"unknown study {study!r}: use one of {STUDIES}")
    settings = settings or StudySettings()
    unknown = sorted(set(only or ()) - set(configurations()))
    if unknown:
        raise ValueError(f"unknown configuration(s) {unknown}: use some of {sorted(configurations())}")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    domains = ([get_domain(f"overlap_{s}") for s in OVERLAP_SETTINGS] if study == "overlap"
               else [get_domain(study)])
    start, rows, generals = time.time(), [], {}
    for domain in domains:
        rows += run_domain(domain, settings, output, only, generals)
    summary = summarize(rows)
    settings_dict = asdict(settings)
    result = {"study": study, "settings": settings_dict, "rows": rows, "summary": summary,
              "seconds": round(time.time() - start, 1)}
    (output / "results.json").write_text(json.dumps(result, indent=1, default=str))
    (output / "results.md").write_text(f"# {study}\n\n" + markdown_table(summary, TABLE_COLUMNS))
    return result
