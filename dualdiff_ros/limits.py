"""What a domain finds plausible: boxes around its general data, so absurd numbers are refused.

A finite but absurd number (a target of 1e300, a state 1 km outside the house) would turn
training into NaN and sampling into garbage. Every model carries its general data's range in
its normalizers (fitted once on that data, inherited by every specialist); a plausible range
is that box widened by `margin` times its span on each side. States are checked in raw units,
targets in the model's own space (relative to the state when the model learns relative
targets, so "1 km from the furniture" is caught even where both numbers are in range).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .diffusion.normalizer import Normalizer

DEFAULT_MARGIN = 1.0  # one span of the general data beyond it on each side
MIN_SPAN = 1e-3       # a constant dimension of the data still gets a small box
ABSOLUTE_LIMIT = 1e4  # metres (or any unit): beyond this no robot's number is plausible, prior or not


def check_absolute(name: str, values) -> str | None:
    """None unless a number is beyond +-ABSOLUTE_LIMIT: the check while a domain has no general prior yet."""
    for i, v in enumerate(values):
        if not abs(float(v)) <= ABSOLUTE_LIMIT:
            return (f"{name}[{i}] = {float(v):.6g} is beyond +-{ABSOLUTE_LIMIT:g}: no robot measures that; "
                    "check the units and the frame (refused, not stored)")
    return None


@dataclass(frozen=True)
class Box:
    data_low: np.ndarray
    data_high: np.ndarray
    margin: float

    @property
    def low(self) -> np.ndarray:
        return self.data_low - self.margin * self._span

    @property
    def high(self) -> np.ndarray:
        return self.data_high + self.margin * self._span

    @property
    def _span(self) -> np.ndarray:
        return np.maximum(self.data_high - self.data_low, MIN_SPAN)

    def first_outside(self, values) -> int | None:
        """Index of the first value outside the box, or None."""
        v = np.asarray(values, dtype=np.float64)
        n = len(v)  # a condition may carry more than the state (a map patch): the state comes first
        bad = ~((v >= self.low[:n]) & (v <= self.high[:n]))
        return int(np.argmax(bad)) if bad.any() else None


@dataclass(frozen=True)
class PlausibleRange:
    """State and model-space target boxes of one domain, from its general prior's normalizers."""

    domain: str
    state: Box | None
    target: Box
    relative_targets: bool

    @classmethod
    def from_header(cls, domain: str, header: dict, margin: float = DEFAULT_MARGIN) -> "PlausibleRange":
        """From a checkpoint header (diffusion.checkpoint.read_header): no weights needed."""
        cond = header.get("condition_normalizer")
        return cls(domain, _box(Normalizer.from_dict(cond), margin) if cond else None,
                   _box(Normalizer.from_dict(header["target_normalizer"]), margin),
                   bool(header.get("relative_targets", False)))

    @classmethod
    def from_model(cls, domain: str, model, margin: float = DEFAULT_MARGIN) -> "PlausibleRange":
        cond = model.condition_normalizer
        return cls(domain, _box(cond, margin) if cond is not None else None,
                   _box(model.target_normalizer, margin), model.relative_targets)

    def check_state(self, state) -> str | None:
        """None when every number of `state` is plausible, else the reason naming index, value and range."""
        if self.state is None:
            return None
        i = self.state.first_outside(state)
        if i is None:
            return None
        return (f"state[{i}] = {float(state[i]):.6g} is outside the plausible range "
                f"{self.state.low[i]:.4g}..{self.state.high[i]:.4g} for {self.domain} (the general data's "
                f"{self.state.data_low[i]:.4g}..{self.state.data_high[i]:.4g} widened by margin "
                f"{self.state.margin:g} spans each side): check the units and the frame")

    def check_target(self, state, target) -> str | None:
        """None for a plausible target of this state, else the reason (in the model's space)."""
        target = np.asarray(target, dtype=np.float64)
        local = target - np.asarray(state, dtype=np.float64)[: len(target)] if self.relative_targets else target
        i = self.target.first_outside(local)
        if i is None:
            return None
        what = "target[{i}] - state[{i}]" if self.relative_targets else "target[{i}]"
        return (f"{what.format(i=i)} = {local[i]:.6g} is outside the plausible range "
                f"{self.target.low[i]:.4g}..{self.target.high[i]:.4g} for {self.domain} (the general data's "
                f"{self.target.data_low[i]:.4g}..{self.target.data_high[i]:.4g} widened by margin "
                f"{self.target.margin:g} spans each side): an observation this far off would poison the "
                "specialized model")


def _box(normalizer: Normalizer, margin: float) -> Box:
    return Box(normalizer.low.copy(), normalizer.high.copy(), float(margin))
