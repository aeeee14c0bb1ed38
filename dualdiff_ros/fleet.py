r"""The general prior at fleet scale: the full navigate-to data set as shards, and training from them.

    dualdiff navigate-data --output data/navigate-general --workers 2          # ~1.9M points
    torchrun --standalone --nproc-per-node 2 -m dualdiff_ros.train --domain navigate_to --recipe full \
        --data data/navigate-general --model-dir models

The shard set holds the model's inputs as the recipe defines them today: the 10 state numbers,
the map patch (PatchSpec of the recipe) with `map_dropout` of the rows set to "no map", and the
base target. Each rank reads its own rows of every batch from the memmaps (diffusion.shards);
rank 0 fits the normalizers in one streaming pass and broadcasts them.
"""
from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from datetime import datetime, timezone
from multiprocessing import get_context

import numpy as np
import torch

from .diffusion.cluster import Cluster
from .diffusion.model import DiffusionModel
from .diffusion.normalizer import Normalizer
from .diffusion.proposer import calibrate_plausibility
from .diffusion.schedules import NoiseSchedule
from .diffusion.shards import ShardRows, ShardSet, ShardWriter
from .diffusion.train_state import StateFile
from .diffusion.training import run_training
from .domains import NAVIGATE_TO
from .model_store import Recipe, train_specialized
from .navigate_to import PatchSpec, conditions, drop_maps
from .seeds import stream

DROPOUT_SEED = stream(0, "general_data")  # the map dropout of seed 0's in-memory general data


# ---- writing the data set ----------------------------------------------------------------------
def _shard_chunk(job):
    """Rows of a chunk of tasks as model inputs (float32), in task order; runs in a worker process."""
    from .sim.dataset import GENERAL_TYPES, generate_tasks
    from .sim.perception import dataset_features

    seed, tasks, perception, dropout = job
    data, stats = generate_tasks(seed, tasks, GENERAL_TYPES)
    cond = data.states
    if perception and len(data):
        features = dataset_features(data, PatchSpec.from_dict(perception))
        # One dropout stream per chunk: the same rows lose their map for any number of workers.
        cond = conditions(data.states, drop_maps(features, dropout, [DROPOUT_SEED, int(tasks[0])]))
    columns = {"conditions": np.asarray(cond, np.float32), "targets": np.asarray(data.targets, np.float32),
               "seed": data.seed, "task_index": data.task_index, "step": data.step, "object_type": data.object_type}
    return columns, stats


def write_navigation_shards(output, tasks: int, recipe: Recipe, seed: int = 0, workers: int = 2, chunk: int = 50,
                            rows_per_shard: int = 65_536, progress: bool = True) -> ShardSet:
    """The navigate-to general data set of `tasks` tasks (69,000: ~1.9M points) as shards, made in parallel.

    Each task draws from its own (seed, task) streams and each chunk its own dropout stream, so the
    rows are the same for any number of workers.
    """
    from .diffusion.progress import progress_bar

    jobs = [(seed, list(range(a, min(a + chunk, tasks))), dict(recipe.perception), recipe.map_dropout)
            for a in range(0, tasks, chunk)]
    writer = ShardWriter(output, rows_per_shard)
    t0 = time.perf_counter()
    points, states = 0, 0
    bar = progress_bar(total=tasks, desc="navigate-to general", unit="task", disable=not progress)
    pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn")) if workers > 1 else None
    try:
        for job, (columns, stats) in zip(jobs, pool.map(_shard_chunk, jobs) if pool else map(_shard_chunk, jobs)):
            if len(columns["targets"]):
                writer.append(**columns)
            points += len(columns["targets"])
            states += stats["states"]
            bar.update(len(job[1]))
            bar.set_postfix(points=points, per_s=f"{points / (time.perf_counter() - t0):.0f}")
    finally:
        bar.close()
        if pool:
            pool.shutdown(cancel_futures=True)
    seconds = time.perf_counter() - t0
    writer.meta = {"name": "navigate_to general", "seed": seed, "tasks": tasks, "points": points, "states": states,
                   "perception": dict(recipe.perception), "map_dropout": recipe.map_dropout,
                   "dropout_seed": DROPOUT_SEED, "relative_targets": recipe.relative_targets,
                   "generation_seconds": round(seconds, 1), "points_per_second": round(points / max(seconds, 1e-9), 1),
                   "workers": workers, "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return writer.close()


# ---- training from it --------------------------------------------------------------------------
def fit_normalizers(shards: ShardSet, relative: bool, cluster: Cluster) -> tuple[Normalizer, Normalizer, dict]:
    """Target and condition normalizers and the normalized targets' moments: rank 0 streams, all ranks get them."""
    dt, dc = shards.column_dim("targets"), shards.column_dim("conditions")
    packed = torch.zeros(4 + 2 * dt + 2 * dc + dt + dt * dt, dtype=torch.float64)
    if cluster.is_main:
        t_low, t_high = np.full(dt, np.inf), np.full(dt, -np.inf)
        c_low, c_high = np.full(dc, np.inf), np.full(dc, -np.inf)
        count, total, outer = 0, np.zeros(dt), np.zeros((dt, dt))
        for c, y in zip(shards.chunks("conditions"), shards.chunks("targets")):
            c, y = np.asarray(c, np.float64), np.asarray(y, np.float64)
            if relative:
                y = y - c[:, :dt]
            t_low, t_high = np.minimum(t_low, y.min(0)), np.maximum(t_high, y.max(0))
            c_low, c_high = np.minimum(c_low, c.min(0)), np.maximum(c_high, c.max(0))
            count, total, outer = count + len(y), total + y.sum(0), outer + y.T @ y
        packed = torch.as_tensor(np.concatenate([[count], t_low, t_high, c_low, c_high, total, outer.ravel(),
                                                 [0, 0, 0]]))
    packed = cluster.broadcast(packed).numpy()
    count = packed[0]
    t_low, t_high, c_low, c_high, total, outer = np.split(
        packed[1:-3], np.cumsum([dt, dt, dc, dc, dt]))
    targets, conds = Normalizer(t_low, t_high), Normalizer(c_low, c_high)
    mean = total / count
    cov = (outer.reshape(dt, dt) - count * np.outer(mean, mean)) / max(count - 1, 1)
    half, mid = targets._half, targets._mid
    moments = {"mean": ((mean - mid) / half).tolist(), "cov": (cov / np.outer(half, half)).tolist()}
    return targets, conds, moments


def train_general_sharded(domain: str, shards: ShardSet, recipe: Recipe, seed: int, cluster: Cluster | None = None,
                          state: StateFile | None = None, progress: bool = True) -> DiffusionModel:
    """The general prior of `recipe` trained on a shard set by every rank of `cluster` (rank 0's model is the one)."""
    cluster = cluster or Cluster()
    target_norm, cond_norm, moments = fit_normalizers(shards, recipe.relative_targets, cluster)
    model = DiffusionModel.create(recipe.architecture, NoiseSchedule(**recipe.schedule), target_norm, cond_norm,
                                  {"domain": domain, "role": "general", "target_moments": moments},
                                  recipe.relative_targets, seed=seed)
    run_training(model, ShardRows(shards, model), replace(recipe.general, seed=seed, progress=progress),
                 shards.data_sha256, cluster=cluster, state=state)
    if recipe.serving:
        model.metadata["serving"] = dict(recipe.serving)
    model.metadata["data_shards"] = {"rows": len(shards), "data_sha256": shards.data_sha256,
                                     "tasks": shards.meta.get("tasks"), "seed": shards.meta.get("seed")}
    if cluster.is_main:
        idx = np.sort(np.random.default_rng(seed).choice(len(shards), size=min(4096, len(shards)), replace=False))
        calibrate_plausibility(model, shards.read(idx, "conditions").astype(np.float64),
                               shards.read(idx, "targets").astype(np.float64), seed)
    return model


def train_navigation_sharded(model_dir, recipe_name: str, seed: int, data, cluster: Cluster | None = None,
                             state_every: int = 500, resume: bool = False, progress: bool = True,
                             general_epochs: int | None = None) -> dict:
    """`dualdiff train --domain navigate_to --data DIR`: the prior from shards, then (rank 0) the ball models.

    `general_epochs` replaces the recipe's: the recipe counts epochs of its own ~140k points, and a
    shard set many times that size needs fewer passes for the same number of optimiser steps.
    """
    from .model_store import ModelStore
    from .recipes import NAVIGATION_DATA
    from .recipes import recipe as named_recipe
    from .sim.dataset import FULL_SPECIALIZED_TRAIN_TASKS, SPECIALIZED_TYPES, ball_task_indices, generate
    from .training_jobs import BALL_DATA_SEED, navigation_conditions, save_navigation_models

    cluster = cluster or Cluster()
    recipe = named_recipe(recipe_name, NAVIGATE_TO)
    if general_epochs is not None:
        recipe = replace(recipe, general=replace(recipe.general, epochs=general_epochs))
    shards = ShardSet(data)
    made_with = (shards.meta.get("perception"), shards.meta.get("map_dropout"))
    if made_with != (dict(recipe.perception), recipe.map_dropout):
        raise ValueError(f"shard set {data} was made with perception {made_with[0]} and map dropout {made_with[1]}, "
                         f"recipe {recipe_name} needs {dict(recipe.perception)} and {recipe.map_dropout}: "
                         f"write it with `dualdiff navigate-data --recipe {recipe_name}`")
    store = ModelStore(model_dir)
    state = StateFile(store.general_path(NAVIGATE_TO).with_suffix(".train-state.safetensors"), state_every, resume)
    general = train_general_sharded(NAVIGATE_TO, shards, recipe, stream(seed, "train_general"), cluster, state,
                                    progress)
    versions = {}
    if cluster.is_main:
        if recipe.perception:
            general.metadata["perception"] = dict(recipe.perception)
        train_tasks = NAVIGATION_DATA[recipe_name].get("train_tasks", FULL_SPECIALIZED_TRAIN_TASKS)
        ball = generate(BALL_DATA_SEED, ball_task_indices(0, train_tasks), SPECIALIZED_TYPES, name="specialized_train")
        ball_c, ball_t = navigation_conditions(ball, recipe, stream(seed, "specialized_data"), both=True)
        models = {"general": general}
        for name, method in (("scratch", "scratch"), ("fine_tuned", "fine_tune")):
            models[name] = train_specialized(general, ball_c, ball_t, recipe, method, task="ball",
                                             seed=stream(seed, f"train_{name}"), progress=progress)
            if recipe.perception:
                models[name].metadata["perception"] = dict(recipe.perception)
        versions = save_navigation_models(models, model_dir, "fine_tune", recipe_name)
        print(f"[train] navigate_to: prior on {len(shards)} shard rows by {cluster.world_size} process(es); "
              f"wrote {store.general_path(NAVIGATE_TO)} ({versions['general']})")
    cluster.barrier()
    return versions

