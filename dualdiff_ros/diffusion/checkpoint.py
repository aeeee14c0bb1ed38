"""Checkpoints as one safetensors file: weights plus JSON metadata in its header.

Loading never unpickles. Writes are atomic (temporary file + rename) so a reader never
sees half a checkpoint.

Integrity (format ``dualdiff-checkpoint/2``): the header's ``sha256`` is one SHA-256 over

1. the canonical JSON (``json.dumps(sort_keys=True, separators=(",", ":"))``) of the whole
   dualdiff header (format, architecture, schedule, normalizers, relative_targets,
   metadata) *without* the ``sha256`` field itself and *without* ``metadata["version"]``,
   then a NUL byte, then
2. every tensor (sorted by name: name, shape, dtype, raw bytes; see ``weights_digest``).

The version id is the first 12 hex digits of that digest and is written to
``metadata["version"]``, so it is covered too: ``verify_checkpoint`` / ``load_checkpoint``
recompute the digest and refuse the file when it, or the version, does not match. A change
to any number of the header (a normalizer bound, say) or of the weights, or a file cut
short, is refused with the file's name and the reason.

Files of format ``dualdiff-checkpoint/1`` (digest over the weights only) are refused: they
were written without header integrity and must be retrained.
"""
from __future__ import annotations

import copy
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

FORMAT = "dualdiff-checkpoint/2"
DIGEST_FIELD = "sha256"
_OLD_FORMATS = ("dualdiff-checkpoint/1",)
RETRAIN_HINT = "retrain with `dualdiff train`"


class CheckpointError(ValueError):
    """A checkpoint that cannot be trusted or read; the message says why and what to do."""


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the tensors alone (name, shape, dtype and bytes of each, sorted by name)."""
    h = hashlib.sha256()
    _update_weights(h, state)
    return h.hexdigest()


def _update_weights(h, state: dict[str, torch.Tensor]) -> None:
    for name in sorted(state):
        t = state[name].detach().contiguous().cpu()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.numpy().tobytes())


def canonical_header(header: dict) -> bytes:
    """The bytes the digest covers: the header without its digest field and without metadata.version."""
    body = {k: v for k, v in header.items() if k != DIGEST_FIELD}
    metadata = body.get("metadata")
    if isinstance(metadata, dict):
        body["metadata"] = {k: v for k, v in metadata.items() if k != "version"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()


def checkpoint_digest(header: dict, state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the canonical header and the weights (see the module docstring)."""
    h = hashlib.sha256(canonical_header(header))
    h.update(b"\0")
    _update_weights(h, state)
    return h.hexdigest()


def save_checkpoint(model: DiffusionModel, path: str | os.PathLike) -> str:
    """Write atomically; returns the version id (first 12 hex digits of the checkpoint's digest).

    Sets ``model.metadata["version"]`` to that id.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.denoiser.state_dict().items()}
    header = {
        "format": FORMAT,
        "architecture": model.architecture,
        "schedule": model.schedule.to_dict(),
        "target_normalizer": model.target_normalizer.to_dict(),
        "condition_normalizer": (model.condition_normalizer.to_dict()
                                 if model.condition_normalizer is not None else None),
        "relative_targets": model.relative_targets,
        "metadata": {k: v for k, v in model.metadata.items() if k != "version"},
    }
    # Digest what a reader will parse, not the Python objects: JSON turns tuples into lists
    # and int keys into strings, and the reader only ever sees the JSON.
    header = json.loads(json.dumps(header))
    digest = checkpoint_digest(header, state)
    version = digest[:12]
    header["metadata"]["version"] = version
    header[DIGEST_FIELD] = digest
    write_atomically(state, path, {"dualdiff": json.dumps(header)})
    model.metadata["version"] = version
    return version


def write_atomically(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """A safetensors file written beside `path`, fsynced, then renamed over it: never half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_header(path: str | os.PathLike) -> dict:
    """The JSON header alone (cheap: no weights are read, nothing is verified but the format).

    Use ``verify_checkpoint`` before trusting its numbers.
    """
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
        if not isinstance(header, dict):
            raise TypeError("the dualdiff header is not a JSON object")
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"checkpoint {path} has no readable dualdiff header ({err}); "
                              "it was not written by dualdiff_ros or was altered") from err
    fmt = header.get("format")
    if fmt in _OLD_FORMATS:
        raise CheckpointError(f"checkpoint {path} has format {fmt!r}, written by an older dualdiff_ros without "
                              f"header integrity: {RETRAIN_HINT}")
    if fmt != FORMAT:
        raise CheckpointError(f"checkpoint {path} has format {fmt!r}, expected {FORMAT!r}")
    return header


def _verified(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    header = read_header(path)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} could not be read ({err}); it is truncated or corrupt") from err
    recorded = header.get(DIGEST_FIELD)
    metadata = header.get("metadata")
    version = metadata.get("version") if isinstance(metadata, dict) else None
    try:
        digest = checkpoint_digest(header, state)
    except (TypeError, ValueError) as err:  # pragma: no cover - json.loads output always dumps
        raise CheckpointError(f"checkpoint {path} has a header that cannot be digested ({err})") from err
    if not isinstance(recorded, str) or digest != recorded or version != digest[:12]:
        raise CheckpointError(f"checkpoint {path} does not match its recorded SHA-256: its header or weights "
                              f"were altered or damaged; {RETRAIN_HINT} or restore the file")
    return header, state


def verify_checkpoint(path: str | os.PathLike) -> dict:
    """Fully verify a checkpoint (header and weights against their digest) without building a model.

    Returns the header; raises CheckpointError naming the file and the reason.
    """
    return _verified(path)[0]


def load_checkpoint(path: str | os.PathLike) -> DiffusionModel:
    """Verify (see ``verify_checkpoint``) and build the model; never unpickles."""
    header, state = _verified(path)
    cond = header.get("condition_normalizer")
    try:
        model = DiffusionModel.create(header["architecture"], NoiseSchedule.from_dict(header["schedule"]),
                                      Normalizer.from_dict(header["target_normalizer"]),
                                      Normalizer.from_dict(cond) if cond is not None else None,
                                      copy.deepcopy(header["metadata"]), bool(header.get("relative_targets", False)))
        model.denoiser.load_state_dict(state, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"checkpoint {path} does not describe a model this version can build "
                              f"({err}); retrain it with `dualdiff train`") from err
    model.denoiser.eval()
    return model
