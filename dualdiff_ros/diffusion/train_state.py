"""The resumable state of a training run: one safetensors file, tensors plus a JSON header.

Written by rank 0 every K steps (and at the end), atomically (temporary file, fsync, rename),
so a kill -9 at any moment leaves the previous state or the new one, never half of one. It
holds the training weights, the EMA weights, AdamW's moments, the LR scheduler, the batch
generator's state, the epoch's permutation and cursor, and the losses so far: everything the
loop needs to take the next step exactly as an uninterrupted run would.

Nothing is unpickled: tensors come from safetensors and the rest from JSON. The header carries
a SHA-256 over itself and the tensors (checkpoint.checkpoint_digest), checked on load.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from .checkpoint import DIGEST_FIELD, checkpoint_digest, write_atomically

FORMAT = "dualdiff-train-state/1"
# Settings that may differ between the interrupted run and its resumption.
FREE_SETTINGS = ("progress", "description")


class TrainStateError(ValueError):
    """A training state that cannot be resumed from; the message says why and what to do."""


@dataclass
class StateFile:
    """Where a run keeps its state; `every` steps between writes (0: only at the end); `resume` reads it first."""

    path: Path
    every: int = 500
    resume: bool = False

    def __post_init__(self):
        self.path = Path(self.path)
        if self.every < 0:
            raise ValueError(f"state every {self.every} steps: give 0 (only at the end) or more")


def save_state(path: Path, header: dict, tensors: dict[str, torch.Tensor]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    header = json.loads(json.dumps({"format": FORMAT, **header}))
    header[DIGEST_FIELD] = checkpoint_digest(header, tensors)
    write_atomically(tensors, path, {"dualdiff_train_state": json.dumps(header)})


def load_state(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(header, tensors) of a state file, verified against its digest; TrainStateError otherwise."""
    try:
        with safe_open(str(path), framework="pt") as f:
            header = json.loads(f.metadata()["dualdiff_train_state"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, KeyError, TypeError, ValueError) as err:
        raise TrainStateError(f"training state {path} cannot be read ({err}): delete it and train without --resume") \
            from err
    if header.get("format") != FORMAT or header.get(DIGEST_FIELD) != checkpoint_digest(header, tensors):
        raise TrainStateError(f"training state {path} is not a {FORMAT} file or does not match its SHA-256: "
                              "delete it and train without --resume")
    return header, tensors


def check_compatible(path: Path, header: dict, expected: dict) -> None:
    """Refuse a state written for other data, settings or batch (naming the first difference)."""
    for key, want in expected.items():
        have = header.get(key)
        if key == "config":
            have = {k: v for k, v in (have or {}).items() if k not in FREE_SETTINGS}
            want = {k: v for k, v in want.items() if k not in FREE_SETTINGS}
        if have != want:
            raise TrainStateError(f"training state {path} was written with {key} {have!r}, this run has {want!r}: "
                                  "resume with the same data and settings, or delete it and train without --resume")


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict, dict[str, torch.Tensor]]:
    """An optimizer's state_dict split into JSON (param groups, which keys are tensors) and tensors."""
    state = opt.state_dict()
    tensors, layout = {}, {}
    for index, entries in state["state"].items():
        layout[str(index)] = {}
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"opt.{index}.{key}"] = value
                layout[str(index)][key] = None
            else:
                layout[str(index)][key] = value
    return {"param_groups": state["param_groups"], "layout": layout}, tensors


def load_optimizer(opt: torch.optim.Optimizer, saved: dict, tensors: dict[str, torch.Tensor]) -> None:
    state = {int(index): {key: tensors[f"opt.{index}.{key}"] if value is None else value
                          for key, value in entries.items()}
             for index, entries in saved["layout"].items()}
    groups = [{**g, **({"betas": tuple(g["betas"])} if "betas" in g else {})} for g in saved["param_groups"]]
    opt.load_state_dict({"state": state, "param_groups": groups})
