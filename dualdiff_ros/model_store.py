"""Where models live on disk, and the training recipes that fill it (no ROS here).

Layout under one root folder:
    <root>/<domain>/general.safetensors
    <root>/<domain>/home_aware.safetensors             (optional: `dualdiff train --home-aware`)
    <root>/<domain>/specialized.safetensors            (task "")
    <root>/<domain>/specialized-<task>.safetensors     (a named task)
A specialized model always shares its general prior's normalizers and schedule, so the
two can be composed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .diffusion.checkpoint import load_checkpoint, save_checkpoint
from .diffusion.cluster import Cluster, share_normalizer
from .diffusion.model import DiffusionModel, model_space_targets
from .diffusion.normalizer import Normalizer
from .diffusion.proposer import calibrate_plausibility
from .diffusion.schedules import NoiseSchedule
from .diffusion.train_state import StateFile
from .diffusion.training import TrainConfig, fine_tune, train

_TASK = re.compile(r"[A-Za-z0-9_\-]{0,64}")
SPECIALIZATION_METHODS = ("fine_tune", "scratch")


def check_task(task: str) -> str:
    """The task name, if it is letters, digits, '_' or '-' only (it becomes part of a file name)."""
    if not _TASK.fullmatch(task or ""):
        shown = repr(task[:32]) + ("..." if len(task) > 32 else "")
        raise ValueError(f"task {shown} must be letters, digits, '_' or '-' only, at most 64 (no spaces or newlines)")
    return task or ""


@dataclass(frozen=True)
class ModelStore:
    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root).expanduser())

    def general_path(self, domain: str) -> Path:
        return self.root / domain / "general.safetensors"

    def home_aware_path(self, domain: str) -> Path:
        """The home-aware prior (learning/in_context.py), beside the general prior."""
        return self.root / domain / "home_aware.safetensors"

    def specialized_path(self, domain: str, task: str = "") -> Path:
        task = check_task(task)
        return self.root / domain / (f"specialized-{task}.safetensors" if task else "specialized.safetensors")

    def load_general(self, domain: str) -> DiffusionModel:
        return load_checkpoint(self.general_path(domain))

    def load_specialized(self, domain: str, task: str = "") -> DiffusionModel:
        return load_checkpoint(self.specialized_path(domain, task))

    def specialized_checkpoints(self, domains) -> list[tuple[str, str, Path]]:
        """(domain, task, path) of every specialized checkpoint stored for `domains`, in file-name order."""
        found = []
        for domain in domains:
            for path in sorted((self.root / domain).glob("specialized*.safetensors")):
                stem = path.name[: -len(".safetensors")]
                task = stem[len("specialized-"):] if stem.startswith("specialized-") else ""
                if stem == "specialized" or task:
                    found.append((domain, task, path))
        return found


@dataclass
class Recipe:
    """Model size and training settings for one domain's general and specialized models."""

    architecture: dict = field(default_factory=lambda: {"name": "mlp", "width": 256, "depth": 4})
    schedule: dict = field(default_factory=lambda: {"kind": "linear", "num_steps": 100})
    relative_targets: bool = True
    general: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=100, batch_size=2048, lr=1e-3, description="general"))
    specialized: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=1500, batch_size=64, lr=1e-3, step_epochs=150, description="specialized"))
    fine_tune: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=600, batch_size=64, lr=1e-3, step_epochs=60, description="fine-tune"))
    # Fine-tune only rank-r updates of each layer (0 = every weight). Rank 8 measured best on
    # the cabinet (docs/RESULTS.md, section 1).
    fine_tune_lora_rank: int = 8
    # How the served proposer should compose this domain's models, stored in the general prior's
    # metadata (composition.serving_composition); {} = the product's defaults.
    serving: dict = field(default_factory=dict)
    # Navigate-to: the map patch in the condition (navigate_to.PatchSpec as a dict; {} = state only),
    # and the share of training rows that see "no map" instead, so requests without a map work too.
    perception: dict = field(default_factory=dict)
    map_dropout: float = 0.5


def train_general(domain: str, conditions: np.ndarray, targets: np.ndarray, recipe: Recipe,
                  seed: int = 0, progress: bool = True, cluster: Cluster | None = None,
                  state: StateFile | None = None, condition_normalizer: Normalizer | None = None) -> DiffusionModel:
    """A general prior; its normalizers are fitted here and inherited by every specialization.

    With a `cluster`, every rank passes the same data, rank 0's normalizers are used by all and
    each rank trains on its share of every batch (training.run_training). `condition_normalizer`
    replaces the fitted one (a home-aware prior's set shares one scale per axis).
    """
    cluster = cluster or Cluster()
    local = model_space_targets(conditions, targets, recipe.relative_targets)
    model = DiffusionModel.create(recipe.architecture, NoiseSchedule(**recipe.schedule),
                                  share_normalizer(cluster, Normalizer.fit(local)),
                                  share_normalizer(cluster, condition_normalizer or Normalizer.fit(conditions)),
                                  {"domain": domain, "role": "general"}, recipe.relative_targets, seed=seed)
    train(model, conditions, targets, replace(recipe.general, seed=seed, progress=progress), cluster=cluster,
          state=state)
    if recipe.serving:
        model.metadata["serving"] = dict(recipe.serving)
    calibrate_plausibility(model, conditions, targets, seed)
    return model


def train_specialized(general: DiffusionModel, conditions: np.ndarray, targets: np.ndarray, recipe: Recipe,
                      method: str = "fine_tune", task: str = "", seed: int = 0,
                      progress: bool = True, on_step=None) -> DiffusionModel:
    """Specialize on the robot's own observations: fine-tune the prior, or train from scratch."""
    if method not in SPECIALIZATION_METHODS:
        raise ValueError(f"method {method!r}: use one of {SPECIALIZATION_METHODS}")
    conditions = np.asarray(conditions, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    if method == "fine_tune":
        model, _ = fine_tune(general, conditions, targets, replace(recipe.fine_tune, seed=seed, progress=progress),
                             on_step=on_step, lora_rank=recipe.fine_tune_lora_rank)
    else:
        model = DiffusionModel.create(general.architecture, general.schedule, general.target_normalizer,
                                      general.condition_normalizer, {}, general.relative_targets, seed=seed)
        train(model, conditions, targets, replace(recipe.specialized, seed=seed, progress=progress),
              on_step=on_step)
    model.metadata.update(domain=general.metadata.get("domain", ""), role="specialized", task=task,
                          method=method, general_version=general.metadata.get("version", ""))
    return model


def save(model: DiffusionModel, path: Path) -> str:
    return save_checkpoint(model, path)
