"""The placement service's policy, without ROS: settings, request checks, models, answers.

The placement node and the simulator node are glue around this module: they declare
`SAMPLING_SETTINGS` (and the node its `SERVICE_SETTINGS`) as ROS parameters, turn a request
message into `PlacementService.answer(...)` and an `Answer` (or a `Refused`) into a reply.
Everything a hostile or careless client can send is checked here, in this order:
string sizes first (nothing long is ever echoed), then names, mode, state size and
finiteness, the state's plausible range, the sample count and the compute budget. The
contract of the reply lives in docs/ros_interfaces.md ("Contract").
"""
from __future__ import annotations

import math
import secrets
import threading
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from . import navigate_to
from .diffusion.checkpoint import CheckpointError, load_checkpoint
from .diffusion.composition import METHODS as COMPOSITION_METHODS
from .diffusion.composition import CompositionConfig
from .diffusion.model import DiffusionModel
from .diffusion.proposer import MODES, FallbackPolicy, Proposer, default_sampler
from .diffusion.sampling import METHODS as SAMPLER_METHODS
from .diffusion.sampling import SamplerConfig
from .domains.homes import home_frame
from .domains.spec import BUILTIN_SPECS, NAME, DomainSpec
from .learning import home_check, places
from .learning.in_context import (
    MAX_CONTEXT_POINTS,
    SUMMARY_SIZE,
    context_conditions,
    context_points,
    context_size,
    model_context_kind,
    pseudo_used,
    set_block,
    with_pseudo_observations,
)
from .learning.in_context import summary as context_summary
from .limits import DEFAULT_MARGIN, PlausibleRange
from .maps import OccupancyMap, parse_footprint
from .model_store import ModelStore, check_task
from .spec_training import answers_in_world, known_builtin, spec_in_metadata, state_meaning

# Result codes, as in ProposePlacements.srv (test_serving checks they agree).
RESULT_OK, RESULT_INVALID_REQUEST, RESULT_MODEL_UNAVAILABLE, RESULT_INTERNAL_ERROR = 0, 1, 2, 3
RESULT_NO_VALID_PROPOSAL = 4
HOME_AWARE = "home_aware"           # the mode (and model slot) of the home-aware prior
SERVICE_MODES = (*MODES, HOME_AWARE)
MAX_NAME_BYTES = 64   # domain, task and mode are short names; anything longer is refused unread
QUOTE_CHARS = 32      # at most this much of an untrusted string goes into a message or a log line
TRAIN_HINT = "create it with `dualdiff train` (see `dualdiff train --help`)"


def quote(text: str) -> str:
    """A short, printable rendering of an untrusted string for messages and logs."""
    text = str(text)
    shown = repr(text[:QUOTE_CHARS])
    return shown + (f"... ({len(text.encode('utf-8', 'replace'))} bytes)" if len(text) > QUOTE_CHARS else "")


@dataclass(frozen=True)
class Setting:
    """One tunable of the service: a ROS parameter in the nodes, a dict entry here."""

    name: str
    default: object
    description: str
    int_range: tuple[int, int] | None = None
    float_range: tuple[float, float] | None = None
    choices: tuple | None = None
    read_only: bool = False


_SERVED = default_sampler()
SAMPLING_SETTINGS = (
    Setting("composition.method", "sum", "How the two experts are composed (docs/composition.md).",
            choices=COMPOSITION_METHODS),
    Setting("composition.general_min_t_fraction", -1.0,
            "Below this fraction of the noise schedule the specialized model refines alone; -1 = the value "
            "the general prior's recipe records (docs/RESULTS.md, section 1).", float_range=(-1.0, 1.0)),
    Setting("composition.weight_general", 1.0,
            "Exponent of the general prior in the product (methods weighted and smc; sum needs 1).",
            float_range=(0.0, 10.0)),
    Setting("composition.weight_specialized", 1.0,
            "Exponent of the specialized model (methods weighted and smc; sum needs 1).", float_range=(0.0, 10.0)),
    Setting("composition.clip", 0.0,
            "Bound on joint sampling's predicted clean target in the general data's normalized units (1 = the "
            "general prior's training range); 0 = only the sampler's safety net (10). It pins disagreeing "
            "experts inside the prior's range, where the fallback check misses them (docs/RESULTS.md, "
            "section 2): use it only where the robot's data lies inside the general data's range.",
            float_range=(0.0, 100.0)),
    Setting("composition.langevin_steps", 0, "Langevin corrector steps per noise level (0 = none).",
            int_range=(0, 100)),
    Setting("composition.resample_threshold", 0.5, "SMC resamples when ESS/K falls below this.",
            float_range=(0.01, 1.0)),
    Setting("sampler.method", _SERVED.method, "Reverse process: ddpm (every level), ddim (strided ancestral "
            "steps with eta = 1) or dpm_solver (SDE-DPM-Solver++ 2M).", choices=SAMPLER_METHODS),
    Setting("sampler.steps", _SERVED.steps,
            "ddim / dpm_solver: at most this many steps; 0, or at least the model's levels, = every level.",
            int_range=(0, 10000)),
    Setting("sampler.fine_steps", _SERVED.fine_steps,
            "ddim / dpm_solver: of sampler.steps, take the last this many noise levels one by one and stride "
            "over the rest (0 = evenly spaced steps; must be below sampler.steps).", int_range=(0, 10000)),
    Setting("sampler.eta", _SERVED.eta, "DDIM stochasticity (0 = deterministic).", float_range=(0.0, 1.0)),
    Setting("sampler.guidance", _SERVED.guidance,
            "Classifier-free guidance on the map (navigate_to models trained with map dropout): 1 = the "
            "conditional model as trained, above 1 leans harder on the map, 0 ignores it; other domains are "
            "unaffected (docs/RESULTS.md, section 4).", float_range=(0.0, 20.0)),
    Setting("fallback.enabled", True, "Fall back to one expert when the two do not overlap."),
    Setting("fallback.min_agreement", 0.5,
            "Least fraction of joint proposals the general prior must find typical; else fall back.",
            float_range=(0.0, 1.0)),
    Setting("fallback.mode", "specialized", "The expert a failed joint request falls back to.",
            choices=("specialized", "general")),
)
SERVICE_SETTINGS = (
    Setting("max_samples", 256, "Most proposals one request may ask for.", int_range=(1, 4096)),
    Setting("fallback_to_general", True,
            "Answer a joint request from the general prior while no specialized model exists."),
    Setting("limits.state_margin", DEFAULT_MARGIN,
            "A state is refused when a number lies further outside the general data's range than this many "
            "spans of that range (the range is in the model's metadata).", float_range=(0.0, 1e6)),
    Setting("map.semantics", "auto", "navigate_to with a map: what the map's values mean. occupancy: an "
            "occupancy grid (map_server's /map; 0..100, -1 unknown), the footprint must avoid cells at or above "
            "map.occupied_threshold. costmap: a nav2 costmap as published (100 lethal, 99 inscribed, 1..98 "
            "inflation, -1 unknown), already inflated by the robot: the cost under the robot's centre must stay "
            "below map.max_cost and the footprint avoid lethal cells. auto: a costmap when nearly every known "
            "cell next to a lethal one holds 99 (nav2's inscribed ring), else occupancy; the reply's message says "
            "which (docs/navigation.md).", choices=("auto", "occupancy", "costmap")),
    Setting("map.occupied_threshold", 50, "navigate_to with an occupancy grid: a cell at or above this value is "
            "an obstacle.", int_range=(1, 100)),
    Setting("map.max_cost", 99, "navigate_to with a costmap: a base pose is valid while the cost under the robot's "
            "centre is below this (99 = nav2's inscribed 253, the threshold of its RemoveInCollisionGoals; lower "
            "keeps further from obstacles).", int_range=(1, 100)),
    Setting("map.max_cells", 40_000_000, "navigate_to: maps with more cells (width x height) are refused "
            "(RESULT_INVALID_REQUEST); only the window around the object is read, so the cost of a request does "
            "not grow with the map, but the message itself does (40M: a 316 m square at 0.05 m).",
            int_range=(1, 2_000_000_000)),
    Setting("map.unknown_is_occupied", True, "navigate_to with a map: unknown cells (-1) and cells off the map "
            "count as obstacles."),
    Setting("map.inflation", 0.0, "navigate_to with a map: metres added around the robot's footprint "
            "(robot.radius or robot.footprint) for the check against obstacles (a margin for localisation error; "
            "the simulator's own maps need none: docs/RESULTS.md, section 4; a costmap is inflated already).",
            float_range=(0.0, 5.0)),
    Setting("map.oversample", 2.0, "navigate_to with a map: candidates drawn per proposal asked for, in one "
            "batch, before the map check keeps the best valid ones.", float_range=(1.0, 4.0)),
    Setting("map.ring_search", 4, "navigate_to with a map: when fewer sampled candidates pass than were asked "
            "for, check this many times num_samples candidates of a uniform ring around the object too and "
            "return the valid ones after the model's (0 = off).", int_range=(0, 64)),
    Setting("distinct.oversample", 4.0, "Requests with min_separation > 0: candidates drawn per proposal asked "
            "for, of which the best-scored ones at least min_separation apart are returned.",
            float_range=(1.0, 16.0)),
    Setting("home_aware.enabled", True, "Joint requests for a home with few observations are answered from "
            "the home-aware prior (when one is loaded: `dualdiff train --home-aware`), which reads the home's "
            "observations from its condition: no training needed (docs/RESULTS.md, section 8)."),
    Setting("home_aware.max_observations", 128, "The home-aware prior answers joint requests while the home has "
            "1 to this many observations (or more, until a specialist is trained); then the fine-tuned specialist "
            "composed with the general prior does. 128 is the largest context the prior was trained with, and at "
            "128 it still answered better than the composed specialist (docs/RESULTS.md, section 8).",
            int_range=(0, 1_000_000)),
    Setting("home_aware.guidance", 1.5, "Classifier-free guidance on the home's observations while the home has "
            "fewer than home_aware.many_observations: 1 = the plain posterior predictive (widest), above 1 "
            "sharper (more accurate, fewer looks, less coverage). 1.5 was chosen on validation homes for the "
            "kernel-reading prior at 1 to 128 observations (docs/RESULTS.md, section 8).", float_range=(0.0, 20.0)),
    Setting("home_aware.many_observations", 32, "From this many observations of the home on, "
            "home_aware.guidance_many applies instead.", int_range=(1, 1_000_000)),
    Setting("home_aware.guidance_many", 1.5, "Classifier-free guidance on the home's observations once the home "
            "has home_aware.many_observations or more (the same 1.5 measured best there too; a summary-reading "
            "prior was best at 1.1).", float_range=(0.0, 20.0)),
    Setting("home_aware.places", True, "A set-reading home-aware prior reads each place of the home on its own: "
            "the observations are split where a gap separates them (two shelves, a tray and the sink; "
            "learning/places.py) and each place's share of the proposals is drawn from the prior given that "
            "place's observations only, so nothing is proposed in the gap between them (docs/RESULTS.md, "
            "section 8). False = the prior reads every observation at once."),
    Setting("home_aware.pseudo_observations", 8.0, "The home-aware prior is told its home has this many "
            "observations more than it has (same extent), at most as many more as it has: a tempered posterior "
            "that keeps proposals closer to where things were seen while observations are few and fades as "
            "they grow; 0 = the plain posterior (docs/RESULTS.md, section 8).", float_range=(0.0, 128.0)),
    Setting("check.enabled", True, "Before a joint request is answered from the home-aware prior, every way the "
            "service could answer (home-aware prior, general + specialist, specialist, general) is scored on how well "
            "its proposals explain the home's own observations, and the best is served; the reply's mode_used and "
            "message say which and why (learning/home_check.py; checked once per change of the home or a model)."),
    Setting("check.min_observations", 4, "The check runs from this many observations of the home on (below, the "
            "home-aware prior answers unchecked: a handful of points cannot tell the ways apart).",
            int_range=(1, 1_000_000)),
    Setting("check.margin", 0.0, "Nats per observation by which another way must explain the home's observations "
            "better than the home-aware prior to be served instead; 0 = the best-scoring way (every way is scored on "
            "the observations it has seen; 0 was chosen on validation homes for the kernel-reading prior: "
            "docs/notes/2026-12-04-kernel-readout.md).", float_range=(0.0, 100.0)),
    Setting("robot.radius", navigate_to.ROBOT_RADIUS, "navigate_to: radius of the robot's footprint disc, "
            "metres (default: the simulator's robot).", float_range=(0.01, 10.0)),
    Setting("robot.footprint", "", "navigate_to: the robot's outline as nav2's footprint parameter, a polygon "
            "\"[[x, y], [x, y], ...]\" in metres in the robot's frame (x forward, towards the object); empty = the "
            "disc of robot.radius."),
    Setting("robot.reach", navigate_to.ROBOT_REACH, "navigate_to: base centre to gripper tip, metres; a target "
            "must reach the object's footprint within it (default: the simulator's robot).", float_range=(0.01, 20.0)),
    Setting("budget.max_sample_passes", 100_000,
            "Most network passes x proposals one request may cost (sampler steps, both experts, Langevin "
            "steps, the agreement check and a fallback counted): a larger request is refused, so it cannot "
            "hold up everyone behind it (docs/RESULTS.md, section 7).", int_range=(1000, 10**10)),
)
SETTINGS = SAMPLING_SETTINGS + SERVICE_SETTINGS


def defaults(settings=SETTINGS) -> dict:
    return {s.name: s.default for s in settings}


def proposer_from(values: dict) -> Proposer:
    """A Proposer from SAMPLING_SETTINGS values; ValueError naming a bad value or combination."""
    for s in SAMPLING_SETTINGS:
        if s.choices and values[s.name] not in s.choices:
            raise ValueError(f"{s.name}={values[s.name]!r}: use one of {', '.join(map(repr, s.choices))}")
    sampler = SamplerConfig(method=values["sampler.method"], steps=int(values["sampler.steps"]),
                            fine_steps=int(values["sampler.fine_steps"]), eta=float(values["sampler.eta"]),
                            guidance=float(values["sampler.guidance"]))
    joint_sampler = replace(sampler, clip=float(values["composition.clip"]) or sampler.clip)
    fraction = float(values["composition.general_min_t_fraction"])
    composition = CompositionConfig(
        method=values["composition.method"], weight_general=float(values["composition.weight_general"]),
        weight_specialized=float(values["composition.weight_specialized"]), sampler=joint_sampler,
        resample_threshold=float(values["composition.resample_threshold"]),
        langevin_steps=int(values["composition.langevin_steps"]),
        general_min_t_fraction=None if fraction < 0 else fraction)  # parameters cannot be None: -1 = unset
    policy = FallbackPolicy(enabled=bool(values["fallback.enabled"]),
                            min_agreement=float(values["fallback.min_agreement"]),
                            fallback_mode=values["fallback.mode"])
    composition.validate(num_train_steps=10**9)  # steps against the model's own schedule: per request
    policy.validate()
    return Proposer(composition=composition, sampler=sampler, policy=policy)


class Refused(Exception):
    """A request answered with `result` and a message instead of proposals."""

    def __init__(self, result: int, message: str):
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class HomeContext:
    """What the service knows of one home: its observation count, summary and points (home frame)."""

    count: int = 0
    summary: np.ndarray = field(default_factory=lambda: np.zeros(SUMMARY_SIZE))
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    version: int = 0   # changes with every update: the answer check is redone for a new context

    @cached_property
    def place_labels(self) -> np.ndarray | None:
        """Which place of the home each point is in (learning/places.py; None: one place), once per context."""
        return places.several(self.points)


class HomeContexts:
    """What the service knows of each home's observations: (domain, task) -> HomeContext.

    Fed by the specialized node (every acknowledged or forgotten observation updates it), read by
    the home-aware prior's answers and the answer check; the summary is learning.in_context.summary
    and the points the observations (at most MAX_CONTEXT_POINTS, evenly spread) in the home's frame.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._contexts: dict[tuple[str, str], HomeContext] = {}
        self._updates = 0

    def put(self, domain: str, task: str, count: int, summary, points=None) -> None:
        summary = np.asarray(summary, dtype=np.float64).reshape(-1)
        if summary.shape != (SUMMARY_SIZE,) or not np.isfinite(summary).all() or count < 0:
            raise ValueError(f"a home context is {SUMMARY_SIZE} finite numbers and a count >= 0 "
                             f"(got {summary.size} numbers, count {count})")
        points = np.zeros((0, 3)) if points is None else np.asarray(points, dtype=np.float64).reshape(-1, 3)
        if not np.isfinite(points).all() or len(points) > MAX_CONTEXT_POINTS or len(points) > count:
            raise ValueError(f"a home context's points must be finite, at most {MAX_CONTEXT_POINTS} and at most "
                             f"its count {count} (got {len(points)})")
        with self._lock:
            self._updates += 1
            self._contexts[(domain, task)] = HomeContext(int(count), summary, points, self._updates)

    def put_observations(self, domain: str, task: str, conditions, targets) -> None:
        local = home_frame(domain, np.asarray(conditions).reshape(-1, 3), np.asarray(targets).reshape(-1, 3))
        self.put(domain, task, len(local), context_summary(local), context_points(local))

    def get(self, domain: str, task: str) -> HomeContext:
        with self._lock:
            return self._contexts.get((domain, task), HomeContext())


class ModelSlots:
    """Loaded models by (role, domain, task), each with its domain's spec. A request takes its pair in one locked read.

    The spec comes from the checkpoint's header (spec_training.spec_in_metadata: a built-in
    domain's older files get the built-in spec), so a domain is served as soon as a model of it is
    loaded: no list of domains to edit.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._models: dict[tuple[str, str, str], DiffusionModel] = {}
        self._specs: dict[tuple[str, str, str], DomainSpec] = {}
        self._refused: dict[tuple[str, str, str], str] = {}  # why the last file offered for a slot was refused

    def put(self, key: tuple[str, str, str], model: DiffusionModel) -> None:
        spec = spec_in_metadata(key[1], model.metadata, f"{key[0]} model {model.metadata.get('version', '')}")
        with self._lock:
            self._models[key] = model
            if spec is not None:
                self._specs[key] = spec
            else:
                self._specs.pop(key, None)
            self._refused.pop(key, None)

    def spec(self, domain: str) -> DomainSpec | None:
        """The spec of `domain`'s loaded general prior, else of any loaded model of it, else None."""
        with self._lock:
            general = self._specs.get(("general", domain, ""))
            return general or next((s for k, s in self._specs.items() if k[1] == domain), None)

    def domains(self) -> set[str]:
        with self._lock:
            return {key[1] for key in self._specs}

    def refuse(self, key: tuple[str, str, str], reason: str) -> None:
        with self._lock:
            self._refused[key] = reason

    def refusal(self, key: tuple[str, str, str]) -> str:
        with self._lock:
            return self._refused.get(key, "")

    def get(self, key: tuple[str, str, str]) -> DiffusionModel | None:
        with self._lock:
            return self._models.get(key)

    def pair(self, domain: str, task: str):
        with self._lock:
            return self._models.get(("general", domain, "")), self._models.get(("specialized", domain, task))

    def version(self, key) -> str:
        with self._lock:
            model = self._models.get(key)
        return model.metadata.get("version", "") if model is not None else ""

    def clear(self) -> None:
        """Release every model (a lifecycle cleanup); a running request keeps the pair it took."""
        with self._lock:
            self._models.clear()
            self._specs.clear()
            self._refused.clear()

    def versions(self) -> dict[str, str]:
        with self._lock:
            items = list(self._models.items())
        return {"/".join(k for k in key if k): m.metadata.get("version", "") for key, m in sorted(items)}


def not_active(node_name: str, state: str) -> str:
    """Why a lifecycle node in `state` refuses work, and the transition that fixes it."""
    steps = "activate" if state == "inactive" else "configure, then activate"
    return (f"{node_name} is {state} (lifecycle), not serving: {steps} it "
            f"(ros2 lifecycle set {node_name} {steps.split(', then ')[-1] if state == 'inactive' else 'configure'}; "
            "the launch file and dualdiff_bringup do this unless autostart is off)")


def load_for_slot(role: str, domain: str, task: str, path, model_dir) -> DiffusionModel:
    """Load and verify a checkpoint for one slot; CheckpointError says why it cannot go there.

    An announcement on /dualdiff/model_info can come from any node on the network, so the file
    must lie under this service's model_dir and say (in its verified header) that it is a
    model of this role, domain and task, with the sizes of the domain's spec (the header's own,
    or the built-in spec of an older file of a built-in domain).
    """
    root = Path(model_dir).expanduser().resolve()
    path = Path(path).expanduser()
    if not path.resolve().is_relative_to(root):
        raise CheckpointError(f"{quote(str(path))} is not under model_dir {root}: announcements of files "
                              "elsewhere are refused (a forged or misconfigured announcement)")
    model = load_checkpoint(path)
    meta = model.metadata
    want = {"role": role, "domain": domain}
    if role == "specialized":
        want["task"] = task
    wrong = {k: meta.get(k, "") for k, v in want.items() if meta.get(k, "") != v}
    if wrong:
        raise CheckpointError(f"{path} is a model of {wrong}, not of {want}: refused for this slot")
    domain_spec = spec_in_metadata(domain, meta, str(path))
    if domain_spec is None:
        raise CheckpointError(f"{path} carries no domain spec for {domain} (another domain's, or none: a file "
                              f"from before specs of a domain that is not built-in): retrain it with `dualdiff "
                              f"train --spec SPEC --data ...`, which stores the spec in the checkpoint")
    state_size, target_size = domain_spec.state_dim, domain_spec.target_dim
    spec = navigate_to.spec_of(model)  # the map patch, for a model that sees the map (navigate-to's)
    context = context_size(model_context_kind(model)) if role == HOME_AWARE else 0
    condition_size = state_size + (spec.feature_dim if spec else 0) + context
    if (model.condition_dim, model.target_dim) != (condition_size, target_size):
        raise CheckpointError(f"{path} maps {model.condition_dim} numbers to {model.target_dim}, "
                              f"{domain} needs {condition_size} -> {target_size}")
    navigate_to.mark_map_guidance(model)
    return model


@dataclass
class Answer:
    proposals: np.ndarray          # [k, target_dim], the state's frame
    scores: np.ndarray             # [k], higher = more plausible
    mode_used: str
    message: str = ""
    diagnostics: dict = field(default_factory=dict)
    general_version: str = ""
    specialized_version: str = ""
    yaws: np.ndarray | None = None  # [k] heading of each pose (navigate_to: facing the object), else None
    candidates_drawn: int = 0
    candidates_valid: int = 0


@dataclass
class Request:
    """A request that passed the checks, with the model pair it took (fixed for the whole request)."""

    domain: str
    task: str
    mode: str
    state: np.ndarray
    num_samples: int
    min_separation: float
    general: DiffusionModel | None
    specialized: DiffusionModel | None
    spec: DomainSpec | None = None   # the domain's spec: sizes, frame, map check

    @property
    def map_state(self) -> np.ndarray:
        """The object's footprint as the map check reads it (navigate_to.footprint_state)."""
        return navigate_to.footprint_state(self.state, self.spec.map_object_index)


@dataclass
class Route:
    """The models that answer one request: the proposer's general / specialized pair, mode and condition.

    `condition` None = the state (with the map patch for navigate_to); `answered_as` is the reply's
    mode_used when it is not the proposer's (the home-aware prior).
    """

    general: DiffusionModel | None
    specialized: DiffusionModel | None
    mode: str
    proposer: Proposer
    condition: np.ndarray | None = None
    answered_as: str = ""
    notes: list = field(default_factory=list)
    # the home-aware prior read per place (home_aware.places): the home's points and their place labels
    places: tuple | None = None

    @property
    def model(self) -> DiffusionModel:
        return self.general if self.mode != "specialized" else self.specialized


@dataclass
class Drawn:
    targets: np.ndarray
    scores: np.ndarray
    result: object   # the proposer's last Proposals (mode_used, message, diagnostics)
    drawn: int
    valid: int


def map_check_from(values: dict) -> navigate_to.MapCheck:
    """The map check of these settings; ValueError naming a bad robot.footprint or map.semantics and the fix."""
    polygon = parse_footprint(values["robot.footprint"])
    footprint = None if polygon is None else tuple(map(tuple, polygon.tolist()))
    return navigate_to.MapCheck(robot_radius=float(values["robot.radius"]), reach=float(values["robot.reach"]),
                                occupied_threshold=int(values["map.occupied_threshold"]),
                                unknown_is_occupied=bool(values["map.unknown_is_occupied"]),
                                inflation=float(values["map.inflation"]), max_cost=int(values["map.max_cost"]),
                                footprint=footprint, semantics=str(values["map.semantics"]))


def check_map_size(width: int, height: int, values: dict) -> None:
    """Refuse a map of more than map.max_cells cells before anything reads it."""
    limit = int(values["map.max_cells"])
    if int(width) * int(height) > limit:
        raise Refused(RESULT_INVALID_REQUEST, f"the map has {int(width)} x {int(height)} = {int(width) * int(height)} "
                      f"cells, more than map.max_cells = {limit}: send the part of the map around the object (e.g. a "
                      "rolling-window costmap) or raise map.max_cells")


def request_map(grid: OccupancyMap, state: np.ndarray, values: dict) -> tuple[OccupancyMap, str]:
    """The request's map read as the settings say (or as detected), its size checked; (map, note for the reply)."""
    check_map_size(grid.width, grid.height, values)
    return map_check_from(values).resolve_semantics(grid, state)


class PlacementService:
    """Answers placement requests from the models in `slots` with the current settings."""

    def __init__(self, model_dir, values: dict | None = None):
        self.store = ModelStore(model_dir)
        self.slots = ModelSlots()
        self.contexts = HomeContexts()
        self._check_lock = threading.Lock()
        self._checks: dict = {}  # (domain, task) -> (what the verdict depends on, verdict)
        self.configure(values or defaults())

    def configure(self, values: dict) -> None:
        """New settings (all or none: ValueError names the bad one); a running request keeps its own."""
        proposer = proposer_from(values)
        map_check_from(values)  # a bad footprint or map setting is named now, not at the first request
        self._settings = (proposer, dict(values))

    @property
    def proposer(self) -> Proposer:
        return self._settings[0]

    def spec_for(self, domain: str) -> DomainSpec | None:
        """The spec `domain` is served with: its loaded models', a built-in's, or None (not served)."""
        spec = self.slots.spec(domain)
        if spec is None and domain in BUILTIN_SPECS:
            spec = known_builtin(domain)
        return spec

    def served(self) -> list[str]:
        """Every domain a request may name now: the built-in ones and those with a model loaded."""
        return sorted(set(BUILTIN_SPECS) | self.slots.domains())

    def answer(self, domain: str, task: str, mode: str, state, num_samples: int, seed: int = 0,
               grid: OccupancyMap | None = None, min_separation: float = 0.0) -> Answer:
        """Proposals for one request, best score first, or Refused naming the problem and the fix.

        In stages: 1. validate the request, 2. choose the answering models (the home-aware prior,
        checked against the home's observations, or the general / specialized pair), 3. check the
        cost, 4. draw (with a `grid`, for a domain whose spec has a map_check: a model that sees the map
        has it in its condition, `map.oversample` times the candidates are drawn and only those the map
        allows are kept), 5. post-process
        (`min_separation` > 0: the best-scored proposals at least that far apart), 6. assemble.
        """
        proposer, values = self._settings  # settings, like models, are fixed for the whole request
        # 1. validate
        request = self._validate(domain, task, mode, state, num_samples, min_separation, values)
        # 2. choose the answering models
        route = self._route(request, proposer, values)
        if grid is not None and request.spec.map_check is None:
            route.notes.append(f"the map was ignored: {request.domain} proposals are not checked against a map")
            grid = None
        if grid is not None:  # read as occupancy or costmap (maybe detected: the note says so)
            grid, note = request_map(grid, request.map_state, values)
            route.notes += [note] if note else []
        drawn_per_request = (navigate_to.candidates_for(request.num_samples, float(values["distinct.oversample"]))
                             if request.min_separation > 0 else request.num_samples)
        # 3. cost
        self._check_budget(route, grid, drawn_per_request, values)
        # 4. draw
        seed = seed or secrets.randbelow(2**31 - 1) + 1  # 0 = fresh randomness
        drawn = self._draw(route, request, grid, drawn_per_request, seed, values)
        # 5. post-process
        targets, scores = drawn.targets, drawn.scores
        if request.min_separation > 0:
            targets, scores = distinct(targets, scores, request.num_samples, request.min_separation)
            if len(targets) < request.num_samples:
                route.notes.append(f"only {len(targets)} of {request.num_samples} proposals are at least "
                                   f"{request.min_separation:g} apart (of {drawn_per_request} drawn)")
        if not (np.isfinite(targets).all() and np.isfinite(scores).all()):
            raise Refused(RESULT_INTERNAL_ERROR, f"the {drawn.result.mode_used} model gave non-finite proposals for "
                          "this state: its checkpoint is broken; retrain it (nothing was returned)")
        # 6. assemble
        return self._assemble(route, request, drawn, targets, scores)

    def _validate(self, domain, task, mode, state, num_samples, min_separation, values) -> "Request":
        domain, task, mode, spec = check_names(domain, task, mode, self.spec_for, self.served)
        state = check_state(spec, state)
        general, specialized = self.slots.pair(domain, task)
        check_plausible(domain, state, general or specialized, float(values["limits.state_margin"]))
        max_samples = int(values["max_samples"])
        if not 1 <= num_samples <= max_samples:
            raise Refused(RESULT_INVALID_REQUEST, f"num_samples {num_samples} is outside 1..{max_samples}: ask "
                          "for at least one and at most max_samples (a parameter of this node)")
        if not (math.isfinite(min_separation) and min_separation >= 0):
            raise Refused(RESULT_INVALID_REQUEST, f"min_separation {min_separation} must be a finite distance >= 0 "
                          "(0 = proposals may lie close together)")
        return Request(domain, task, mode, state, int(num_samples), float(min_separation), general, specialized,
                       spec)

    def _route(self, request: "Request", proposer: Proposer, values: dict) -> "Route":
        """Which models answer: the home-aware prior or the pair, the checked way when a home has a context."""
        r = request
        home_model = self.slots.get((HOME_AWARE, r.domain, ""))
        context = self.contexts.get(r.domain, r.task)
        if r.mode == HOME_AWARE:
            if home_model is None:
                raise Refused(RESULT_MODEL_UNAVAILABLE, f"no home-aware prior loaded for {r.domain}: expected "
                              f"{self.store.home_aware_path(r.domain)}; create it with `dualdiff train --domain "
                              f"{r.domain} --home-aware`")
            return self._home_aware_route(home_model, context, r.state, proposer, values)
        if r.mode == "joint" and home_aware_answers(context.count, home_model is not None, r.specialized is not None,
                                                     values):
            if not can_read(home_model, context):
                route = self._pair_route(r, proposer, values)
                route.notes.append("the home-aware prior reads the home's observations, and this home's context "
                                   "carries none (an older specialized node?): answered without it")
                return route
            verdict = self._checked_way(r, home_model, context, proposer, values)
            if verdict is None or verdict.chosen == HOME_AWARE:
                route = self._home_aware_route(home_model, context, r.state, proposer, values)
            else:
                route = self._pair_route(replace(r, mode=verdict.chosen), proposer, values)
            if verdict is not None:
                route.notes.append(verdict.reason)
            return route
        return self._pair_route(r, proposer, values)

    def _home_aware_route(self, model, context: HomeContext, state, proposer: Proposer, values: dict) -> "Route":
        guidance = home_aware_guidance(context.count, values)
        kind = model_context_kind(model)
        pseudo = pseudo_used(context.count, float(values["home_aware.pseudo_observations"])) if kind == "summary" else 0
        block = home_aware_context(model, context, float(values["home_aware.pseudo_observations"]))
        proposer = proposer.with_guidance(guidance)
        split = reads_places(model, context, values)
        where = f" in {split[1].max() + 1} places read one by one" if split is not None else ""
        note = (f"answered from the home-aware prior ({kind}) with this home's {context.count} observation(s)"
                f"{where}{f' (+{pseudo:g} pseudo-observations)' if pseudo else ''}, guidance {guidance:g}")
        return Route(None, model, "specialized", proposer, np.concatenate([state, block]), HOME_AWARE, [note],
                     split)

    def _pair_route(self, request: "Request", proposer: Proposer, values: dict) -> "Route":
        mode, note = self._resolve_mode(request.domain, request.task, request.mode, request.general,
                                        request.specialized, bool(values["fallback_to_general"]))
        return Route(request.general, request.specialized, mode, proposer, None, "", [note] if note else [])

    def _checked_way(self, request: "Request", home_model, context: HomeContext, proposer: Proposer,
                     values: dict) -> home_check.Verdict | None:
        """The way that explains this home's observations best (cached until the home or a model changes).

        None when the check is off, the home has fewer than check.min_observations, or only the
        home-aware prior could answer.
        """
        if not bool(values["check.enabled"]) or context.count < int(values["check.min_observations"]):
            return None
        r = request
        if r.general is None and r.specialized is None:  # only the home-aware prior could answer
            return None
        key = (context.version, *(m.metadata.get("version", id(m)) if m is not None else ""
                                  for m in (home_model, r.general, r.specialized)),
               float(values["check.margin"]), home_aware_guidance(context.count, values),
               bool(values["home_aware.places"]))
        with self._check_lock:
            cached = self._checks.get((r.domain, r.task))
        if cached is not None and cached[0] == key:
            return cached[1]
        ways = answer_ways(r.domain, r.state, home_model, context, r.general, r.specialized, proposer, values)
        try:
            verdict = home_check.check(ways, context.points, seed=1000 + context.version, preferred=HOME_AWARE,
                                       margin=float(values["check.margin"]))
        except (ValueError, LookupError, RuntimeError) as err:  # a way that cannot draw: answer unchecked
            verdict = home_check.Verdict(HOME_AWARE, {}, f"the answer check failed ({type(err).__name__}: "
                                                         f"{quote(str(err))}): answered from the home-aware prior")
        with self._check_lock:
            self._checks[(r.domain, r.task)] = (key, verdict)
        return verdict

    def _check_budget(self, route: "Route", grid, num_samples: int, values: dict) -> None:
        model = route.model
        drawn = navigate_to.candidates_for(num_samples, float(values["map.oversample"])) if grid else num_samples
        cost = route.proposer.passes_per_sample(model.schedule, route.mode, guided=has_block(model)) * drawn
        budget = int(values["budget.max_sample_passes"])
        if cost > budget:
            p = route.proposer
            raise Refused(RESULT_INVALID_REQUEST, f"this request costs {cost} network passes x proposals "
                          f"({drawn} proposals, mode {route.answered_as or route.mode}, sampler "
                          f"{p.sampler.method}, composition {p.composition.method}, "
                          f"{p.composition.langevin_steps} Langevin steps): "
                          f"more than budget.max_sample_passes = {budget}; ask for fewer proposals or cheaper "
                          "settings")

    def _draw(self, route: "Route", request: "Request", grid, num_samples: int, seed: int, values: dict) -> "Drawn":
        """Candidates, best first: the model's proposals, or the map-checked poses for a grid."""
        condition = route.condition
        if condition is None:
            condition = navigate_to.model_conditions(route.model, request.state[None], grid)[0]
        runs = []

        def draw(n: int):
            if route.places is None:
                runs.append(route.proposer.propose(route.general, route.specialized, condition, n, route.mode, seed))
            else:  # each place of the home from the prior given that place's observations (home_aware.places)
                rows = place_conditions(request.state, *route.places, n)
                runs.append(route.proposer.propose_rows(route.specialized, rows, seed))
            # a model that learned in its spec's frame answers there: the map check and the reply need the world
            return answers_in_world(route.model, request.state[None], runs[-1].targets), runs[-1].scores

        if grid is None:
            targets, scores = ranked(*draw(num_samples))
            return Drawn(targets, scores, runs[-1], len(targets), len(targets))
        check = map_check_from(values)
        checked = navigate_to.answer_with_map(draw, grid, request.map_state, num_samples, check,
                                              float(values["map.oversample"]), int(values["map.ring_search"]), seed)
        if checked.valid == 0:
            raise Refused(RESULT_NO_VALID_PROPOSAL, f"none of the {checked.drawn} candidates passed the map "
                          f"check ({check.describe(grid)}): the object may be unreachable on this map; check the "
                          "map and the object's pose, or ask again with another seed")
        if checked.searched:
            route.notes.append(f"the model's {checked.drawn - checked.searched} candidates gave fewer than "
                               f"{num_samples} valid poses: a ring search of {checked.searched} added the rest "
                               "(ranked last)")
        return Drawn(checked.targets, checked.scores, runs[-1], checked.drawn, checked.valid)

    def _assemble(self, route: "Route", request: "Request", drawn: "Drawn", targets, scores) -> Answer:
        result = drawn.result
        if route.answered_as == HOME_AWARE:  # the home-aware prior stands in for the general prior
            return Answer(targets, scores, HOME_AWARE, "; ".join(route.notes), {},
                          route.specialized.metadata.get("version", ""), "", None, drawn.drawn, drawn.valid)
        used_specialized = result.mode_used in ("joint", "specialized")
        general, specialized = route.general, route.specialized
        return Answer(targets, scores, result.mode_used,
                      "; ".join(m for m in (*route.notes, result.message) if m), result.diagnostics,
                      general.metadata.get("version", "") if general is not None else "",
                      specialized.metadata.get("version", "") if used_specialized else "",
                      navigate_to.pose_yaws(request.map_state, targets) if request.spec.map_check else None,
                      drawn.drawn, drawn.valid)

    def _resolve_mode(self, domain, task, mode, general, specialized, general_without_specialist: bool):
        """The mode to run and a note when it differs; Refused when a needed model is missing."""
        if general is None and mode in ("joint", "general"):
            refused = self.slots.refusal(("general", domain, ""))
            if refused:
                raise Refused(RESULT_MODEL_UNAVAILABLE, f"no general prior loaded for {domain}: the file offered was "
                              f"refused ({refused}); retrain it with `dualdiff train` or restore it")
            raise Refused(RESULT_MODEL_UNAVAILABLE,
                          f"no general prior loaded for {domain}: expected {self.store.general_path(domain)}; "
                          f"{TRAIN_HINT} and announce it (general_prior_node ~/reload)")
        if specialized is None and mode in ("joint", "specialized"):
            label = f"{domain} task {task!r}" if task else domain
            refused = self.slots.refusal(("specialized", domain, task))
            hint = (f"no specialized model loaded for {label} (expected {self.store.specialized_path(domain, task)}"
                    + (f"; the file offered was refused: {refused}" if refused else "")
                    + "): record observations and call /dualdiff/train_specialized")
            if mode == "joint" and general_without_specialist:
                return "general", hint + "; answered from the general prior"
            raise Refused(RESULT_MODEL_UNAVAILABLE, hint)
        return mode, ""


def has_block(model: DiffusionModel) -> bool:
    """Whether guidance changes this model's answers (it has a droppable condition block)."""
    return bool(model.metadata.get("droppable_condition"))


def ranked(targets: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Proposals best score first (stable: equal scores keep the sampler's order)."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    return np.asarray(targets)[order], np.asarray(scores)[order]


def home_aware_guidance(count: int, values: dict) -> float:
    """Guidance on a home's observations: sharper while they are few, less once the posterior is narrow."""
    many = count >= int(values["home_aware.many_observations"])
    return float(values["home_aware.guidance_many" if many else "home_aware.guidance"])


def home_aware_answers(count: int, have_model: bool, have_specialist: bool, values: dict) -> bool:
    """Whether a joint request for a home with `count` observations goes to the home-aware prior (and its check).

    While the home has 1..home_aware.max_observations observations, or more but no specialist yet
    (better than the prior alone). The learning curve's served row asks the same function.
    """
    return (have_model and bool(values["home_aware.enabled"]) and count >= 1
            and (count <= int(values["home_aware.max_observations"]) or not have_specialist))


def can_read(model, context: HomeContext) -> bool:
    """A set-reading prior needs the home's points; a summary-reading one the summary (always there)."""
    return model_context_kind(model) == "summary" or len(context.points) > 0


def reads_places(model, context: HomeContext, values: dict) -> tuple | None:
    """(points, place labels) when the home-aware prior reads this home place by place, else None.

    None when home_aware.places is off, the prior reads a summary, or the home is one place.
    """
    if not bool(values["home_aware.places"]) or model_context_kind(model) != "set" or len(context.points) == 0:
        return None
    labels = context.place_labels
    return None if labels is None else (context.points, labels)


def place_conditions(state: np.ndarray, points: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """[n, condition] rows of a set-reading prior: each place's share of n proposals reads that place alone."""
    return np.concatenate([np.tile(np.concatenate([state, set_block(subset)]), (m, 1))
                           for subset, m in places.shares(points, n, labels)])


def home_aware_context(model, context: HomeContext, pseudo_observations: float) -> np.ndarray:
    """The condition block the home-aware prior reads for this home."""
    if model_context_kind(model) == "summary":
        return with_pseudo_observations(context.summary, context.count, pseudo_observations)
    return set_block(context.points)


def answer_ways(domain: str, state: np.ndarray, home_model, context: HomeContext, general, specialized,
                proposer: Proposer, values: dict) -> list[home_check.Way]:
    """Every way this service could answer a joint request for the home, as the answer check draws them.

    The home-aware prior (reading the context it is given), the general prior composed with the
    specialist, the specialist alone and the general prior alone; each draws at `state` and gives
    its proposals in the home's frame.
    """
    ha_proposer = proposer.with_guidance(home_aware_guidance(context.count, values))
    kind = model_context_kind(home_model)
    pseudo = float(values["home_aware.pseudo_observations"])

    by_place = bool(values["home_aware.places"]) and kind == "set"

    def home_aware(local, n, seed):
        labels = places.several(local) if by_place else None
        if labels is not None:
            targets = ha_proposer.propose_rows(home_model, place_conditions(state, local, labels, n), seed).targets
        else:
            condition = context_conditions(state[None], local, pseudo, kind)[0]
            targets = ha_proposer.propose(None, home_model, condition, n, "specialized", seed).targets
        return home_frame(domain, np.tile(state, (n, 1)), targets)

    def pair(mode):
        def draw(local, n, seed):
            targets = proposer.propose(general, specialized, state, n, mode, seed).targets
            return home_frame(domain, np.tile(state, (n, 1)), targets)
        return draw

    ways = [home_check.Way(HOME_AWARE, home_aware, reads_context=True)]
    if general is not None and specialized is not None:
        ways.append(home_check.Way("joint", pair("joint")))
    if specialized is not None:
        ways.append(home_check.Way("specialized", pair("specialized")))
    if general is not None:
        ways.append(home_check.Way("general", pair("general")))
    return ways


def distinct(targets: np.ndarray, scores: np.ndarray, n: int, min_separation: float):
    """At most `n` of `targets` (already best first), greedily, each >= `min_separation` from those kept.

    Greedy in score order keeps the best proposal of each neighbourhood: the first is the best of
    all, the next the best one not within min_separation of it, and so on.
    """
    kept: list[int] = []
    for i in range(len(targets)):
        if len(kept) == n:
            break
        if not kept or np.min(np.linalg.norm(targets[kept] - targets[i], axis=1)) >= min_separation:
            kept.append(i)
    return targets[kept], scores[kept]


def check_names(domain: str, task: str, mode: str, spec_for, served) -> tuple[str, str, str, DomainSpec]:
    """(domain, task, mode, the domain's spec) of a request, sizes checked before anything else reads them.

    `spec_for(domain)` is the domain's spec or None (PlacementService.spec_for); `served()` the
    names a request may use, for the message.
    """
    for name, value in (("domain", domain), ("task", task), ("mode", mode)):
        size = len(value.encode("utf-8", "replace"))
        if size > MAX_NAME_BYTES:
            raise Refused(RESULT_INVALID_REQUEST, f"{name} is {size} bytes, more than {MAX_NAME_BYTES}: "
                          f"send a short name (it starts {quote(value)})")
    spec = spec_for(domain) if NAME.fullmatch(domain) else None
    if spec is None:
        raise Refused(RESULT_INVALID_REQUEST, f"unknown domain {quote(domain)}: use one of {', '.join(served())} "
                      "(a domain of your own is served once its general prior, `dualdiff train --spec SPEC --data "
                      "PARQUET`, is in model_dir or announced)")
    try:
        task = check_task(task)
    except ValueError as err:
        raise Refused(RESULT_INVALID_REQUEST, str(err)) from err
    mode = mode or "joint"
    if mode not in SERVICE_MODES:
        raise Refused(RESULT_INVALID_REQUEST, f"unknown mode {quote(mode)}: use '' or one of "
                      f"{', '.join(SERVICE_MODES)}")
    return domain, task, mode, spec


def check_vector(name: str, values, size: int) -> str | None:
    """None when `values` has `size` finite numbers, else a message naming the problem and the fix."""
    if len(values) != size:
        return f"{name} has {len(values)} numbers, this domain needs {size}"
    for i, v in enumerate(values):
        if not math.isfinite(v):
            return f"{name}[{i}] is {v}: every number must be finite (check the perception output)"
    return None


def check_state(spec: DomainSpec, state) -> np.ndarray:
    """The request's state as numbers, or Refused naming its size, the spec's size and fields."""
    problem = check_vector("state", state, spec.state_dim)
    if problem:
        raise Refused(RESULT_INVALID_REQUEST, f"{problem} ({spec.name} state = {state_meaning(spec)})")
    return np.asarray(state, dtype=np.float64)


def check_plausible(domain: str, state: np.ndarray, model: DiffusionModel | None, margin: float) -> None:
    """Refuse a state outside the general data's range widened by `margin` spans (the model knows the range)."""
    if model is None:
        return  # nothing loaded: the mode check answers MODEL_UNAVAILABLE
    problem = PlausibleRange.from_model(domain, model, margin).check_state(state)
    if problem:
        raise Refused(RESULT_INVALID_REQUEST, problem + "; parameter limits.state_margin widens the range")
