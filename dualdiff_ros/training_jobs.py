"""Fill a ModelStore for a domain: data, general prior, fine-tuned specialized model.

Used by `dualdiff train`, `dualdiff demo` and the navigate-to study (which trains and saves
its models here, so training never needs the evaluation package). A second call with the
same recipe finds the checkpoints and trains nothing (pass force=True to retrain).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from .diffusion.checkpoint import CheckpointError, read_header
from .diffusion.cluster import Cluster
from .diffusion.train_state import StateFile
from .domains import NAVIGATE_TO, get_domain
from .model_store import ModelStore, Recipe, save, train_general, train_specialized
from .navigate_to import PatchSpec, conditions, drop_maps, mark_map_guidance
from .recipes import NAVIGATION_DATA
from .recipes import recipe as named_recipe
from .seeds import stream

log = logging.getLogger("dualdiff.train")

# The thesis's dataset sizes for the synthetic domains.
GENERAL_SIZE, SPECIALIZED_SIZE = 55_398, 128


def trained_with(path, recipe_name: str, context: str | None = None, architecture: str | None = None) -> bool:
    """Whether `path` holds a model of this recipe (and, for a home-aware prior, this context kind and network)."""
    try:
        header = read_header(path)
    except CheckpointError:
        return False
    metadata = header["metadata"]
    kind = metadata.get("context", {}).get("kind", "summary")
    return (metadata.get("recipe") == recipe_name and (context is None or kind == context)
            and (architecture is None or header["architecture"].get("name") == architecture))


def train_domain(domain: str, model_dir, recipe_name: str = "demo", seed: int = 0, force: bool = False,
                 progress: bool = True, cluster: Cluster | None = None, state_every: int = 0,
                 resume: bool = False) -> dict:
    """Train (or reuse) the domain's general prior and specialized model; returns their versions.

    Under torchrun every rank calls this with the same arguments: all train the prior together
    (`cluster`), rank 0 alone fine-tunes the specialized model and writes both. With
    `state_every` > 0 the prior's resumable state is written every that many steps beside it;
    `resume` continues from it.
    """
    cluster = cluster or Cluster()
    say = print if cluster.is_main else (lambda *a, **k: None)
    store = ModelStore(model_dir)
    paths = (store.general_path(domain), store.specialized_path(domain))
    if not force and all(trained_with(p, recipe_name) for p in paths):
        say(f"[train] {domain}: reusing {paths[0]} and {paths[1]} (recipe {recipe_name}); --force retrains")
        return {"general": read_header(paths[0])["metadata"]["version"],
                "specialized": read_header(paths[1])["metadata"]["version"]}
    state = StateFile(state_path(paths[0]), state_every, resume) if state_every or resume else None
    if domain == NAVIGATE_TO:
        return train_navigation(model_dir, recipe_name, seed, cluster=cluster, state=state)
    recipe = named_recipe(recipe_name)
    dom = get_domain(domain)
    general_data = dom.general_dataset(GENERAL_SIZE, stream(seed, "general_data"))
    special_data = dom.specialized_dataset(SPECIALIZED_SIZE, stream(seed, "specialized_data"))
    start = time.perf_counter()
    say(f"[train] {domain}: general prior on {len(general_data)} pairs (recipe {recipe_name}, "
        f"{cluster.world_size} process(es))")
    general = train_general(domain, general_data.conditions, general_data.targets, recipe, seed,
                            progress and cluster.is_main, cluster, state)
    if not cluster.is_main:
        cluster.barrier()  # rank 0 fine-tunes and writes; the others wait so that all end together
        return {}
    general.metadata["recipe"] = recipe_name
    versions = {"general": save(general, paths[0])}
    print(f"[train] {domain}: specialized model, fine-tuned on {len(special_data)} observations")
    special = train_specialized(general, special_data.conditions, special_data.targets, recipe, "fine_tune",
                                seed=seed, progress=progress)
    special.metadata["recipe"] = recipe_name
    versions["specialized"] = save(special, paths[1])
    print(f"[train] {domain}: wrote {paths[0]} ({versions['general']}) and {paths[1]} "
          f"({versions['specialized']}) in {time.perf_counter() - start:.0f} s")
    cluster.barrier()
    return versions


def train_home_aware(domain: str, model_dir, recipe_name: str = "demo", seed: int = 0, force: bool = False,
                     progress: bool = True, kind: str = "set", reader: str = "kernel") -> str:
    """Train (or reuse) the domain's home-aware prior on fleet data from the home family; its version.

    It answers from the home's observations in its condition (learning/in_context.py), so a robot
    specializes with no training of its own; the placement service uses it while the home has few
    observations (`home_aware.*` parameters).
    """
    from .learning.in_context import home_aware_architecture, train_prior
    from .recipes import HOME_AWARE_FLEET, home_aware_recipe

    path = ModelStore(model_dir).home_aware_path(domain)
    network = home_aware_architecture(home_aware_recipe(recipe_name).architecture, kind, reader)["name"]
    if not force and trained_with(path, recipe_name, kind, network):
        print(f"[train] {domain}: reusing {path} (recipe {recipe_name}, context {kind}, {network}); --force retrains")
        return read_header(path)["metadata"]["version"]
    fleet = HOME_AWARE_FLEET[recipe_name]
    start = time.perf_counter()
    print(f"[train] {domain}: home-aware prior ({kind} context, {network}) on {fleet[0] * fleet[2]} observations "
          f"of {fleet[0]} fleet homes (recipe {recipe_name})")
    model = train_prior(domain, home_aware_recipe(recipe_name), fleet, seed, kind, "fleet", progress, reader)
    model.metadata.update(recipe=recipe_name)
    version = save(model, path)
    print(f"[train] {domain}: wrote {path} ({version}) in {time.perf_counter() - start:.0f} s")
    return version


def state_path(general_path) -> Path:
    """Where the general prior's resumable training state lives: beside the checkpoint."""
    return Path(general_path).with_suffix(".train-state.safetensors")


# ---- navigate-to -----------------------------------------------------------------------------
GENERAL_DATA_SEED, BALL_DATA_SEED = 0, 1  # the data is fixed across training seeds, as in the thesis


def load_navigation_data(general_tasks: int, train_tasks: int, test_tasks: int, data_dir=None,
                         general_seed: int = GENERAL_DATA_SEED, ball_seed: int = BALL_DATA_SEED,
                         progress: bool = False):
    """General, ball-train and ball-test NavigateData; generated once per (seed, size), cached in data_dir.

    `general_tasks` 0 makes no general data (None): a study that evaluates a prior trained elsewhere.
    """
    from . import sim  # PyBullet: only where navigate-to data is made

    root = Path(data_dir).expanduser() if data_dir else None
    general_path = root / f"navigate_general_seed{general_seed}_tasks{general_tasks}.npz" if root else None
    if general_tasks == 0:
        general = None
    elif general_path is not None and general_path.exists():
        general = sim.NavigateData.load(general_path)
    else:
        general = sim.general_dataset(general_tasks, general_seed, progress=progress)
        if general_path is not None:
            general.save(general_path)
    prefix = f"navigate_ball_seed{ball_seed}_train{train_tasks}_test{test_tasks}"
    paths = (root / f"{prefix}_train.npz", root / f"{prefix}_test.npz") if root else (None, None)
    if paths[0] is not None and all(p.exists() for p in paths):
        return general, sim.NavigateData.load(paths[0]), sim.NavigateData.load(paths[1])
    train, test = sim.specialized_datasets(train_tasks, test_tasks, ball_seed)
    if root is not None:
        train.save(paths[0])
        test.save(paths[1])
    return general, train, test


def navigation_conditions(data, recipe: Recipe, seed: int, progress: bool = False, both: bool = False):
    """(conditions, targets) for NavigateData rows: the state, then (if the recipe has a patch) the map.

    A `recipe.map_dropout` share of the rows (drawn from `seed`) sees "no map" instead; with
    `both` every row comes twice, with its map and without (for the few rows of a specialist,
    so that it answers requests without a map as well as with one).
    """
    if not recipe.perception:
        return data.states, data.targets
    from .sim.perception import dataset_features

    spec = PatchSpec.from_dict(recipe.perception)
    features = dataset_features(data, spec, progress)
    if both:
        return (np.concatenate([conditions(data.states, features), conditions(data.states, 0 * features)]),
                np.concatenate([data.targets, data.targets]))
    return conditions(data.states, drop_maps(features, recipe.map_dropout, seed)), data.targets


def mark_map_block(model, recipe: Recipe) -> None:
    """Record the patch spec and where the map sits in the condition (the block training drops)."""
    model.metadata["perception"] = dict(recipe.perception)
    mark_map_guidance(model)


def train_navigation_models(general_data, ball_train, recipe: Recipe, seed: int,
                            needed: tuple = ("scratch", "fine_tuned"), progress: bool = False,
                            cluster: Cluster | None = None, state: StateFile | None = None,
                            general=None) -> dict:
    """The navigate-to general prior, and the ball model from scratch and/or the ball fine-tune, for one seed.

    A given `general` (a prior trained elsewhere, e.g. on the fleet shards) is used as it is.
    """
    if general is None:
        general_conditions, general_targets = navigation_conditions(general_data, recipe,
                                                                    stream(seed, "general_data"), progress)
        general = train_general(NAVIGATE_TO, general_conditions, general_targets, recipe,
                                stream(seed, "train_general"), progress, cluster, state)
        if recipe.perception:
            mark_map_block(general, recipe)
    models = {"general": general}
    ball_conditions, ball_targets = navigation_conditions(ball_train, recipe, stream(seed, "specialized_data"),
                                                          both=True)
    for name, method in (("scratch", "scratch"), ("fine_tuned", "fine_tune")):
        if name in needed:
            models[name] = train_specialized(general, ball_conditions, ball_targets, recipe, method,
                                             task="ball", seed=stream(seed, f"train_{name}"), progress=progress)
            if recipe.perception:
                mark_map_block(models[name], recipe)
    return models


def save_navigation_models(models: dict, model_dir, method: str = "fine_tune", recipe_name: str = "") -> dict:
    """Write the prior and the served ball model where the placement service looks for navigate_to.

    The served specialized model is the fine-tune (the specialized node's default method) unless
    `method` says scratch; the other one is kept beside it as task "scratch" or "fine_tune".
    Returns the checkpoint versions.
    """
    store = ModelStore(model_dir)
    served, other = ("fine_tuned", "scratch") if method == "fine_tune" else ("scratch", "fine_tuned")
    tasks = {"general": "", "specialized": "", "other": "scratch" if method == "fine_tune" else "fine_tune"}
    paths = {"general": store.general_path(NAVIGATE_TO), "specialized": store.specialized_path(NAVIGATE_TO),
             "other": store.specialized_path(NAVIGATE_TO, tasks["other"])}
    versions = {}
    for key, name in (("general", "general"), ("specialized", served), ("other", other)):
        if name not in models:  # a study that ran only some configurations
            continue
        if recipe_name:
            models[name].metadata["recipe"] = recipe_name  # `dualdiff train` reuses checkpoints of its recipe
        if key != "general":  # the slot the file fills (the placement service checks it); the data's type stays
            models[name].metadata.update(trained_on_task=models[name].metadata.get("task", ""), task=tasks[key])
        versions[key] = save(models[name], paths[key])
    return versions


def train_navigation(model_dir, recipe_name: str = "full", seed: int = 0, data_dir=None,
                     method: str = "fine_tune", cluster: Cluster | None = None, state: StateFile | None = None) -> dict:
    """`dualdiff train --domain navigate_to`: one seed's models of a recipe into ModelStore(model_dir)."""
    from .sim.dataset import FULL_SPECIALIZED_TEST_TASKS, FULL_SPECIALIZED_TRAIN_TASKS

    sizes = {"train_tasks": FULL_SPECIALIZED_TRAIN_TASKS, "test_tasks": FULL_SPECIALIZED_TEST_TASKS,
             **NAVIGATION_DATA[recipe_name]}
    general_data, ball_train, _ = load_navigation_data(**sizes, data_dir=data_dir)
    cluster = cluster or Cluster()
    needed = ("scratch", "fine_tuned") if cluster.is_main else ()  # only rank 0 trains the ball models
    models = train_navigation_models(general_data, ball_train, named_recipe(recipe_name, NAVIGATE_TO), seed,
                                     needed, cluster=cluster, state=state)
    versions = save_navigation_models(models, model_dir, method, recipe_name) if cluster.is_main else {}
    cluster.barrier()
    return versions
