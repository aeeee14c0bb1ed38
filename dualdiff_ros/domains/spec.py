"""A domain declared in a file: its state and target fields, their units and ranges, and its frame.

A user with their own placement problem (where do the mugs go, given the counter's pose?) writes
a YAML spec and brings Parquet rows (domains/fleet_data.py); nothing in the code names their
domain. The spec is validated on load, and every error names the file, the field and the fix,
because the person reading it is the one who wrote the file. The spec travels in every
checkpoint's header (`to_dict` / `from_dict`), so a model folder describes itself.

Frames: the model learns targets in the local frame of the thing the state describes, so that
"the mugs' corner of the counter" is one shape wherever the counter stands.
- absolute: targets as they are (no frame);
- translation: `origin` names one state field per target field; local = target - origin;
- se2: `origin` names the state fields of the pose's x and y (and z, for a third target number,
  which is only translated), `yaw` its heading; local_xy = R(-yaw) (target_xy - origin_xy), and
  answers are rotated back with R(yaw). The rotation is the point: a counter turned by 90 degrees
  keeps its mugs in the same corner of its own frame.

The thesis's three domains are built-in specs (domains/specs/*.yaml): `builtin_spec("cabinet")`.
"""
from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
FRAME_TYPES = ("absolute", "translation", "se2")
TARGET_SIZES = (2, 3)
BUILTIN_SPECS = ("cabinet", "round_table", "navigate_to")
SPEC_FORMAT = 1
# Recipe keys a spec may set, per named recipe (full / demo / quick): what each changes is in
# dualdiff_ros/spec_training.py (spec_recipe). Kept here so that a typo is caught when the spec is loaded.
RECIPE_KEYS = ("width", "depth", "diffusion_steps", "general_epochs", "general_batch_size", "general_lr",
               "fine_tune_epochs", "fine_tune_batch_size", "fine_tune_lr", "lora_rank",
               "specialized_epochs", "specialized_batch_size", "specialized_lr")
RECIPE_NAMES = ("full", "demo", "quick")
MAP_OBJECT_KEYS = ("x", "y", "width", "height", "yaw")
_TOP_KEYS = ("format", "name", "description", "state", "target", "frame", "plausible_target", "map_check",
             "recipes")
_FIELD_KEYS = ("name", "unit", "range")


class SpecError(ValueError):
    """A spec that cannot be used: the message names the file, the field and the fix."""


@dataclass(frozen=True)
class SpecField:
    """One number of the state or the target: its name (a Parquet column's suffix), unit, range."""

    name: str
    unit: str = ""
    low: float = -math.inf
    high: float = math.inf

    @property
    def bounded(self) -> bool:
        return math.isfinite(self.low) or math.isfinite(self.high)

    def to_dict(self) -> dict:
        out = {"name": self.name, "unit": self.unit}
        if self.bounded:
            out["range"] = [self.low, self.high]
        return out


@dataclass(frozen=True)
class MapCheckSpec:
    """A navigate-style map check: the target is a robot base that must stand free and reach the object.

    `object` maps x, y, width, height, yaw of the object's footprint to state fields; the check
    itself is dualdiff_ros.navigate_to.MapCheck (robot radius and reach, the node's map.* parameters).
    """

    object: dict
    robot_radius: float = 2.0
    reach: float = 4.0

    def to_dict(self) -> dict:
        return {"object": dict(self.object), "robot_radius": self.robot_radius, "reach": self.reach}


@dataclass(frozen=True)
class DomainSpec:
    """A domain as data: what is perceived (state), what is proposed (target), and the model's frame."""

    name: str
    description: str
    state: tuple[SpecField, ...]
    target: tuple[SpecField, ...]
    frame: str = "absolute"
    origin: tuple[str, ...] = ()
    yaw: str = ""
    plausible_target: dict = field(default_factory=dict)   # target name -> (low, high), local frame
    map_check: MapCheckSpec | None = None
    recipes: dict = field(default_factory=dict)            # recipe name -> {key: value}
    source: str = "<dict>"                                 # where it was read from (for messages)

    # ---- sizes and columns ------------------------------------------------------------------
    @property
    def state_dim(self) -> int:
        return len(self.state)

    @property
    def target_dim(self) -> int:
        return len(self.target)

    @property
    def state_names(self) -> list[str]:
        return [f.name for f in self.state]

    @property
    def target_names(self) -> list[str]:
        return [f.name for f in self.target]

    @property
    def state_columns(self) -> list[str]:
        return [f"state.{f.name}" for f in self.state]

    @property
    def target_columns(self) -> list[str]:
        return [f"target.{f.name}" for f in self.target]

    def state_index(self, name: str) -> int:
        return self.state_names.index(name)

    @property
    def map_object_index(self) -> list[int]:
        """State indices of the map check's object x, y, width, height, yaw (MAP_OBJECT_KEYS order)."""
        if self.map_check is None:
            raise ValueError(f"{self.name} has no map_check: its answers are not checked against a map")
        return [self.state_index(self.map_check.object[key]) for key in MAP_OBJECT_KEYS]

    # ---- frames -----------------------------------------------------------------------------
    @property
    def origin_index(self) -> list[int]:
        return [self.state_index(n) for n in self.origin]

    @property
    def relative_prefix(self) -> bool:
        """A translation frame whose origin is the state's first fields in order.

        Such a model can be trained on world targets with DiffusionModel's `relative_targets`
        (it subtracts the condition's first numbers): the same numbers, and a checkpoint that
        today's serving already answers in world coordinates (cabinet, round table, navigate-to).
        """
        return self.frame == "translation" and self.origin_index == list(range(self.target_dim))

    def to_local(self, states, targets) -> np.ndarray:
        """World targets ``[n, d]`` -> the frame the model learns in, given states ``[n, s]``."""
        states, targets = self._arrays(states, targets)
        if self.frame == "absolute":
            return targets.copy()
        origin = states[:, self.origin_index]
        if self.frame == "translation":
            return targets - origin
        out = targets.copy()
        c, s = self._cos_sin(states)
        dx, dy = targets[:, 0] - origin[:, 0], targets[:, 1] - origin[:, 1]
        out[:, 0], out[:, 1] = c * dx + s * dy, -s * dx + c * dy
        if len(self.origin) == 3:
            out[:, 2] = targets[:, 2] - origin[:, 2]
        return out

    def from_local(self, states, local) -> np.ndarray:
        """Model-frame targets ``[n, d]`` -> world targets (the inverse of `to_local`)."""
        states, local = self._arrays(states, local)
        if self.frame == "absolute":
            return local.copy()
        origin = states[:, self.origin_index]
        if self.frame == "translation":
            return local + origin
        out = local.copy()
        c, s = self._cos_sin(states)
        out[:, 0] = origin[:, 0] + c * local[:, 0] - s * local[:, 1]
        out[:, 1] = origin[:, 1] + s * local[:, 0] + c * local[:, 1]
        if len(self.origin) == 3:
            out[:, 2] = local[:, 2] + origin[:, 2]
        return out

    def _cos_sin(self, states):
        yaw = states[:, self.state_index(self.yaw)]
        return np.cos(yaw), np.sin(yaw)

    def _arrays(self, states, targets):
        states = np.asarray(states, dtype=np.float64).reshape(-1, self.state_dim)
        targets = np.asarray(targets, dtype=np.float64).reshape(-1, self.target_dim)
        if len(states) != len(targets) and len(states) != 1:
            raise ValueError(f"{self.name}: {len(states)} states for {len(targets)} targets: give one state per "
                             "target, or one state for all")
        if len(states) == 1 and len(targets) != 1:
            states = np.repeat(states, len(targets), axis=0)
        return states, targets

    # ---- which rows are good ----------------------------------------------------------------
    def bad_rows(self, states: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """``bool [n]``: rows that cannot be trained on (vectorized; `why_bad` words one row's reason).

        Non-finite numbers, a state or target outside its field's range, or a target outside the
        plausible range in the model's frame.
        """
        bad = ~np.isfinite(states).all(axis=1) | ~np.isfinite(targets).all(axis=1)
        for j, f in enumerate(self.state):
            if f.bounded:
                bad |= (states[:, j] < f.low) | (states[:, j] > f.high)
        for j, f in enumerate(self.target):
            if f.bounded:
                bad |= (targets[:, j] < f.low) | (targets[:, j] > f.high)
        if self.plausible_target:
            ok = ~bad
            local = np.zeros_like(targets)
            if ok.any():
                local[ok] = self.to_local(states[ok], targets[ok])
            for j, name in enumerate(self.target_names):
                if name in self.plausible_target:
                    low, high = self.plausible_target[name]
                    bad |= ok & ((local[:, j] < low) | (local[:, j] > high))
        return bad

    def why_bad(self, state, target) -> str:
        """Why one row is refused, in words (the first reason found), or "" when it is good."""
        state, target = np.asarray(state, np.float64), np.asarray(target, np.float64)
        for kind, fields, values in (("state", self.state, state), ("target", self.target, target)):
            for f, v in zip(fields, values):
                if not math.isfinite(v):
                    return f"{kind}.{f.name} is {v}: every number must be finite"
                if v < f.low or v > f.high:
                    return f"{kind}.{f.name} = {v:g} is outside its range [{f.low:g}, {f.high:g}]"
        if self.plausible_target:
            local = self.to_local(state[None], target[None])[0]
            for j, name in enumerate(self.target_names):
                if name in self.plausible_target:
                    low, high = self.plausible_target[name]
                    if not low <= local[j] <= high:
                        return (f"target.{name} is {local[j]:g} in the {self.frame} frame, outside "
                                f"plausible_target.{name} [{low:g}, {high:g}]")
        return ""

    # ---- storage ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The spec as plain data (JSON/YAML), for a checkpoint's header or a Parquet file's metadata."""
        frame: dict = {"type": self.frame}
        if self.frame != "absolute":
            frame["origin"] = list(self.origin)
        if self.frame == "se2":
            frame["yaw"] = self.yaw
        out = {"format": SPEC_FORMAT, "name": self.name, "description": self.description,
               "state": [f.to_dict() for f in self.state], "target": [f.to_dict() for f in self.target],
               "frame": frame}
        if self.plausible_target:
            out["plausible_target"] = {k: list(v) for k, v in self.plausible_target.items()}
        if self.map_check is not None:
            out["map_check"] = self.map_check.to_dict()
        if self.recipes:
            out["recipes"] = copy.deepcopy(self.recipes)
        return out

    @classmethod
    def from_dict(cls, data, source: str = "<dict>") -> "DomainSpec":
        """Validate and build; `source` names where `data` came from in every error."""
        return _parse(data, source)


# ---- loading -----------------------------------------------------------------------------------
def load_spec(path) -> DomainSpec:
    """Read and validate a spec file (YAML); errors name the file, the field and the fix."""
    import yaml

    path = Path(path).expanduser()
    if not path.is_file():
        raise SpecError(f"{path}: no such spec file: give the path of a YAML spec (docs/domains.md, "
                        f"'Your own domain'), or a built-in name: {', '.join(BUILTIN_SPECS)}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML ({e}): fix the syntax") from None
    return _parse(data, str(path))


def builtin_spec(name: str) -> DomainSpec:
    """The built-in spec of a thesis domain (cabinet, round_table, navigate_to)."""
    if name not in BUILTIN_SPECS:
        raise SpecError(f"no built-in spec {name!r}: use one of {', '.join(BUILTIN_SPECS)}, or a spec file")
    ref = resources.files("dualdiff_ros.domains") / "specs" / f"{name}.yaml"
    with resources.as_file(ref) as path:
        return load_spec(path)


def resolve_spec(name_or_path) -> DomainSpec:
    """A spec file's path, or the name of a built-in spec."""
    if str(name_or_path) in BUILTIN_SPECS and not Path(str(name_or_path)).exists():
        return builtin_spec(str(name_or_path))
    return load_spec(name_or_path)


def _fail(source: str, where: str, problem: str, fix: str):
    raise SpecError(f"{source}: {where}: {problem}; fix: {fix}")


def _number(source, where, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(source, where, f"{value!r} is not a number", "write a number such as 1.5")
    value = float(value)
    if math.isnan(value):
        _fail(source, where, "is NaN", "write a number")
    return value


def _pair(source, where, value) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        _fail(source, where, f"{value!r} is not a [low, high] pair", "write [low, high], e.g. [-1.0, 1.0]")
    low, high = _number(source, f"{where}[0]", value[0]), _number(source, f"{where}[1]", value[1])
    if not low < high:
        _fail(source, where, f"low {low:g} is not below high {high:g}", "write [low, high] with low < high")
    return low, high


def _name(source, where, value) -> str:
    if not isinstance(value, str) or not NAME.fullmatch(value):
        _fail(source, where, f"{value!r} is not a valid name",
              "use a lowercase letter, then up to 31 lowercase letters, digits or '_' (e.g. mug_counter)")
    return value


def _unknown(source, where, data: dict, known) -> None:
    extra = [k for k in data if k not in known]
    if extra:
        _fail(source, where, f"unknown key {extra[0]!r}", f"use only {', '.join(known)} (check the spelling)")


def _fields(source, key, data, sizes=None) -> tuple[SpecField, ...]:
    items = data.get(key)
    if items is None:
        _fail(source, key, "is missing",
              f"add a list '{key}:' of fields, each {{name: ..., unit: ..., range: [lo, hi]}}")
    if not isinstance(items, list) or not items:
        _fail(source, key, f"{items!r} is not a non-empty list", "write one '- {name: ..., unit: ...}' line per number")
    if sizes and len(items) not in sizes:
        _fail(source, key, f"has {len(items)} fields", f"give {' or '.join(map(str, sizes))} numbers "
              "(2-D targets are answered as (x, y, 0))")
    out, seen = [], set()
    for i, item in enumerate(items):
        where = f"{key}[{i}]"
        if not isinstance(item, dict):
            _fail(source, where, f"{item!r} is not a mapping", "write {name: x, unit: m, range: [-1, 1]}")
        _unknown(source, where, item, _FIELD_KEYS)
        name = _name(source, f"{where}.name", item.get("name"))
        if name in seen:
            _fail(source, f"{where}.name", f"{name!r} appears twice in {key}", "give every field its own name")
        seen.add(name)
        unit = item.get("unit", "")
        if not isinstance(unit, str):
            _fail(source, f"{where}.unit", f"{unit!r} is not text", "write the unit as text, e.g. m or rad")
        low, high = _pair(source, f"{where}.range", item["range"]) if "range" in item else (-math.inf, math.inf)
        out.append(SpecField(name, unit, low, high))
    return tuple(out)


def _parse(data, source: str) -> DomainSpec:
    if not isinstance(data, dict):
        _fail(source, "top level", f"is {type(data).__name__}, not a mapping",
              "write 'name:', 'state:', 'target:' and 'frame:' keys (docs/domains.md, 'Your own domain')")
    _unknown(source, "top level", data, _TOP_KEYS)
    fmt = data.get("format", SPEC_FORMAT)
    if fmt != SPEC_FORMAT:
        _fail(source, "format", f"{fmt!r} is not a format this version reads", f"write format: {SPEC_FORMAT}")
    name = _name(source, "name", data.get("name"))
    description = data.get("description", "")
    if not isinstance(description, str):
        _fail(source, "description", f"{description!r} is not text", "write one line of text")
    state = _fields(source, "state", data)
    target = _fields(source, "target", data, TARGET_SIZES)
    names = [f.name for f in state]

    frame = data.get("frame")
    if frame is None:
        _fail(source, "frame", "is missing", "add 'frame: {type: absolute}' (or translation / se2 with origin)")
    if isinstance(frame, str):
        frame = {"type": frame}
    if not isinstance(frame, dict):
        _fail(source, "frame", f"{frame!r} is not a mapping", "write frame: {type: se2, origin: [x, y], yaw: yaw}")
    _unknown(source, "frame", frame, ("type", "origin", "yaw"))
    kind = frame.get("type")
    if kind not in FRAME_TYPES:
        _fail(source, "frame.type", f"{kind!r} is not a frame type", f"use one of {', '.join(FRAME_TYPES)}")
    origin, yaw = tuple(frame.get("origin") or ()), frame.get("yaw", "")
    if kind == "absolute":
        if origin or yaw:
            _fail(source, "frame", "an absolute frame takes no origin or yaw",
                  "remove them, or use type translation / se2")
    else:
        for i, o in enumerate(origin):
            if o not in names:
                _fail(source, f"frame.origin[{i}]", f"{o!r} is not a state field",
                      f"name one of the state fields: {', '.join(names)}")
        if kind == "translation":
            if len(origin) != len(target):
                _fail(source, "frame.origin", f"has {len(origin)} fields for {len(target)} target numbers",
                      "a translation frame names one state field per target field, in the target's order")
            if yaw:
                _fail(source, "frame.yaw", "a translation frame does not rotate", "remove yaw, or use type se2")
        else:
            if len(origin) not in (2, len(target)):
                _fail(source, "frame.origin", f"has {len(origin)} fields",
                      "an se2 frame names the pose's x and y state fields (and z for a third target number)")
            if yaw not in names:
                _fail(source, "frame.yaw", f"{yaw!r} is not a state field",
                      f"name the state field of the heading (radians), one of: {', '.join(names)}")

    plausible = data.get("plausible_target") or {}
    if not isinstance(plausible, dict):
        _fail(source, "plausible_target", f"{plausible!r} is not a mapping",
              "write {target field: [low, high]} in the model's frame")
    target_names = [f.name for f in target]
    checked = {}
    for key, value in plausible.items():
        if key not in target_names:
            _fail(source, f"plausible_target.{key}", "is not a target field",
                  f"use target field names: {', '.join(target_names)}")
        checked[key] = _pair(source, f"plausible_target.{key}", value)

    map_check = None
    if data.get("map_check") is not None:
        mc = data["map_check"]
        if not isinstance(mc, dict):
            _fail(source, "map_check", f"{mc!r} is not a mapping",
                  "write map_check: {object: {x: ..., y: ..., width: ..., height: ..., yaw: ...}, robot_radius: 2, "
                  "reach: 4}")
        _unknown(source, "map_check", mc, ("object", "robot_radius", "reach"))
        obj = mc.get("object")
        if not isinstance(obj, dict) or set(obj) != set(MAP_OBJECT_KEYS):
            _fail(source, "map_check.object", f"{obj!r} does not name {', '.join(MAP_OBJECT_KEYS)}",
                  "map each of x, y, width, height, yaw of the object's footprint to a state field")
        for key, value in obj.items():
            if value not in names:
                _fail(source, f"map_check.object.{key}", f"{value!r} is not a state field",
                      f"name one of: {', '.join(names)}")
        if len(target) != 2:
            _fail(source, "map_check", f"needs a 2-number target (a base position), this spec has {len(target)}",
                  "remove map_check, or make the target the base's (x, y)")
        radius = _number(source, "map_check.robot_radius", mc.get("robot_radius", 2.0))
        reach = _number(source, "map_check.reach", mc.get("reach", 4.0))
        if not 0 < radius <= reach:
            _fail(source, "map_check", f"robot_radius {radius:g} and reach {reach:g}",
                  "give 0 < robot_radius <= reach (metres)")
        map_check = MapCheckSpec(dict(obj), radius, reach)

    recipes = data.get("recipes") or {}
    if not isinstance(recipes, dict):
        _fail(source, "recipes", f"{recipes!r} is not a mapping", "write recipes: {demo: {width: 64, ...}}")
    for rname, values in recipes.items():
        if rname not in RECIPE_NAMES:
            _fail(source, f"recipes.{rname}", "is not a recipe name", f"use {', '.join(RECIPE_NAMES)}")
        if not isinstance(values, dict):
            _fail(source, f"recipes.{rname}", f"{values!r} is not a mapping", "write {width: 64, general_epochs: 20}")
        _unknown(source, f"recipes.{rname}", values, RECIPE_KEYS)
        for key, value in values.items():
            v = _number(source, f"recipes.{rname}.{key}", value)
            if v < 0 or (v == 0 and key != "lora_rank") or (not key.endswith("_lr") and v != int(v)):
                _fail(source, f"recipes.{rname}.{key}", f"{value!r} is not usable",
                      "give a positive whole number (a learning rate: a positive number below 1)")
            if key.endswith("_lr") and not v < 1:
                _fail(source, f"recipes.{rname}.{key}", f"{value!r} is too large", "give a learning rate below 1")
    return DomainSpec(name, description, state, target, kind, origin, yaw or "", checked, map_check,
                      copy.deepcopy(recipes), source)
