"""The processes that train one model together (torch.distributed), or one process alone.

One process is a Cluster of world size 1: the training loop runs the same code and every
collective is a no-op, so `dualdiff train` and `torchrun -m dualdiff_ros.train` share it. Under
torchrun (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT in the environment) `Cluster.start`
joins the process group: gloo on CPU, NCCL on CUDA. Nothing here is pickled: the only things
sent between ranks are tensors.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist

DEVICES = ("auto", "cpu", "cuda")


@dataclass
class Cluster:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str = ""          # "" = no process group (one process)
    _owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes checkpoints, training states, logs and progress bars."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def start(cls, device: str = "auto", init_method: str | None = None, rank: int | None = None,
              world_size: int | None = None) -> "Cluster":
        """Join the process group torchrun describes (or the one given); world size 1 starts none."""
        if device not in DEVICES:
            raise ValueError(f"device {device!r}: use one of {DEVICES}")
        world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else int(world_size)
        rank = int(os.environ.get("RANK", 0)) if rank is None else int(rank)
        local_rank = int(os.environ.get("LOCAL_RANK", rank if init_method else 0))
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda":
            if not torch.cuda.is_available():
                raise ValueError("--device cuda: torch sees no CUDA device here; use --device cpu or auto")
            torch.cuda.set_device(local_rank % torch.cuda.device_count())
            dev = torch.device("cuda", torch.cuda.current_device())
        else:
            dev = torch.device("cpu")
        if world_size <= 1:
            return cls(0, 1, 0, dev)
        backend = "nccl" if dev.type == "cuda" else "gloo"
        owns = not dist.is_initialized()
        if owns:
            dist.init_process_group(backend, init_method=init_method or "env://", rank=rank, world_size=world_size,
                                    **({"device_id": dev} if dev.type == "cuda" else {}))
        return cls(dist.get_rank(), dist.get_world_size(), local_rank, dev, backend, owns)

    def close(self) -> None:
        if self._owns_group and dist.is_initialized():
            dist.destroy_process_group()
        self._owns_group = False

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a tensor over ranks (itself in one process)."""
        if not self.distributed:
            return value
        out = value.detach().clone()
        dist.all_reduce(out)
        return out / self.world_size

    def broadcast(self, value: torch.Tensor) -> torch.Tensor:
        """Rank 0's tensor, on every rank (same shape and dtype everywhere)."""
        if not self.distributed:
            return value
        out = value.detach().clone().to(self.device)
        dist.broadcast(out, src=0)
        return out.to(value.device)

    def all_equal(self, value: torch.Tensor) -> bool:
        """Whether every rank holds exactly this tensor (a cheap consistency check)."""
        if not self.distributed:
            return True
        low, high = value.detach().clone().to(self.device), value.detach().clone().to(self.device)
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        return bool(torch.equal(low, high))

    def share(self, global_batch: int) -> slice:
        """This rank's rows of each global batch; the batch must split evenly so every rank's mean weighs the same."""
        if global_batch % self.world_size:
            raise ValueError(f"global batch {global_batch} does not split evenly over {self.world_size} processes: "
                             "pick a batch size that is a multiple of the number of processes")
        local = global_batch // self.world_size
        return slice(self.rank * local, (self.rank + 1) * local)

    def wrap(self, net: torch.nn.Module) -> torch.nn.Module:
        """DistributedDataParallel around `net` (gradients averaged at every backward), or `net` itself."""
        if not self.distributed:
            return net
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(net, device_ids=ids)


def share_normalizer(cluster: Cluster, normalizer):
    """Rank 0's fitted Normalizer on every rank (sent as one float64 tensor, never pickled)."""
    if normalizer is None or not cluster.distributed:
        return normalizer
    from .normalizer import Normalizer

    packed = cluster.broadcast(torch.as_tensor(np.concatenate([normalizer.low, normalizer.high])))
    low, high = packed.numpy().reshape(2, -1)
    return Normalizer(low, high)
