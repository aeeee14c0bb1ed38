"""Checkpoints as one safetensors file: weights plus JSON metadata in its header.

Loading never unpickles. The metadata records a SHA-256 of the weights; a file whose
weights or header were changed, or that was cut short, is refused with the reason.
Writes are atomic (temporary file + rename) so a reader never sees half a checkpoint.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .model import DiffusionModel
from .normalizer import Normalizer
from .schedules import NoiseSchedule

FORMAT = "dualdiff-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be trusted or read; the message says why and what to do."""


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().contiguous().cpu()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def save_checkpoint(model: DiffusionModel, path: str | os.PathLike) -> str:
    """Write atomically; returns the version id (first 12 hex digits of the weights' digest)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.denoiser.state_dict().items()}
    digest = weights_digest(state)
    version = digest[:12]
    model.metadata["version"] = version
    header = {
        "format": FORMAT,
        "architecture": model.architecture,
        "schedule": model.schedule.to_dict(),
        "target_normalizer": model.target_normalizer.to_dict(),
        "condition_normalizer": (model.condition_normalizer.to_dict()
                                 if model.condition_normalizer is not None else None),
        "relative_targets": model.relative_targets,
        "metadata": model.metadata,
        "weights_sha256": digest,
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp, metadata={"dualdiff": json.dumps(header)})
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return version


def read_header(path: str | os.PathLike) -> dict:
    """The JSON header alone (cheap: no weights are read)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: train one first (see `dualdiff train --help`)")
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if n <= 0 or n > 10_000_000 or n + 8 > path.stat().st_size:
                raise CheckpointError(f"checkpoint {path} is truncated or not a safetensors file")
            raw = json.loads(f.read(n))
        header = json.loads(raw["__metadata__"]["dualdiff"])
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"checkpoint {path} has no readable dualdiff header ({err}); "
                              "it was not written by dualdiff_ros or was altered") from err
    if header.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} has format {header.get('format')!r}, expected {FORMAT!r}")
    return header


def load_checkpoint(path: str | os.PathLike) -> DiffusionModel:
    header = read_header(path)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} could not be read ({err}); it is truncated or corrupt") from err
    digest = weights_digest(state)
    if digest != header["weights_sha256"]:
        raise CheckpointError(f"checkpoint {path} weights do not match their recorded SHA-256: "
                              "the file was altered or damaged; retrain or restore it")
    cond = header["condition_normalizer"]
    try:
        model = DiffusionModel.create(header["architecture"], NoiseSchedule.from_dict(header["schedule"]),
                                      Normalizer.from_dict(header["target_normalizer"]),
                                      Normalizer.from_dict(cond) if cond is not None else None,
                                      header["metadata"], bool(header.get("relative_targets", False)))
        model.denoiser.load_state_dict(state, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"checkpoint {path} does not describe a model this version can build "
                              f"({err}); retrain it with `dualdiff train`") from err
    model.denoiser.eval()
    return model
