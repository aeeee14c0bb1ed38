"""Named training recipes: the sizes a user picks between on the command line, for every domain.

- "full": the thesis's settings (general 100 epochs of batch 2048, width 256 x 4 layers);
  navigate-to: 30 general epochs over about 140k points.
- "demo": what `make demo` trains in about a minute per domain on a 2-core machine.
- "quick": seconds, for tests; not meant to be good.
The specialized model is fine-tuned from the general prior with rank-8 LoRA updates (600
epochs of batch 64, lr 1e-3) in every synthetic recipe but "quick", and with a full fine-tune
for navigate-to: each measured best in its domain (docs/RESULTS.md, sections 1 and 4).
This module is the one registry: `dualdiff train`, the studies and the nodes all read it.
"""
from __future__ import annotations

from dataclasses import replace

from .diffusion.training import TrainConfig
from .domains import NAVIGATE_TO
from .model_store import Recipe
from .navigate_to import PatchSpec

RECIPES = ("full", "demo", "quick")
# Navigate-to data per recipe (tasks of the simulator; the rest of NavigationSettings' defaults).
NAVIGATION_DATA = {"full": {"general_tasks": 5000}, "demo": {"general_tasks": 1500},
                   "quick": {"general_tasks": 100, "train_tasks": 6, "test_tasks": 8}}


# The home-aware prior's fleet data per recipe: (homes, observations per home, training rows per home).
# The homes are the "fleet" family (domains/homes.py): one box or disc, and mixtures of 1-4 places.
HOME_AWARE_FLEET = {"full": (4000, 160, 40), "demo": (1000, 160, 40), "quick": (60, 24, 20)}
# The home-aware prior's training per recipe: the demo's keeps `make demo` inside its 10 minutes
# (about a minute per domain on one core); the full one is the demo's network trained 12x longer
# on 4x the fleet homes (9,360 steps of 1,024 rows): on this 2-core machine more steps of the
# 128 x 3 network fit in the time than of the thesis's 256 x 4.
HOME_AWARE_EPOCHS = {"full": 60, "demo": 20, "quick": None}


def home_aware_recipe(name: str) -> Recipe:
    """The recipe the home-aware prior of recipe `name` trains with (full: the demo network, longer)."""
    base = recipe("demo" if name == "full" else name)
    epochs = HOME_AWARE_EPOCHS[name]
    return base if epochs is None else replace(base, general=replace(base.general, epochs=epochs))


def recipe(name: str, domain: str = "cabinet") -> Recipe:
    """The recipe `name` for `domain` (navigate_to has its own; every synthetic domain shares one)."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}: use one of {RECIPES}")
    if domain == NAVIGATE_TO:
        return _navigation_recipe(name)
    if name == "full":
        return Recipe()
    if name == "demo":
        return Recipe(architecture={"name": "mlp", "width": 128, "depth": 3},
                      general=TrainConfig(epochs=40, batch_size=1024, lr=2e-3, step_epochs=4, description="general"))
    return Recipe(architecture={"name": "mlp", "width": 32, "depth": 1},
                  schedule={"kind": "linear", "num_steps": 20},
                  general=TrainConfig(epochs=3, batch_size=256, lr=3e-3, description="general"),
                  specialized=TrainConfig(epochs=20, batch_size=32, lr=3e-3, description="specialized"),
                  fine_tune=TrainConfig(epochs=10, batch_size=32, lr=1e-3, description="fine-tune"))


def navigation_recipe(general_epochs: int = 30) -> Recipe:
    """The Recipe's sizes and optimisers, a linear schedule, a longer full fine-tune (442 points).

    30 general epochs over ~140k points (~2,000 steps of 2048) keep a seed to minutes on one core.
    The general prior records that it is served as the plain sum to the end (general_min_t_fraction
    0: docs/RESULTS.md, section 4).
    """
    return Recipe(architecture={"name": "mlp", "width": 256, "depth": 4},
                  schedule={"kind": "linear", "num_steps": 100}, relative_targets=True,
                  general=TrainConfig(epochs=general_epochs, batch_size=2048, lr=1e-3, description="general"),
                  specialized=TrainConfig(epochs=1500, batch_size=64, lr=1e-3, step_epochs=150,
                                          description="specialized"),
                  fine_tune=TrainConfig(epochs=600, batch_size=64, lr=3e-4, step_epochs=60, description="fine-tune"),
                  fine_tune_lora_rank=0,
                  serving={"general_min_t_fraction": 0.0},
                  perception=PatchSpec().to_dict())


def _navigation_recipe(name: str) -> Recipe:
    if name == "full":
        return navigation_recipe()
    if name == "demo":  # two to three minutes on one core, most of it the two ball models
        # 60 epochs (~2,500 steps of 1024) for the prior: at 20 it was undertrained (2.07 candidates per valid
        # pose with a map against 1.49, for +23 s of CPU: docs/notes/2026-12-04-nav2-costmaps.md).
        full = navigation_recipe(general_epochs=60)
        return replace(full, architecture={"name": "mlp", "width": 128, "depth": 3},
                       general=replace(full.general, batch_size=1024))
    return Recipe(architecture={"name": "mlp", "width": 64, "depth": 2},
                  schedule={"kind": "linear", "num_steps": 30}, relative_targets=True,
                  general=TrainConfig(epochs=8, batch_size=256, lr=2e-3, description="general"),
                  specialized=TrainConfig(epochs=40, batch_size=32, lr=2e-3, description="specialized"),
                  fine_tune=TrainConfig(epochs=20, batch_size=32, lr=5e-4, description="fine-tune"),
                  fine_tune_lora_rank=0, serving=navigation_recipe().serving,
                  perception=PatchSpec(cells=8).to_dict())
