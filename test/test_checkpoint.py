"""Checkpoints round-trip exactly and refuse tampered or truncated files."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from dualdiff_ros.diffusion.checkpoint import (
    FORMAT,
    CheckpointError,
    checkpoint_digest,
    load_checkpoint,
    read_header,
    save_checkpoint,
    verify_checkpoint,
)
from dualdiff_ros.diffusion.model import DiffusionModel
from dualdiff_ros.diffusion.normalizer import Normalizer
from dualdiff_ros.diffusion.sampling import sample
from dualdiff_ros.diffusion.schedules import NoiseSchedule


@pytest.fixture
def model():
    torch.manual_seed(0)
    return DiffusionModel.create({"name": "mlp", "width": 32, "depth": 1}, NoiseSchedule("cosine", 20),
                                 Normalizer([0, 0, 0], [1, 2, 3]), Normalizer([-4, -4, 0], [6, 6, 3]),
                                 {"domain": "cabinet", "role": "general"})


def test_round_trip_gives_identical_samples(model, tmp_path):
    path = tmp_path / "m.safetensors"
    version = save_checkpoint(model, path)
    loaded = load_checkpoint(path)
    assert loaded.metadata["version"] == version and len(version) == 12
    assert read_header(path)["metadata"]["domain"] == "cabinet"
    c = np.array([[1.0, 2.0, 0.5]])
    np.testing.assert_array_equal(sample(model, c, 5, seed=4), sample(loaded, c, 5, seed=4))


def test_changed_weights_are_refused(model, tmp_path):
    path = tmp_path / "m.safetensors"
    save_checkpoint(model, path)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # flip bits inside the last tensor
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="altered"):
        verify_checkpoint(path)


def test_truncated_file_is_refused(model, tmp_path):
    path = tmp_path / "m.safetensors"
    save_checkpoint(model, path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated|corrupt"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="truncated|corrupt"):
        verify_checkpoint(path)


def _header_bytes(path):
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return raw, n, json.loads(raw[8:8 + n])


def _rewrite_dualdiff_header(path, edit):
    """Replace the dualdiff header JSON string by edit(it), padding to the same length."""
    raw, n, outer = _header_bytes(path)
    outer["__metadata__"]["dualdiff"] = edit(outer["__metadata__"]["dualdiff"])
    blob = json.dumps(outer, separators=(",", ":")).encode()
    assert len(blob) <= n
    path.write_bytes(raw[:8] + blob.ljust(n) + raw[8 + n:])


def test_same_length_edit_of_a_normalizer_bound_is_refused(model, tmp_path):
    path = tmp_path / "m.safetensors"
    save_checkpoint(model, path)
    size = path.stat().st_size
    # [-4, -4, 0] -> [-5, -4, 0]: one digit, same length, a valid header
    _rewrite_dualdiff_header(path, lambda s: s.replace('"low": [-4.0, -4.0, 0.0]', '"low": [-5.0, -4.0, 0.0]', 1))
    assert path.stat().st_size == size
    assert read_header(path)["condition_normalizer"]["low"][0] == -5.0  # the edit is really there
    with pytest.raises(CheckpointError, match=r"m\.safetensors.*header or weights were altered"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="altered"):
        verify_checkpoint(path)


def test_edited_version_is_refused(model, tmp_path):
    path = tmp_path / "m.safetensors"
    version = save_checkpoint(model, path)
    forged = "0" * 12 if version != "0" * 12 else "1" * 12
    _rewrite_dualdiff_header(path, lambda s: s.replace(version, forged))
    with pytest.raises(CheckpointError, match="altered"):
        load_checkpoint(path)


def test_version_changes_when_only_metadata_changes(model, tmp_path):
    first = save_checkpoint(model, tmp_path / "a.safetensors")
    assert save_checkpoint(model, tmp_path / "same.safetensors") == first  # deterministic
    model.metadata["task"] = "cups"
    second = save_checkpoint(model, tmp_path / "b.safetensors")
    assert second != first and model.metadata["version"] == second
    assert verify_checkpoint(tmp_path / "b.safetensors")["metadata"]["version"] == second
    assert load_checkpoint(tmp_path / "b.safetensors").metadata["version"] == second


def test_verify_returns_the_header(model, tmp_path):
    path = tmp_path / "m.safetensors"
    version = save_checkpoint(model, path)
    header = verify_checkpoint(path)
    assert header["format"] == FORMAT and header["metadata"]["version"] == version
    assert header["sha256"].startswith(version) and "weights_sha256" not in header


def test_format_1_is_refused_with_the_fix(model, tmp_path):
    path = tmp_path / "m.safetensors"
    save_checkpoint(model, path)
    _rewrite_dualdiff_header(path, lambda s: s.replace(FORMAT, "dualdiff-checkpoint/1"))
    with pytest.raises(CheckpointError, match="older dualdiff_ros without header integrity.*dualdiff train"):
        load_checkpoint(path)


def test_foreign_architecture_is_refused(model, tmp_path):
    """A correctly digested header naming an architecture this version cannot build."""
    path = tmp_path / "m.safetensors"
    save_checkpoint(model, path)

    def resign(text):
        header = json.loads(text.replace('"mlp"', '"evl"'))
        digest = checkpoint_digest(header, load_file(str(path)))
        header["metadata"]["version"], header["sha256"] = digest[:12], digest
        return json.dumps(header)

    _rewrite_dualdiff_header(path, resign)
    assert verify_checkpoint(path)["architecture"]["name"] == "evl"
    with pytest.raises(CheckpointError, match="evl"):
        load_checkpoint(path)


def test_edited_architecture_is_refused(model, tmp_path):
    path = tmp_path / "m.safetensors"
    save_checkpoint(model, path)
    _rewrite_dualdiff_header(path, lambda s: s.replace('"mlp"', '"evl"'))
    with pytest.raises(CheckpointError, match="altered"):
        load_checkpoint(path)


def test_missing_file_names_the_fix(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "none.safetensors")


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "pickle.safetensors"
    path.write_bytes(b"\x80\x04\x95" + b"\x00" * 64)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
