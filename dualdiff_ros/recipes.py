"""Named training recipes: the sizes a user picks between on the command line.

- "full": the thesis's settings (general 100 epochs of batch 2048, width 256 x 4 layers).
- "demo": what `make demo` trains in about a minute per domain on a 2-core machine; it
  meets the quality targets (docs/RESULTS.md).
- "quick": seconds, for tests; not meant to be good.
The specialized model is fine-tuned from the general prior with rank-8 LoRA updates (600
epochs of batch 64, lr 1e-3) in every recipe but "quick": that measured best (docs/RESULTS.md).
"""
from __future__ import annotations

from .diffusion.training import TrainConfig
from .model_store import Recipe

RECIPES = ("full", "demo", "quick")


def recipe(name: str) -> Recipe:
    if name == "full":
        return Recipe()
    if name == "demo":
        return Recipe(architecture={"name": "mlp", "width": 128, "depth": 3},
                      general=TrainConfig(epochs=40, batch_size=1024, lr=2e-3, step_epochs=4, description="general"))
    if name == "quick":
        return Recipe(architecture={"name": "mlp", "width": 32, "depth": 1},
                      schedule={"kind": "linear", "num_steps": 20},
                      general=TrainConfig(epochs=3, batch_size=256, lr=3e-3, description="general"),
                      specialized=TrainConfig(epochs=20, batch_size=32, lr=3e-3, description="specialized"),
                      fine_tune=TrainConfig(epochs=10, batch_size=32, lr=1e-3, description="fine-tune"))
    raise ValueError(f"unknown recipe {name!r}: use one of {RECIPES}")
