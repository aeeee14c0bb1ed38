"""`dualdiff train --spec FILE --data PATH`: a domain's general prior from its spec and fleet Parquet data.

The same training code as the thesis's domains (model_store.train_general, under torchrun too:
every rank reads the same rows, each trains on its share of every batch); only where the rows
come from differs. The model learns targets in the spec's frame:
- a translation frame whose origin is the state's first fields (cabinet, round table, navigate-to)
  trains on world targets with the model's `relative_targets`: the same numbers, and a checkpoint
  today's serving answers in world coordinates unchanged;
- any other frame (se2, absolute, another translation) trains on `spec.to_local(...)` targets with
  `relative_targets` off; the checkpoint says so (metadata "targets_in": "spec_frame"), and whoever
  samples it turns answers back with `answers_in_world` (spec.from_local).
The spec itself rides in the checkpoint's header (metadata "domain_spec"), so a model folder
describes its domains without any code naming them.
"""
from __future__ import annotations

import time
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from .diffusion.model import DiffusionModel
from .domains.spec import DomainSpec
from .model_store import ModelStore, Recipe, save, train_general, train_specialized
from .recipes import recipe as named_recipe

TARGETS_IN = "targets_in"          # metadata key: "world" (raw targets, maybe relative) or "spec_frame"
SPEC_KEY = "domain_spec"           # metadata key: DomainSpec.to_dict()
_SECTIONS = {"general": "general", "fine_tune": "fine_tune", "specialized": "specialized"}


def spec_recipe(spec: DomainSpec, recipe_name: str) -> Recipe:
    """The named recipe for this domain, with the spec's own `recipes.<name>` sizes applied.

    Built-in navigate_to starts from its own recipe (without the map patch: Parquet rows carry no
    map); every other spec from the synthetic domains' recipe. The frame decides relative_targets.
    """
    base = named_recipe(recipe_name, "navigate_to" if spec.name == "navigate_to" else "cabinet")
    base = replace(base, relative_targets=spec.relative_prefix, perception={})
    overrides = spec.recipes.get(recipe_name, {})
    architecture, schedule = dict(base.architecture), dict(base.schedule)
    configs = {key: getattr(base, key) for key in _SECTIONS}
    lora = base.fine_tune_lora_rank
    for key, value in overrides.items():
        if key in ("width", "depth"):
            architecture[key] = int(value)
        elif key == "diffusion_steps":
            schedule["num_steps"] = int(value)
        elif key == "lora_rank":
            lora = int(value)
        else:
            section, _, setting = key.rpartition("_")
            if setting == "size":  # *_batch_size
                section, setting = key[: -len("_batch_size")], "batch_size"
            cast = float if setting == "lr" else int
            configs[section] = replace(configs[section], **{setting: cast(value)})
    return replace(base, architecture=architecture, schedule=schedule, fine_tune_lora_rank=lora, **configs)


def model_targets(spec: DomainSpec, states: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """What the model is trained on for these world targets (see the module's docstring)."""
    return np.asarray(targets, dtype=np.float64) if spec.relative_prefix else spec.to_local(states, targets)


def mark_spec(model: DiffusionModel, spec: DomainSpec) -> None:
    """Record the spec and the frame of the model's answers in its metadata (the checkpoint's header)."""
    model.metadata.update({"domain": spec.name, SPEC_KEY: spec.to_dict(),
                           TARGETS_IN: "world" if spec.relative_prefix else "spec_frame"})


def spec_of_model(model: DiffusionModel) -> DomainSpec | None:
    """The DomainSpec a checkpoint was trained with, or None (a model trained before specs)."""
    data = model.metadata.get(SPEC_KEY)
    return DomainSpec.from_dict(data, f"checkpoint {model.metadata.get('version', '')}") if data else None


def answers_in_world(model: DiffusionModel, states, decoded) -> np.ndarray:
    """A sampled model's decoded targets in world coordinates (from the spec's frame when it learned there)."""
    if model.metadata.get(TARGETS_IN, "world") == "world":  # before parsing the spec: every request asks
        return np.asarray(decoded, dtype=np.float64)
    spec = spec_of_model(model)
    return np.asarray(decoded, dtype=np.float64) if spec is None else spec.from_local(states, decoded)


def write_spec_shards(spec: DomainSpec, data, output, on_bad: str = "skip", rows_per_shard: int = 1 << 20):
    """Stream the fleet rows under `data` into a shard set (diffusion/shards.py) for training larger than memory.

    Conditions are the states and targets what the model learns (`model_targets`: the spec's
    frame), float64, so a prior trained from the shards is the one trained from the rows in memory.
    The manifest's meta keeps the spec and the read's counts.
    """
    from .diffusion.shards import ShardWriter
    from .domains.fleet_data import ReadReport, iter_batches

    report = ReadReport()
    writer = ShardWriter(output, rows_per_shard, dtypes={"conditions": np.float64, "targets": np.float64})
    start = time.perf_counter()
    for batch in iter_batches(data, spec, on_bad, report=report):
        if len(batch):
            writer.append(conditions=batch.states, targets=model_targets(spec, batch.states, batch.targets))
    if report.rows_kept == 0:
        raise ValueError(f"{data}: no usable rows for {spec.name} ({report.describe()}): no shard set written")
    writer.meta = {"name": f"{spec.name} fleet data", SPEC_KEY: spec.to_dict(),
                   TARGETS_IN: "world" if spec.relative_prefix else "spec_frame", "source": str(data),
                   "files": report.files, "rows_read": report.rows_read, "rows_skipped": report.rows_skipped,
                   "first_bad": report.first_bad, "seconds": round(time.perf_counter() - start, 2)}
    return writer.close()


def _is_shard_set(data) -> bool:
    from .diffusion.shards import MANIFEST

    return (Path(data).expanduser() / MANIFEST).is_file()


def _train_from_shards(spec: DomainSpec, data, recipe: Recipe, seed: int, cluster, progress: bool):
    """The general prior from a shard set written by `write_spec_shards` for this spec (every rank reads lazily)."""
    from .diffusion.shards import ShardSet
    from .fleet import train_general_sharded

    shards = ShardSet(Path(data).expanduser())
    written = shards.meta.get(SPEC_KEY)
    if not written:
        raise ValueError(f"{data} is a shard set without a domain spec (e.g. `dualdiff navigate-data`'s): train it "
                         "with --domain navigate_to --data, or write one with `dualdiff data shards --spec ...`")
    mine = spec.to_dict()
    if {k: written.get(k) for k in ("name", "state", "target", "frame")} != \
            {k: mine.get(k) for k in ("name", "state", "target", "frame")}:
        raise ValueError(f"{data} was written for another spec ({written.get('name')!r}, frame "
                         f"{written.get('frame')}): write it again with `dualdiff data shards --spec {spec.source}`")
    model = train_general_sharded(spec.name, shards, recipe, seed, cluster, None, progress)
    meta = shards.meta
    return model, {"rows": len(shards), "skipped": meta.get("rows_skipped", 0), "files": meta.get("files", 0),
                   "homes": None, "robots": None, "shards": str(data)}


def train_spec(spec: DomainSpec, data, model_dir, recipe_name: str = "demo", seed: int = 0,
               specialized_data=None, on_bad: str = "skip", cluster=None, progress: bool = True) -> dict:
    """Train the spec's general prior on the fleet rows under `data` (and a specialist on `specialized_data`).

    `data` is Parquet (a file or a folder: every rank reads the rows into memory) or a shard set
    of `write_spec_shards` (every rank reads its rows of each batch lazily). Writes
    ModelStore(model_dir)/<spec.name>/general.safetensors (and specialized.safetensors); returns
    the versions. Under torchrun every rank calls this; rank 0 writes.
    """
    from .diffusion.cluster import Cluster
    from .domains.fleet_data import read_fleet

    cluster = cluster or Cluster()
    say = print if cluster.is_main else (lambda *a, **k: None)
    recipe = spec_recipe(spec, recipe_name)
    if _is_shard_set(data):
        return _train_spec_model(spec, None, data, model_dir, recipe, recipe_name, seed, specialized_data, on_bad,
                                 cluster, progress, say)
    rows = read_fleet(data, spec, on_bad)
    say(f"[train] {spec.name}: {rows.report.describe()} (read in {rows.report.seconds:.2f} s)")
    if len(rows) == 0:
        raise ValueError(f"{data}: no usable rows for {spec.name} ({rows.report.describe()}): nothing to train on")
    if rows.home_id is not None:
        homes = len(set(rows.home_id.tolist()) - {""})
        say(f"[train] {spec.name}: rows come from {homes} home(s); the general prior pools them "
            "(--home-aware is not yet available for spec domains)")
    if spec.map_check is not None:
        say(f"[train] {spec.name}: the prior sees the state only (fleet rows carry no map); the spec's map check "
            "still applies to every answer given a map")
    return _train_spec_model(spec, rows, data, model_dir, recipe, recipe_name, seed, specialized_data, on_bad,
                             cluster, progress, say)


def _train_spec_model(spec, rows, data, model_dir, recipe, recipe_name, seed, specialized_data, on_bad, cluster,
                      progress, say) -> dict:
    """train_spec's training and writing, from rows in memory (`rows`) or from the shard set `data`."""
    from .domains.fleet_data import read_fleet

    special = None
    if specialized_data is not None:
        special = read_fleet(specialized_data, spec, on_bad)
        say(f"[train] {spec.name}: specialist data: {special.report.describe()}")
        if len(special) == 0:
            raise ValueError(f"{specialized_data}: no usable rows for the specialized model")
    start = time.perf_counter()
    source = f"{len(rows)} rows" if rows is not None else f"the shard set {data}"
    say(f"[train] {spec.name}: general prior on {source} (recipe {recipe_name}, frame {spec.frame}, "
        f"{cluster.world_size} process(es))")
    if rows is None:
        general, fleet = _train_from_shards(spec, data, recipe, seed, cluster, progress and cluster.is_main)
    else:
        general = train_general(spec.name, rows.states, model_targets(spec, rows.states, rows.targets), recipe,
                                seed, progress and cluster.is_main, cluster)
        fleet = {"rows": len(rows), "skipped": rows.report.rows_skipped, "files": rows.report.files,
                 "homes": 0 if rows.home_id is None else len(set(rows.home_id.tolist()) - {""}),
                 "robots": 0 if rows.robot_id is None else len(set(rows.robot_id.tolist()) - {""})}
    if not cluster.is_main:
        cluster.barrier()
        return {}
    mark_spec(general, spec)
    general.metadata.update(recipe=recipe_name, fleet_data=fleet)
    store = ModelStore(model_dir)
    versions = {"general": save(general, store.general_path(spec.name))}
    paths = [str(store.general_path(spec.name))]
    if special is not None:
        model = train_specialized(general, special.states, model_targets(spec, special.states, special.targets),
                                  recipe, "fine_tune", seed=seed, progress=progress)
        mark_spec(model, spec)
        model.metadata["recipe"] = recipe_name
        versions["specialized"] = save(model, store.specialized_path(spec.name))
        paths.append(str(store.specialized_path(spec.name)))
    say(f"[train] {spec.name}: wrote {' and '.join(paths)} ({', '.join(versions.values())}) "
        f"in {time.perf_counter() - start:.0f} s")
    cluster.barrier()
    return versions


def train_from_args(args, cluster) -> dict:
    """`dualdiff train --spec ...` (train.run dispatches here)."""
    from .domains.spec import resolve_spec

    if getattr(args, "home_aware", False):
        raise ValueError("--home-aware is not yet available with --spec: the home-aware prior's training is being "
                         "rewritten (learning/in_context.py). Train the general prior without --home-aware; rows' "
                         "home_id are kept in the data for it")
    if args.data is None:
        raise ValueError("--spec needs --data: a .parquet file or a folder of them (docs/domains.md, 'Your own "
                         "domain')")
    for option in ("general_epochs", "resume"):
        if getattr(args, option, None):
            raise ValueError(f"--{option.replace('_', '-')} is for the navigate-to shard set, not --spec: set "
                             "recipes.<name>.general_epochs in the spec instead")
    spec = resolve_spec(args.spec)
    if not Path(args.data).expanduser().exists():
        raise ValueError(f"--data {args.data}: no such file or folder: give a .parquet file or a folder of them")
    return train_spec(spec, args.data, args.model_dir, args.recipe, args.seed, getattr(args, "specialized_data", None),
                      getattr(args, "on_bad", "skip"), cluster, progress=cluster.is_main)


def targets_for_model(model: DiffusionModel, states, targets) -> np.ndarray:
    """World targets as `model` was trained on them (before its own relative_targets).

    What a specialist trained on a robot's observations, or a plausibility check against the
    prior's target box, must use.
    """
    return targets_in_model_frame(model.metadata, states, targets)


def targets_in_model_frame(metadata: dict, states, targets) -> np.ndarray:
    """`targets_for_model` from a checkpoint's metadata alone (its header: no weights needed)."""
    data = metadata.get(SPEC_KEY)
    if not data or metadata.get(TARGETS_IN, "world") == "world":
        return np.asarray(targets, dtype=np.float64)
    return DomainSpec.from_dict(data, f"checkpoint {metadata.get('version', '')}").to_local(states, targets)


def domains_in(model_dir) -> dict[str, DomainSpec]:
    """Every domain with a general prior under `model_dir`, with its spec: what a node could serve.

    The spec comes from the prior's header; a prior trained before specs existed gets the built-in
    spec of its folder's name (cabinet, round_table, navigate_to); other folders are left out.
    """
    from .diffusion.checkpoint import CheckpointError, read_header

    found = {}
    root = Path(model_dir).expanduser()
    for path in sorted(root.glob("*/general.safetensors")) if root.is_dir() else []:
        name = path.parent.name
        try:
            metadata = read_header(path)["metadata"]
        except CheckpointError:
            continue  # a damaged or half-written file: the loader reports it when it is asked for
        spec = spec_in_metadata(name, metadata, str(path))
        if spec is not None:
            found[name] = spec
    return found


def spec_in_metadata(domain: str, metadata: dict, source: str = "<checkpoint>") -> DomainSpec | None:
    """The spec of a checkpoint of `domain` (its header's, or the built-in one of an older file), or None.

    None when the header carries no spec and `domain` is not built-in, or carries another domain's
    spec: such a file cannot be served as `domain`.
    """
    from .domains.spec import BUILTIN_SPECS

    data = metadata.get(SPEC_KEY)
    if data:
        spec = DomainSpec.from_dict(data, source)
        return spec if spec.name == domain else None
    return known_builtin(domain) if domain in BUILTIN_SPECS else None


@lru_cache(maxsize=None)
def known_builtin(name: str) -> DomainSpec:
    """builtin_spec, read once per process (every request and observation asks for it)."""
    from .domains.spec import builtin_spec

    return builtin_spec(name)


def catalogue(model_dir) -> dict[str, DomainSpec]:
    """What the nodes serve and record: every built-in domain, and every domain `domains_in(model_dir)` finds.

    A built-in domain is known before its prior exists (its sizes are fixed), so a request for it
    hears "train it" rather than "unknown domain"; a domain of the user's is known from its prior's spec.
    """
    from .domains.spec import BUILTIN_SPECS

    return {**{name: known_builtin(name) for name in BUILTIN_SPECS}, **domains_in(model_dir)}


def state_meaning(spec: DomainSpec) -> str:
    """The state's fields in words, for a refusal's message: "x (m), y (m), yaw (rad), length (m)"."""
    return ", ".join(f"{f.name} ({f.unit})" if f.unit else f.name for f in spec.state)
