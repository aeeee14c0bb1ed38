"""Rank workers for test_distributed.py (spawned processes import them from here)."""
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from dualdiff_ros.diffusion.cluster import Cluster
from dualdiff_ros.diffusion.model import DiffusionModel
from dualdiff_ros.diffusion.normalizer import Normalizer
from dualdiff_ros.diffusion.schedules import NoiseSchedule
from dualdiff_ros.diffusion.shards import ShardRows, ShardSet, ShardWriter
from dualdiff_ros.diffusion.train_state import StateFile
from dualdiff_ros.diffusion.training import TrainConfig, run_training, train
from dualdiff_ros.fleet import fit_normalizers

ARCH = {"name": "mlp", "width": 32, "depth": 2}
SCHEDULE = {"kind": "linear", "num_steps": 20}
CONFIG = dict(epochs=4, batch_size=64, lr=3e-3, step_epochs=2, progress=False, seed=3)


def tiny_data(n: int = 512, seed: int = 0):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(n, 3))
    return c, c[:, :2] + 0.3 * rng.normal(size=(n, 2))


def write_tiny_shards(path: Path, n: int = 512) -> ShardSet:
    c, y = tiny_data(n)
    writer = ShardWriter(path, rows_per_shard=200)  # 200, 200, 112: batches cross shard borders
    writer.append(conditions=c, targets=y, row=np.arange(n))
    return writer.close()


def fresh_model(target_norm, cond_norm) -> DiffusionModel:
    torch.manual_seed(0)
    return DiffusionModel.create(ARCH, NoiseSchedule(**SCHEDULE), target_norm, cond_norm, {}, True)


class RecordingRows(ShardRows):
    """ShardRows that checks the reader returns the rows asked for, and records them."""

    def __init__(self, shards, model):
        super().__init__(shards, model)
        self.asked = []

    def batch(self, idx):
        rows = idx.numpy()
        assert np.array_equal(self.shards.read(rows, "row"), rows)
        self.asked.append(rows.copy())
        return super().batch(idx)


def train_both(cluster: Cluster, shard_dir: Path, out: Path, config: dict = CONFIG) -> None:
    """Train in memory (train) and from shards (run_training), write weights, losses and rows of this rank."""
    c, y = (v.astype(np.float32).astype(np.float64) for v in tiny_data())  # what the shards hold
    memory = fresh_model(Normalizer.fit(y - c[:, :2]), Normalizer.fit(c))
    r_mem = train(memory, c, y, TrainConfig(**config), cluster=cluster)
    shards = ShardSet(shard_dir)
    target_norm, cond_norm, _ = fit_normalizers(shards, True, cluster)
    sharded = fresh_model(target_norm, cond_norm)
    rows = RecordingRows(shards, sharded)
    r_sh = run_training(sharded, rows, TrainConfig(**config), shards.data_sha256, cluster=cluster)
    tag = f"rank{cluster.rank}_of{cluster.world_size}"
    save_file({f"memory.{k}": v.contiguous() for k, v in memory.denoiser.state_dict().items()}
              | {f"shards.{k}": v.contiguous() for k, v in sharded.denoiser.state_dict().items()},
              str(out / f"{tag}.safetensors"))
    np.save(out / f"{tag}_rows.npy", np.stack(rows.asked))
    (out / f"{tag}.json").write_text(json.dumps({"memory": r_mem.losses, "shards": r_sh.losses,
                                                 "metadata": sharded.metadata["training"][-1]}))


def rank_worker(rank: int, world: int, port: int, shard_dir: str, out: str) -> None:
    torch.set_num_threads(1)
    cluster = Cluster.start("cpu", f"tcp://127.0.0.1:{port}", rank, world)
    try:
        train_both(cluster, Path(shard_dir), Path(out))
    finally:
        cluster.close()


def killed_run(state_path: str, kill_at_step: int, threads: int) -> None:
    """Train with a state every 5 steps and kill -9 this process from inside at `kill_at_step`."""
    import os
    import signal

    torch.set_num_threads(threads)  # the parent's: float sums depend on how a matmul is split
    c, y = tiny_data(128)
    model = fresh_model(Normalizer.fit(y - c[:, :2]), Normalizer.fit(c))

    def on_step(step, total, loss):
        if step >= kill_at_step:
            os.kill(os.getpid(), signal.SIGKILL)

    train(model, c, y, TrainConfig(**{**CONFIG, "batch_size": 32, "epochs": 6}), on_step=on_step,
          state=StateFile(state_path, every=5))
