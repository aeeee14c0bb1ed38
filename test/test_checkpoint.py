"""Checkpoints round-trip exactly and refuse tampered or truncated files."""
import json

import numpy as np
import pytest
import torch

from dualdiff_ros.diffusion.checkpoint import CheckpointError, load_checkpoint, read_header, save_checkpoint
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


def test_truncated_file_is_refused(model, tmp_path):
    path = tmp_path / "m.safetensors"
    save_checkpoint(model, path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated|corrupt"):
        load_checkpoint(path)


def test_foreign_header_is_refused(model, tmp_path):
    path = tmp_path / "m.safetensors"
    save_checkpoint(model, path)
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    header["__metadata__"]["dualdiff"] = header["__metadata__"]["dualdiff"].replace('"mlp"', '"evl"')
    blob = json.dumps(header, separators=(",", ":")).encode()
    assert len(blob) <= n
    path.write_bytes(raw[:8] + blob.ljust(n) + raw[8 + n:])
    with pytest.raises(CheckpointError, match="evl"):
        load_checkpoint(path)


def test_missing_file_names_the_fix(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "none.safetensors")


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "pickle.safetensors"
    path.write_bytes(b"\x80\x04\x95" + b"\x00" * 64)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
