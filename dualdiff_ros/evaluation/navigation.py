"""The navigate-to study: do a general prior and a ball specialist, composed, give valid base poses.

The thesis could only look at its navigate-to samples; here every proposal is checked in the
PyBullet household (dualdiff_ros.sim). One general dataset (9 non-ball types) and one ball
train/test split are made (or loaded from `data_dir`); per seed the general prior, a ball model
from scratch and a ball fine-tune of the prior are trained, and every configuration proposes
base targets for held-out ball states. Seeds vary training and sampling; the data is fixed, as
in the thesis. Configuration names and samplers are experiments.py's; "ring" is the baseline.
See docs/navigation.md.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .. import sim
from ..diffusion.proposer import Proposer
from ..domains import NAVIGATE_TO
from ..maps import nav2_costmap
from ..model_store import Recipe
from ..navigate_to import MapCheck, PatchSpec, answer_with_map, conditions, map_features, spec_of
from ..recipes import NAVIGATION_DATA, recipe
from ..seeds import stream
from ..sim.dataset import FULL_SPECIALIZED_TEST_TASKS, FULL_SPECIALIZED_TRAIN_TASKS
from ..sim.perception import state_maps
from ..training_jobs import (
    BALL_DATA_SEED,
    GENERAL_DATA_SEED,
    load_navigation_data,
    save_navigation_models,
    train_navigation_models,
)
from .experiments import configurations, sample_configuration, summarize
from .report import markdown_table

DOMAIN = NAVIGATE_TO
MODEL_CONFIGURATIONS = ("general", "scratch", "fine_tuned", "joint", "fine_tuned_joint", "corrected", "proposer")
# "proposer_no_map": the served proposer asked without a map. "*_map": the answer after the map check,
# as the placement service gives it with a map (more candidates drawn, the best valid ones kept).
# "proposer_unguided": the served proposer with map guidance off (sampler.guidance 1).
CONFIGURATIONS = (*MODEL_CONFIGURATIONS, "proposer_unguided", "proposer_no_map", "ring", "proposer_map", "ring_map")
CHECKED = ("proposer_map", "ring_map")
METRICS = ("validity", "validity_without_clutter", "success", "samples_to_first_valid", "spread", "coverage",
           "candidates_per_valid", "ms_per_query", "ms_single_query")


@dataclass
class NavigationSettings:
    """Full: ~140k general points (minutes on one core) and the thesis's ball split; `quick()` for tests."""

    general_tasks: int = 5000
    train_tasks: int = FULL_SPECIALIZED_TRAIN_TASKS
    test_tasks: int = FULL_SPECIALIZED_TEST_TASKS
    num_states: int = 300
    samples_per_state: int = 16
    seeds: tuple = (0, 1, 2)
    data_dir: str | None = None
    plot_states: int = 3
    plot_samples: int = 64
    latency_states: int = 5
    general_seed: int = GENERAL_DATA_SEED
    ball_seed: int = BALL_DATA_SEED
    recipe: Recipe = field(default_factory=lambda: recipe("full", DOMAIN))
    progress: bool = False
    configurations: tuple = CONFIGURATIONS   # which rows to run; only the models they need are trained
    map_check: MapCheck = field(default_factory=MapCheck)  # the placement service's defaults
    oversample: float = 2.0                               # candidates drawn per answer wanted, with a map
    ring_search: int = 4                                  # the service's map.ring_search
    general_model: str | None = None  # a prior trained elsewhere (`dualdiff train --data`): evaluated, not trained
    # The map each state comes with: "occupancy" (the simulator node's grid) or "costmap" (that grid as nav2
    # publishes its costmap for this robot: maps.nav2_costmap), at `map_resolution` metres per cell.
    map_kind: str = "occupancy"
    map_resolution: float = 0.05

    @classmethod
    def quick(cls, **overrides) -> "NavigationSettings":
        settings = cls(**NAVIGATION_DATA["quick"], num_states=12, samples_per_state=8, seeds=(0,), plot_states=1,
                       plot_samples=12, latency_states=1, recipe=recipe("quick", DOMAIN))
        return replace(settings, **overrides)


def load_datasets(settings: NavigationSettings):
    """General, ball-train and ball-test data of the study (training_jobs.load_navigation_data)."""
    return load_navigation_data(settings.general_tasks, settings.train_tasks, settings.test_tasks,
                                settings.data_dir, settings.general_seed, settings.ball_seed, settings.progress)


# ---- evaluation ------------------------------------------------------------------------------------
def study_configurations() -> dict:
    """experiments.configurations() for the names studied here, plus the ring baseline.

    "proposer" is Proposer() as the placement node ships it (its default composition and fallback
    policy) over the prior and the fine-tune, the specialized node's default model.
    """
    configs = {name: configurations()[name] for name in MODEL_CONFIGURATIONS}
    configs["proposer_no_map"] = configs["proposer_map"] = configs["proposer"]
    configs["proposer_unguided"] = ("proposer", ("general", "fine_tuned"), Proposer().with_guidance(1.0))
    configs["ring"] = configs["ring_map"] = ("ring", (), None)
    return configs


MAP_KINDS = ("occupancy", "costmap")


class Perception:
    """What the study's proposers see of each held-out state: its map (as the simulator node publishes it).

    `map_kind` "costmap": the same grid as nav2 publishes its costmap for the checked robot (inscribed
    radius its own, inflation + 0.55 m, cost_scaling_factor 3), read as the service reads it with
    map.semantics auto (the study's map check resolves it per state).
    """

    def __init__(self, held_out, spec: PatchSpec | None, map_kind: str = "occupancy", resolution: float = 0.05,
                 check: MapCheck | None = None):
        if map_kind not in MAP_KINDS:
            raise ValueError(f"map kind {map_kind!r}: use one of {MAP_KINDS}")
        self.spec, self.grids, self.features = spec, {}, {}
        check = check or MapCheck()
        for rows, grid in state_maps(held_out.seed, held_out.task_index, held_out.step, resolution):
            if map_kind == "costmap":
                grid = nav2_costmap(grid, inscribed_radius=check.inner_radius).with_semantics("occupancy")
            grid = check.resolve_semantics(grid, held_out.states[rows[0]])[0]
            for r in rows:
                key = held_out.states[r].tobytes()
                self.grids[key] = grid
                if spec is not None:
                    self.features[key] = map_features(grid, held_out.states[r], spec)[0]

    def conditions(self, states, with_map: bool = True) -> np.ndarray:
        """The models' conditions for held-out states: state + map features (none for a state-only model)."""
        if self.spec is None:
            return states
        features = np.stack([self.features[s.tobytes()] for s in states]) if with_map else \
            map_features(None, states, self.spec)
        return conditions(states, features)

    def grid(self, state):
        return self.grids[state.tobytes()]


def propose_fn(spec, models: dict, seed: int, perception: Perception, record: dict | None = None,
               with_map: bool = True):
    """A sim.evaluate_proposer proposer for a configuration; `record` receives samples and diagnostics."""
    def propose(states, k, rng):
        if spec[0] == "ring":
            samples, extra = sim.ring_proposer(states, k, rng), {}
        else:
            samples, extra = sample_configuration(spec, models, perception.conditions(states, with_map), k, seed)
        if record is not None:
            record.update(extra, samples=samples)
        return samples
    return propose


def checked_answers(spec, models: dict, held_out, perception: Perception, settings: NavigationSettings,
                    seed: int) -> tuple[list, list, list, float]:
    """Per state, the answer after the map check (navigate_to.answer_with_map, as the service runs it)."""
    proposer, rng = Proposer(), np.random.default_rng(seed)
    answers, drawn, valid, seconds = [], [], [], 0.0
    for i, state in enumerate(held_out.states):
        def draw(n, state=state, i=i):
            if spec[0] == "ring":
                return sim.ring_proposer(state[None], n, rng)[0], np.zeros(n)
            out = proposer.propose(models["general"], models["fine_tuned"], perception.conditions(state[None])[0],
                                   n, "joint", seed + i)
            return out.targets, out.scores
        start = time.perf_counter()
        answer = answer_with_map(draw, perception.grid(state), state, settings.samples_per_state,
                                 settings.map_check, settings.oversample, settings.ring_search if spec[0] != "ring"
                                 else 0, seed + i)
        seconds += time.perf_counter() - start
        answers.append(answer.targets)
        drawn.append(answer.drawn)
        valid.append(answer.valid)
    return answers, drawn, valid, 1e3 * seconds / max(len(held_out), 1)


def evaluate_checked(name: str, spec, models, held_out, perception, settings, seed: int) -> dict:
    """Validity (PyBullet) of the answers a robot gets with its map, and what the check cost."""
    answers, drawn, valid, ms = checked_answers(spec, models, held_out, perception, settings,
                                                stream(seed, "sampling"))
    k = settings.samples_per_state
    padded = np.full((len(held_out), k, 2), np.nan)
    for i, a in enumerate(answers):
        padded[i, :len(a)] = a
    ok = check_proposals(held_out, np.nan_to_num(padded, nan=-1e3)) & np.isfinite(padded[..., 0])
    returned = np.array([len(a) for a in answers])
    first = np.where(ok.any(axis=1), ok.argmax(axis=1) + 1, k + 1)
    return {"n_states": len(held_out), "samples_per_state": k, "cap": k + 1,
            "validity": float(ok.sum() / max(returned.sum(), 1)), "success": float(ok.any(axis=1).mean()),
            "samples_to_first_valid": float(first.mean()), "answered": float((returned > 0).mean()),
            "proposals_returned": float(returned.mean()),
            "candidates_per_valid": float(np.sum(drawn) / max(np.sum(valid), 1)), "ms_per_query": ms}


def single_query_ms(fn, states: np.ndarray, k: int) -> float:
    """Latency of one request (one state), what a robot waits for; the harness time is batched."""
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for s in states:
        fn(s[None], k, rng)
    return 1e3 * (time.perf_counter() - start) / max(len(states), 1)


def evaluate_configurations(configs: dict, models: dict, held_out, settings: NavigationSettings,
                            seed: int) -> list[dict]:
    rows = []
    perception = Perception(held_out, spec_of(models["general"]), settings.map_kind, settings.map_resolution,
                            settings.map_check)
    for name, spec in configs.items():
        if name in CHECKED:
            report = evaluate_checked(name, spec, models, held_out, perception, settings, seed)
            rows.append({"domain": DOMAIN, "seed": seed, "configuration": name, **report})
            if settings.progress:
                print(f"seed {seed} {name}: validity {report['validity']:.3f}", flush=True)
            continue
        record: dict = {}
        fn = propose_fn(spec, models, stream(seed, "sampling"), perception, record, name != "proposer_no_map")
        report = sim.evaluate_proposer(fn, held_out, settings.samples_per_state, seed=seed)
        diagnostics = {k: v for k, v in record.items() if k != "samples"}  # before the latency calls
        report["validity_without_clutter"] = float(check_proposals(held_out, record["samples"], False).mean())
        report["ms_single_query"] = single_query_ms(fn, held_out.states[:settings.latency_states],
                                                    settings.samples_per_state)
        rows.append({"domain": DOMAIN, "seed": seed, "configuration": name, **report, **diagnostics})
        if settings.progress:
            print(f"seed {seed} {name}: validity {report['validity']:.3f}", flush=True)
    return rows


def plot_proposals(configs: dict, models: dict, held_out, settings: NavigationSettings, seed: int) -> dict:
    """For the plotted states: each configuration's proposals [n, k, 2] and validity [n, k]."""
    out = {}
    perception = Perception(held_out, spec_of(models["general"]), settings.map_kind, settings.map_resolution,
                            settings.map_check)
    for name, spec in configs.items():
        if name in CHECKED:
            continue
        fn = propose_fn(spec, models, stream(seed, "plot_sampling"), perception, with_map=name != "proposer_no_map")
        proposals = fn(held_out.states, settings.plot_samples, np.random.default_rng(seed))
        out[name] = (proposals, check_proposals(held_out, proposals))
    return out


def check_proposals(held_out, proposals: np.ndarray, clutter: bool = True) -> np.ndarray:
    """Validity [n, k], optionally with the clutter taken out of each scene.

    Without clutter only the house and the task's objects remain: what a state-only proposer can
    know about. Its gap to the full check is the cost of the chairs it cannot see.
    """
    valid = np.zeros(proposals.shape[:2], dtype=bool)
    with sim.World() as world:
        for i in range(len(held_out)):
            scene = sim.generate_scene(int(held_out.seed[i]), int(held_out.task_index[i]))
            if not clutter:
                scene = replace(scene, obstacles=np.zeros((0, 5)))
            step = scene.steps[int(held_out.step[i])]
            world.load(scene)
            world.set_step(step)
            valid[i] = world.check_targets(step.object_index, proposals[i])
    return valid


# ---- the study -------------------------------------------------------------------------------------
TABLE_COLUMNS = ["configuration", *METRICS, "fallback_rate", "general_agreement", "log_overlap", "ess_fraction"]


def run_navigation_study(output_dir, settings: NavigationSettings | None = None) -> dict:
    """Train, evaluate every configuration for every seed, write results.json, results.md and plots.

    Results are rewritten after each seed, so a run cut short keeps the seeds it finished.
    """
    from . import plots

    settings = settings or NavigationSettings()
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    start = time.time()
    general, general_points = given_prior(settings)
    if general is not None:
        settings = replace(settings, general_tasks=0)  # no general data to make: the prior is given
    general_data, ball_train, ball_test = load_datasets(settings)
    general_points = general_points or len(general_data)
    held_out = sim.held_out_states(ball_test).head(settings.num_states)
    data_info = {"general_points": general_points, "ball_train_points": len(ball_train),
                 "ball_test_points": len(ball_test), "ball_test_states": len(sim.held_out_states(ball_test)),
                 "evaluated_states": len(held_out)}
    configs = {name: spec for name, spec in study_configurations().items() if name in settings.configurations}
    needed = tuple({key for _, keys, _ in configs.values() for key in keys})
    rows, train_seconds = [], {}
    for seed in settings.seeds:
        t0 = time.time()
        models = train_navigation_models(general_data, ball_train, settings.recipe, seed, needed, settings.progress,
                                         general=general)
        train_seconds[seed] = round(time.time() - t0, 1)
        rows += evaluate_configurations(configs, models, held_out, settings, seed)
        if seed == settings.seeds[0]:
            save_navigation_models(models, output / "models")
            shown = held_out.head(settings.plot_states)
            draw_navigation_scenes(shown, plot_proposals(configs, models, shown, settings, seed), output)
            plots.loss_curves({n: m.metadata["training"][-1]["losses"] for n, m in models.items()},
                              output / "navigation_loss.png")
        result = {"study": DOMAIN, "settings": asdict(settings), "data": data_info, "rows": rows,
                  "summary": summarize(rows, keys=METRICS), "train_seconds": train_seconds,
                  "seconds": round(time.time() - start, 1)}
        write_results(output, result)
    return result


def given_prior(settings: NavigationSettings):
    """(the prior of `settings.general_model`, the rows it was trained on), or (None, 0) when the study trains one.

    The prior must see the map as the study's recipe does: another patch would make every condition wrong.
    """
    if not settings.general_model:
        return None, 0
    from ..diffusion.checkpoint import load_checkpoint

    general = load_checkpoint(settings.general_model)
    wanted, has = dict(settings.recipe.perception or {}), general.metadata.get("perception") or {}
    if has != wanted:
        raise ValueError(f"--general-model {settings.general_model} sees the map as {has}, the study's recipe as "
                         f"{wanted}: make it with `dualdiff navigate-data` and `dualdiff train --data` of that recipe")
    shards = general.metadata.get("data_shards") or {}
    rows = shards.get("rows") or general.metadata["training"][-1].get("num_examples", 0)
    return general, rows


def write_results(output: Path, result: dict) -> None:
    """results.json (every row), results.md (mean ± sd over the seeds so far) and the validity bars."""
    (output / "results.json").write_text(json.dumps(result, indent=1, default=str))
    data, settings = result["data"], result["settings"]
    seeds = sorted({r["seed"] for r in result["rows"]})
    header = (f"# navigate_to (ball held out)\n\n{data['evaluated_states']} held-out ball states, "
              f"{settings['samples_per_state']} proposals each, seeds {seeds}; general {data['general_points']} "
              f"points, ball train {data['ball_train_points']} points.\n\n")
    (output / "results.md").write_text(header + markdown_table(result["summary"], TABLE_COLUMNS))
    validity_bars(result["summary"], output / "navigation_validity.png")


# ---- pictures --------------------------------------------------------------------------------------
def draw_navigation_scenes(held_out, proposals: dict, output: Path, zoom: float = 7.0) -> list[Path]:
    """One figure per state (thesis Figs 4.4/4.5/4.7): the scene near the ball, each configuration's proposals."""
    from matplotlib.figure import Figure  # no pyplot: no global figure state

    paths = []
    names = list(proposals)
    cols = 3
    rows = int(np.ceil((len(names) + 1) / cols))
    for i in range(len(held_out)):
        scene = sim.generate_scene(int(held_out.seed[i]), int(held_out.task_index[i]))
        step = scene.steps[int(held_out.step[i])]
        fig = Figure(figsize=(3.0 * cols, 3.0 * rows))
        axes = fig.subplots(rows, cols, squeeze=False)
        panels = [("recorded valid targets", held_out.reference[i], None), *(
            (n, proposals[n][0][i], proposals[n][1][i]) for n in names)]
        for ax, (name, pts, ok) in zip(axes.flat, panels):
            title = name if ok is None else f"{name}: {ok.mean():.2f} valid"
            sim.draw_scene(scene, object_index=step.object_index, proposals=pts, valid=ok,
                           robot=held_out.states[i, 6:9], absent=step.absent, title=title, ax=ax)
            x, y = held_out.states[i, :2]
            ax.set_xlim(x - zoom, x + zoom)
            ax.set_ylim(y - zoom, y + zoom)
            ax.tick_params(labelsize=6)
            ax.legend(fontsize=5, loc="upper right")
        for ax in list(axes.flat)[len(panels):]:
            ax.axis("off")
        fig.suptitle(f"held-out ball state: scene seed {scene.seed}, task {scene.task_index}, step "
                     f"{int(held_out.step[i])}", fontsize=9)
        fig.tight_layout()
        paths.append(output / f"navigation_scene_{i}.png")
        fig.savefig(paths[-1], dpi=72)
    return paths


def validity_bars(summary: list[dict], path: Path) -> None:
    """Validity and samples until the first valid proposal per configuration, mean ± sd over seeds."""
    from matplotlib.figure import Figure

    names = [e["configuration"] for e in summary]
    fig = Figure(figsize=(9, 3.4))
    axes = fig.subplots(1, 2)
    for ax, key, label in ((axes[0], "validity", "validity rate"),
                           (axes[1], "samples_to_first_valid", "samples until first valid")):
        mean = [e[key][0] for e in summary]
        sd = [e[key][1] for e in summary]
        colors = ["0.6" if n.startswith("ring") else "tab:blue" for n in names]
        ax.bar(range(len(names)), mean, yerr=sd, color=colors, capsize=3)
        ax.set_xticks(range(len(names)), names, rotation=40, ha="right", fontsize=8)
        ax.set_ylabel(label)
    axes[0].set_ylim(0, 1)
    fig.suptitle("navigate-to-ball, held-out states (mean ± sd over seeds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


# ---- command line ----------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of `dualdiff navigate` (also `python -m dualdiff_ros.evaluation.navigation`)."""
    parser.add_argument("--output", default="runs/navigation", help="folder for results.json, results.md, plots")
    parser.add_argument("--data-dir", default=None,
                        help="cache of generated datasets (.npz); default: <output>/data")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="training seeds (full: 0 1 2)")
    parser.add_argument("--quick", action="store_true", help="tiny data and models: a smoke run in well under a minute")
    parser.add_argument("--num-states", type=int, default=None, help="held-out ball states evaluated (full: 300)")
    parser.add_argument("--samples-per-state", type=int, default=None, help="proposals per state (full: 16)")
    parser.add_argument("--general-tasks", type=int, default=None, help="general-data tasks (full: 5000)")
    parser.add_argument("--general-epochs", type=int, default=None, help="general prior epochs (full: 30)")
    parser.add_argument("--general-model", default=None, metavar="CHECKPOINT",
                        help="evaluate this general prior (e.g. the fleet-scale one of `dualdiff train --data`) "
                             "instead of training one per seed; the ball models are still trained per seed")
    parser.add_argument("--progress", action="store_true", help="progress bars and per-configuration lines")
    parser.add_argument("--configs", nargs="+", choices=CONFIGURATIONS, default=None,
                        help="rows to run (default: all); only the models they need are trained")
    parser.add_argument("--patch-cells", type=int, default=None,
                        help="map patch cells per side in the condition (full: 16); 0 = the state alone, no map")
    parser.add_argument("--patch-half-extent", type=float, default=None, help="map patch half side, m (full: 9)")
    parser.add_argument("--patch-frame", choices=("world", "object"), default=None,
                        help="map patch axes: the map's (default) or turned with the object")
    parser.add_argument("--patch-features", choices=("occupancy", "clearance"), default=None,
                        help="map patch values: clearance to the nearest obstacle (default) or occupancy")
    parser.add_argument("--map-dropout", type=float, default=None,
                        help="share of general training rows that see no map (default 0.5)")
    parser.add_argument("--map", choices=MAP_KINDS, default=None, dest="map_kind",
                        help="the map each state comes with: the simulator's occupancy grid (default) or that grid as "
                             "nav2 publishes its costmap (inflation radius = robot radius + 0.55 m)")
    parser.add_argument("--map-resolution", type=float, default=None, help="metres per map cell (default 0.05)")
    parser.add_argument("--oversample", type=float, default=None,
                        help="candidates drawn per answer wanted when a map is checked (default 2)")
    return parser


def settings_from_args(args) -> NavigationSettings:
    settings = NavigationSettings.quick() if args.quick else NavigationSettings()
    changes = {"data_dir": args.data_dir or str(Path(args.output) / "data"), "progress": args.progress}
    for key in ("seeds", "num_states", "samples_per_state", "general_tasks"):
        value = getattr(args, key)
        if value is not None:
            changes[key] = tuple(value) if key == "seeds" else value
    if args.configs is not None:
        changes["configurations"] = tuple(args.configs)
    recipe_ = settings.recipe
    if args.general_epochs is not None:
        recipe_ = replace(recipe_, general=replace(recipe_.general, epochs=args.general_epochs))
    if args.patch_cells == 0:
        recipe_ = replace(recipe_, perception={})
    elif any(v is not None for v in (args.patch_cells, args.patch_half_extent, args.patch_frame,
                                     args.patch_features)):
        patch = PatchSpec.from_dict(recipe_.perception or PatchSpec().to_dict())
        patch = replace(patch, **{k: v for k, v in (("cells", args.patch_cells), ("frame", args.patch_frame),
                                                     ("half_extent", args.patch_half_extent),
                                                     ("features", args.patch_features)) if v is not None})
        recipe_ = replace(recipe_, perception=patch.to_dict())
    if args.map_dropout is not None:
        recipe_ = replace(recipe_, map_dropout=args.map_dropout)
    if args.oversample is not None:
        changes["oversample"] = args.oversample
    for key in ("map_kind", "map_resolution"):
        if getattr(args, key, None) is not None:
            changes[key] = getattr(args, key)
    if args.general_model is not None:
        changes["general_model"] = args.general_model
    return replace(settings, recipe=recipe_, **changes)


def run_from_args(args) -> int:
    """`dualdiff navigate`: torch threads are `dualdiff --threads` (default 1: the timings assume it)."""
    result = run_navigation_study(args.output, settings_from_args(args))
    print(Path(args.output, "results.md").read_text())
    print(f"wrote {args.output}/results.json, results.md and navigation_*.png in {result['seconds']} s")
    return 0


def main(argv=None) -> int:
    from ..runtime import limit_torch_threads

    limit_torch_threads()
    return run_from_args(add_arguments(argparse.ArgumentParser(description=__doc__)).parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
