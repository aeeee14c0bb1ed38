"""Fill a ModelStore for a domain: data, general prior, fine-tuned specialized model.

Used by `dualdiff train` and `dualdiff demo`. A second call with the same recipe finds
the checkpoints and trains nothing (pass force=True to retrain).
"""
from __future__ import annotations

import logging
import time

from .diffusion.checkpoint import CheckpointError, read_header
from .domains import get_domain
from .model_store import ModelStore, save, train_general, train_specialized
from .recipes import recipe as named_recipe

log = logging.getLogger("dualdiff.train")

# The thesis's dataset sizes for the synthetic domains.
GENERAL_SIZE, SPECIALIZED_SIZE = 55_398, 128


def trained_with(path, recipe_name: str) -> bool:
    try:
        return read_header(path)["metadata"].get("recipe") == recipe_name
    except CheckpointError:
        return False


def train_domain(domain: str, model_dir, recipe_name: str = "demo", seed: int = 0, force: bool = False,
                 progress: bool = True) -> dict:
    """Train (or reuse) the domain's general prior and specialized model; returns their versions."""
    store = ModelStore(model_dir)
    paths = (store.general_path(domain), store.specialized_path(domain))
    if not force and all(trained_with(p, recipe_name) for p in paths):
        print(f"[train] {domain}: reusing {paths[0]} and {paths[1]} (recipe {recipe_name}); --force retrains")
        return {"general": read_header(paths[0])["metadata"]["version"],
                "specialized": read_header(paths[1])["metadata"]["version"]}
    if domain == "navigate_to":
        from .evaluation.navigation import train_navigation_models
        return train_navigation_models(model_dir, recipe_name=recipe_name, seed=seed)
    recipe = named_recipe(recipe_name)
    dom = get_domain(domain)
    general_data = dom.general_dataset(GENERAL_SIZE, seed * 100 + 1)
    special_data = dom.specialized_dataset(SPECIALIZED_SIZE, seed * 100 + 2)
    start = time.perf_counter()
    print(f"[train] {domain}: general prior on {len(general_data)} pairs (recipe {recipe_name})")
    general = train_general(domain, general_data.conditions, general_data.targets, recipe, seed, progress)
    general.metadata["recipe"] = recipe_name
    versions = {"general": save(general, paths[0])}
    print(f"[train] {domain}: specialized model, fine-tuned on {len(special_data)} observations")
    special = train_specialized(general, special_data.conditions, special_data.targets, recipe, "fine_tune",
                                seed=seed, progress=progress)
    special.metadata["recipe"] = recipe_name
    versions["specialized"] = save(special, paths[1])
    print(f"[train] {domain}: wrote {paths[0]} ({versions['general']}) and {paths[1]} "
          f"({versions['specialized']}) in {time.perf_counter() - start:.0f} s")
    return versions
