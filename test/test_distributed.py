"""The distributed training path: 2 gloo ranks = 1 process at one global batch; resume; shards.

Ranks are spawned inside the test (torch.multiprocessing, tcp://127.0.0.1 on a free port).
"""
import json
import multiprocessing
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from distributed_support import (
    CONFIG,
    fresh_model,
    killed_run,
    rank_worker,
    tiny_data,
    train_both,
    write_tiny_shards,
)
from safetensors.torch import load_file

from dualdiff_ros.diffusion.cluster import Cluster
from dualdiff_ros.diffusion.normalizer import Normalizer
from dualdiff_ros.diffusion.shards import ShardSet, ShardWriter
from dualdiff_ros.diffusion.train_state import StateFile, TrainStateError, load_state
from dualdiff_ros.diffusion.training import TrainConfig, data_digest, train


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One 2-rank gloo run and one single-process run of the same training, in memory and from shards."""
    root = tmp_path_factory.mktemp("dist")
    shards = write_tiny_shards(root / "shards")
    torch.multiprocessing.spawn(rank_worker, args=(2, _free_port(), str(shards.root), str(root)), nprocs=2, join=True)
    train_both(Cluster(), shards.root, root)
    return root, shards


def _weights(root, tag):
    return load_file(str(root / f"{tag}.safetensors"))


def test_two_gloo_ranks_end_with_identical_weights(runs):
    root, _ = runs
    a, b = _weights(root, "rank0_of2"), _weights(root, "rank1_of2")
    assert a.keys() == b.keys() and len(a) > 0
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_two_ranks_match_one_process_with_the_same_global_batch(runs):
    root, _ = runs
    two, one = _weights(root, "rank0_of2"), _weights(root, "rank0_of1")
    worst = max((two[k] - one[k]).abs().max().item() for k in one)
    assert worst < 1e-4, worst
    moved = max((one[k] - _weights(root, "rank0_of1")[k]).abs().max().item() for k in one)
    assert moved == 0.0
    losses2, losses1 = (json.loads((root / f"{t}.json").read_text()) for t in ("rank0_of2", "rank0_of1"))
    for path in ("memory", "shards"):
        np.testing.assert_allclose(losses2[path], losses1[path], rtol=1e-5)
    assert losses2["metadata"]["world_size"] == 2 and losses2["metadata"]["global_batch"] == 64
    assert losses2["metadata"]["data_sha256"] == runs[1].data_sha256


def test_one_process_from_shards_equals_in_memory_training(runs):
    root, _ = runs
    w = _weights(root, "rank0_of1")
    for name in [k for k in w if k.startswith("memory.")]:
        assert torch.equal(w[name], w["shards." + name[len("memory."):]]), name


def test_ranks_read_disjoint_rows_and_each_row_once_per_epoch(runs):
    root, shards = runs
    r0, r1 = np.load(root / "rank0_of2_rows.npy"), np.load(root / "rank1_of2_rows.npy")
    single = np.load(root / "rank0_of1_rows.npy")
    steps_per_epoch = len(shards) // CONFIG["batch_size"]
    assert r0.shape == r1.shape == (CONFIG["epochs"] * steps_per_epoch, CONFIG["batch_size"] // 2)
    # The two ranks' halves of each step are the single process's global batch, in order.
    assert np.array_equal(np.concatenate([r0, r1], axis=1), single)
    for e in range(CONFIG["epochs"]):
        part = slice(e * steps_per_epoch, (e + 1) * steps_per_epoch)
        a, b = r0[part].ravel(), r1[part].ravel()
        assert not set(a) & set(b)
        assert np.array_equal(np.sort(np.concatenate([a, b])), np.arange(len(shards)))  # 512 rows, 8 x 64


def test_shard_set_digest_is_the_in_memory_digest_and_damage_is_found(tmp_path):
    shards = write_tiny_shards(tmp_path / "s")
    c, y = tiny_data()
    assert shards.data_sha256 == data_digest(c.astype(np.float32), y.astype(np.float32))
    assert len(shards.manifest["shards"]) == 3
    idx = np.array([511, 0, 199, 200, 3])
    np.testing.assert_array_equal(shards.read(idx, "targets"), y[idx].astype(np.float32))
    shards.verify()
    path = tmp_path / "s" / shards.manifest["shards"][1]["files"]["targets"]["file"]
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="does not match its SHA-256"):
        ShardSet(tmp_path / "s").verify()
    (tmp_path / "s" / "manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match="not a \\(complete\\) shard set"):
        ShardSet(tmp_path / "s")
    with pytest.raises(ValueError, match="finite"):
        ShardWriter(tmp_path / "bad").append(conditions=np.full((2, 3), np.nan), targets=np.zeros((2, 2)))


def _model_128():
    c, y = tiny_data(128)
    return c, y, fresh_model(Normalizer.fit(y - c[:, :2]), Normalizer.fit(c))


RESUME_CONFIG = {**CONFIG, "batch_size": 32, "epochs": 6}  # 4 steps an epoch, 24 in all


def test_resume_after_an_interruption_reproduces_the_uninterrupted_weights(tmp_path):
    c, y, whole = _model_128()
    uninterrupted = train(whole, c, y, TrainConfig(**RESUME_CONFIG))
    _, _, cut = _model_128()

    def stop(step, total, loss):
        if step == 16:
            raise KeyboardInterrupt

    state = StateFile(tmp_path / "state.safetensors", every=5)
    with pytest.raises(KeyboardInterrupt):
        train(cut, c, y, TrainConfig(**RESUME_CONFIG), on_step=stop, state=state)
    assert load_state(state.path)[0]["step"] == 15  # the steps after it are taken again
    _, _, resumed = _model_128()
    result = train(resumed, c, y, TrainConfig(**RESUME_CONFIG), state=StateFile(state.path, every=5, resume=True))
    for (name, a), b in zip(whole.denoiser.state_dict().items(), resumed.denoiser.state_dict().values()):
        assert torch.equal(a, b), name
    assert result.losses == uninterrupted.losses
    assert resumed.metadata["training"][-1]["resumed_at_step"] == 15
    with pytest.raises(TrainStateError, match="lr"):
        train(_model_128()[2], c, y, TrainConfig(**{**RESUME_CONFIG, "lr": 1e-2}),
              state=StateFile(state.path, resume=True))


def test_resume_after_kill_9_reproduces_the_uninterrupted_weights(tmp_path):
    state_path = tmp_path / "state.safetensors"
    child = multiprocessing.get_context("spawn").Process(target=killed_run,
                                                         args=(str(state_path), 12, torch.get_num_threads()))
    child.start()
    child.join(60)
    assert child.exitcode == -9
    assert load_state(state_path)[0]["step"] == 10
    c, y, whole = _model_128()
    train(whole, c, y, TrainConfig(**RESUME_CONFIG))
    _, _, resumed = _model_128()
    train(resumed, c, y, TrainConfig(**RESUME_CONFIG), state=StateFile(state_path, resume=True))
    for (name, a), b in zip(whole.denoiser.state_dict().items(), resumed.denoiser.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_damaged_training_state_is_refused(tmp_path):
    c, y, model = _model_128()
    path = tmp_path / "state.safetensors"
    train(model, c, y, TrainConfig(**{**RESUME_CONFIG, "epochs": 1}), state=StateFile(path))
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(TrainStateError, match="SHA-256"):
        load_state(path)


def test_a_global_batch_that_does_not_split_evenly_is_refused():
    with pytest.raises(ValueError, match="multiple of the number of processes"):
        Cluster(rank=0, world_size=3).share(64)


def test_navigate_data_shards_are_the_same_for_any_number_of_workers(tmp_path):
    from dualdiff_ros.fleet import write_navigation_shards
    from dualdiff_ros.recipes import recipe

    quick = recipe("quick", "navigate_to")
    one = write_navigation_shards(tmp_path / "one", 4, quick, workers=1, chunk=2, rows_per_shard=40, progress=False)
    two = write_navigation_shards(tmp_path / "two", 4, quick, workers=2, chunk=2, rows_per_shard=40, progress=False)
    assert len(one) > 40 and one.data_sha256 == two.data_sha256
    assert one.column_dim("conditions") == 10 + 1 + 8 * 8
    flags = one.read(np.arange(len(one)), "conditions")[:, 10]
    assert 0 < flags.mean() < 1  # some rows see the map, some (map dropout) do not
    assert one.meta["tasks"] == 4 and one.meta["points"] == len(one)


def test_python_m_train_under_torchrun_writes_a_two_process_prior(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "dualdiff_ros.train", "--domain", "cabinet", "--recipe", "quick", "--model-dir", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    from dualdiff_ros.diffusion.checkpoint import load_checkpoint
    general = load_checkpoint(tmp_path / "cabinet" / "general.safetensors")
    record = general.metadata["training"][-1]
    assert (record["world_size"], record["global_batch"], record["backend"]) == (2, 256, "gloo")
    assert load_checkpoint(tmp_path / "cabinet" / "specialized.safetensors").metadata["role"] == "specialized"
    assert done.stdout.count("[train] cabinet: general prior") == 1  # rank 0 alone logs


def test_the_command_line_prior_of_two_processes_is_the_one_process_prior(tmp_path):
    """Two torchrun ranks and one plain process end at the same prior from the same shards.

    Through the real entry points, data and initial weights included: same seed, same global batch.
    """
    from dualdiff_ros.diffusion.checkpoint import load_checkpoint
    from dualdiff_ros.fleet import write_navigation_shards
    from dualdiff_ros.recipes import recipe

    write_navigation_shards(tmp_path / "shards", 20, recipe("quick", "navigate_to"), workers=1, chunk=10,
                            progress=False)
    args = ["-m", "dualdiff_ros.train", "--domain", "navigate_to", "--recipe", "quick", "--data",
            str(tmp_path / "shards"), "--state-every", "0", "--model-dir"]
    one = subprocess.run([sys.executable, *args, str(tmp_path / "one")], capture_output=True, text=True, timeout=240)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          *args, str(tmp_path / "two")], capture_output=True, text=True, timeout=240)
    assert one.returncode == 0 and two.returncode == 0, (one.stderr + two.stderr)[-3000:]
    a, b = (load_checkpoint(tmp_path / run / "navigate_to" / "general.safetensors") for run in ("one", "two"))
    assert [a.metadata["training"][-1][k] for k in ("world_size", "global_batch")] == [1, 256]
    assert [b.metadata["training"][-1][k] for k in ("world_size", "global_batch")] == [2, 256]
    for (name, x), y in zip(a.denoiser.state_dict().items(), b.denoiser.state_dict().values()):
        torch.testing.assert_close(x, y, atol=1e-4, rtol=0, msg=name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_training_matches_cpu():
    c, y, on_cpu = _model_128()
    _, _, on_gpu = _model_128()
    train(on_cpu, c, y, TrainConfig(**RESUME_CONFIG))
    train(on_gpu, c, y, TrainConfig(**RESUME_CONFIG), cluster=Cluster.start("cuda"))
    for (name, a), b in zip(on_cpu.denoiser.state_dict().items(), on_gpu.denoiser.state_dict().values()):
        assert b.device.type == "cpu"
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3), name
