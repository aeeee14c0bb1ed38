"""Training from scratch and fine-tuning, with EMA weights, seeds and a loss curve.

The loss is the usual eps-prediction MSE on the target only; the condition is never
noised. A denoiser may add its own `auxiliary_loss()` (DualDiff's diversity loss).

Guards: non-finite conditions or targets (raw, or after normalization to float32) are a
ValueError before any step; a non-finite batch loss, or non-finite weights at the end, raise
TrainingDiverged. Either way the model is left unsaved (callers save only after `train`
returns), so an absurd observation cannot turn into a served NaN model.
"""
from __future__ import annotations

import copy
import hashlib
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .cluster import Cluster
from .lora import add_lora, merge_lora
from .model import DiffusionModel
from .progress import progress_bar
from .sampling import target_moments
from .train_state import StateFile, check_compatible, load_optimizer, load_state, optimizer_tensors, save_state

DIVERGED_HINT = "an observation may be absurd: list and forget it"
_OVERFLOW = " (the raw value is too large for float32 once normalized)"
_WARMED_UP = False  # warm_up_training has run in this process


class TrainingDiverged(RuntimeError):
    """Training produced a non-finite loss or non-finite weights; nothing should be saved."""


@dataclass
class TrainConfig:
    """Optimisation settings. Give `epochs` (thesis style) or `steps` (template style)."""

    epochs: int = 100
    steps: int = 0
    batch_size: int = 2048
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_schedule: str = "step"       # "step" (StepLR gamma every step_epochs) or "cosine" or "constant"
    step_epochs: int = 10
    gamma: float = 0.9
    ema_decay: float = 0.995
    ema_every: int = 1
    grad_clip: float = 1.0
    seed: int = 0
    progress: bool = True
    description: str = "train"

    def validate(self):
        if self.epochs < 0 or self.steps < 0 or (self.epochs == 0 and self.steps == 0):
            raise ValueError(f"epochs={self.epochs}, steps={self.steps}: give a positive number of epochs or steps")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be >= 1")
        if not 0 < self.lr < 1:
            raise ValueError(f"lr={self.lr} must be in (0, 1)")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay={self.ema_decay} must be in [0, 1)")
        if self.lr_schedule not in ("step", "cosine", "constant"):
            raise ValueError(f"lr_schedule={self.lr_schedule!r}: use 'step', 'cosine' or 'constant'")


@dataclass
class TrainResult:
    losses: list = field(default_factory=list)        # mean loss per epoch (or per 100 steps)
    steps: int = 0
    seconds: float = 0.0
    data_sha256: str = ""


def data_digest(conditions: np.ndarray | None, targets: np.ndarray) -> str:
    h = hashlib.sha256(np.ascontiguousarray(targets, dtype=np.float64).tobytes())
    if conditions is not None:
        h.update(np.ascontiguousarray(conditions, dtype=np.float64).tobytes())
    return h.hexdigest()


def train(model: DiffusionModel, conditions: np.ndarray | None, targets: np.ndarray,
          config: TrainConfig, on_step=None, cluster: Cluster | None = None,
          state: StateFile | None = None) -> TrainResult:
    """Train `model` in place; its denoiser ends holding the EMA weights.

    `on_step(step, total, loss)` is called every epoch (progress for a ROS topic). Every rank of
    `cluster` passes the same data; each trains on its share of every global batch (run_training).
    """
    config.validate()
    targets = np.asarray(targets, dtype=np.float64)
    if targets.ndim != 2 or targets.shape[1] != model.target_dim or len(targets) == 0:
        raise ValueError(f"targets must be [n>0, {model.target_dim}], got {targets.shape}")
    _check_finite("targets", targets)
    if conditions is not None and (model.condition_dim or model.relative_targets):
        conditions = np.asarray(conditions, dtype=np.float64)
        _check_finite("conditions", conditions)
    y_all = model.encode_targets(conditions, targets)
    _check_finite("normalized targets", y_all.numpy(), _OVERFLOW)
    # Recorded once, from the data a model is first trained on (a fine-tune keeps its prior's).
    model.metadata.setdefault("target_moments", target_moments(y_all))
    if model.condition_dim:
        c_all = model.normalize_conditions(conditions)
        _check_finite("normalized conditions", c_all.numpy(), _OVERFLOW)
    else:
        c_all = torch.zeros(len(y_all), 0)
    digest = data_digest(conditions if model.condition_dim else None, targets)
    return run_training(model, TensorRows(y_all, c_all), config, digest, on_step, cluster, state)


class TensorRows:
    """Normalized training rows held in memory: batch(indices) -> (y0, c)."""

    def __init__(self, y: torch.Tensor, c: torch.Tensor):
        self.y, self.c = y, c

    def __len__(self) -> int:
        return len(self.y)

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.y[idx], self.c[idx]


def run_training(model: DiffusionModel, rows, config: TrainConfig, data_sha256: str, on_step=None,
                 cluster: Cluster | None = None, state: StateFile | None = None) -> TrainResult:
    """The training loop, for one process or every rank of a torch.distributed group.

    `rows.batch(indices)` gives normalized (y0, c) of those rows (TensorRows, or shards read
    lazily). Every rank draws the same permutation, timesteps and noise for the whole global
    batch from one seeded generator and trains on its own slice of it (Cluster.share);
    DistributedDataParallel averages the gradients, so N ranks with equal slices follow one
    process with the same global batch up to float reduction order, and the EMA, clipped
    gradients and optimizer steps are the same on every rank. With `state`, rank 0 writes the
    resumable state every `state.every` steps and at the end; `state.resume` continues from it.
    """
    config.validate()
    cluster = cluster or Cluster()
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    n = len(rows)
    batch = min(config.batch_size, n)
    mine = cluster.share(batch)
    steps_per_epoch = max(1, n // batch)
    total = config.steps or config.epochs * steps_per_epoch
    net = model.denoiser
    net.to(cluster.device).train()
    ema = copy.deepcopy(net).eval()
    trainable = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    sched = _lr_scheduler(opt, config, total, steps_per_epoch)
    T = model.schedule.num_steps
    result = TrainResult(data_sha256=data_sha256)
    identity = {"config": asdict(config), "data_sha256": data_sha256, "num_examples": n, "global_batch": batch,
                "total_steps": total}
    perm = torch.randperm(n, generator=gen)
    cursor, first, window = 0, 0, []
    if state is not None and state.resume and state.path.exists():
        first, cursor, perm, window = _restore(state.path, identity, net, ema, opt, sched, gen, result)
        if cluster.is_main:
            print(f"[train] {config.description}: resuming from step {first}/{total} ({state.path})")
    start = time.perf_counter()
    wrapped = cluster.wrap(net)
    bar = progress_bar(range(first, total), desc=config.description, total=total, initial=first,
                       disable=not (config.progress and cluster.is_main), leave=False, mininterval=1.0)
    for step in bar:
        if cursor + batch > n:
            perm, cursor = torch.randperm(n, generator=gen), 0
        idx = perm[cursor:cursor + batch]
        cursor += batch
        t = torch.randint(0, T, (batch,), generator=gen)[mine]
        noise = torch.randn((batch, model.target_dim), generator=gen)[mine]
        y0, c = rows.batch(idx[mine])
        y_t = model.schedule.add_noise(y0, noise, t)  # on the CPU, where the schedule lives
        y_t, c, t, noise = (v.to(cluster.device) for v in (y_t, c, t, noise))
        loss = torch.nn.functional.mse_loss(wrapped(y_t, t, c), noise)
        if hasattr(net, "auxiliary_loss"):
            loss = loss + net.auxiliary_loss()
        value = cluster.mean(loss.detach()).item()  # the global batch's loss, on every rank
        if not np.isfinite(value):
            raise TrainingDiverged(f"{config.description}: loss is {value} at step {step + 1}/{total} "
                                   f"(epoch {step // steps_per_epoch + 1}); {DIVERGED_HINT}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip)
        opt.step()
        sched.step()
        if step % config.ema_every == 0:
            # Warm-up (as diffusers' EMAModel): early averages must not drag in the initial
            # weights, which for a fine-tune are the general prior's.
            updates = step // config.ema_every
            _ema_update(ema, net, min(config.ema_decay, (1 + updates) / (10 + updates)))
        window.append(value)
        if (step + 1) % steps_per_epoch == 0 or step + 1 == total:
            result.losses.append(float(np.mean(window)))
            window = []
            bar.set_postfix(loss=f"{result.losses[-1]:.4f}")
            if on_step is not None:
                on_step(step + 1, total, result.losses[-1])
        done = step + 1
        if state is not None and cluster.is_main and (done == total or (state.every and done % state.every == 0)):
            _save(state.path, identity, done, cursor, perm, window, net, ema, opt, sched, gen, result, cluster)
    bar.close()
    net.load_state_dict(ema.state_dict())
    net.to("cpu").eval()
    bad = _non_finite_weights(net)
    if bad:
        raise TrainingDiverged(f"{config.description}: weights {', '.join(bad[:3])} are not finite after "
                               f"{total} steps; {DIVERGED_HINT}")
    result.steps = total
    result.seconds = time.perf_counter() - start
    record = {**asdict(config), "data_sha256": result.data_sha256, "num_examples": n,
              "final_loss": result.losses[-1], "seconds": round(result.seconds, 2),
              "losses": [round(v, 6) for v in result.losses]}
    record.update(world_size=cluster.world_size, global_batch=batch)
    if cluster.distributed:
        record.update(backend=cluster.backend, device=cluster.device.type)
    if first:
        record["resumed_at_step"] = first
    model.metadata.setdefault("training", []).append(record)
    model.metadata["data_sha256"] = result.data_sha256
    return result


def _save(path, identity, done, cursor, perm, window, net, ema, opt, sched, gen, result, cluster) -> None:
    opt_json, opt_tensors = optimizer_tensors(opt)
    header = {**identity, "step": done, "cursor": cursor, "window": window, "losses": result.losses,
              "scheduler": sched.state_dict(), "optimizer": opt_json, "world_size": cluster.world_size}
    tensors = {**{f"net.{k}": v for k, v in net.state_dict().items()},
               **{f"ema.{k}": v for k, v in ema.state_dict().items()}, **opt_tensors,
               "perm": perm, "rng.batches": gen.get_state(), "rng.torch": torch.get_rng_state()}
    save_state(path, header, tensors)


def _restore(path, identity, net, ema, opt, sched, gen, result):
    header, tensors = load_state(path)
    check_compatible(path, header, identity)
    device = next(net.parameters()).device
    net.load_state_dict({k[4:]: v.to(device) for k, v in tensors.items() if k.startswith("net.")})
    ema.load_state_dict({k[4:]: v.to(device) for k, v in tensors.items() if k.startswith("ema.")})
    load_optimizer(opt, header["optimizer"], tensors)
    sched.load_state_dict(header["scheduler"])
    gen.set_state(tensors["rng.batches"])
    torch.set_rng_state(tensors["rng.torch"])
    result.losses = list(header["losses"])
    return int(header["step"]), int(header["cursor"]), tensors["perm"], list(header["window"])


def fine_tune(general: DiffusionModel, conditions, targets, config: TrainConfig,
              on_step=None, lora_rank: int = 0) -> tuple[DiffusionModel, TrainResult]:
    """A copy of `general` trained further on new data (few steps, lower LR); `general` is untouched.

    lora_rank > 0 trains only low-rank updates of each linear layer (merged afterwards).
    Raises ValueError (non-finite data) or TrainingDiverged like `train`.
    """
    tuned = general.clone()
    tuned.metadata = {k: v for k, v in general.metadata.items() if k not in ("version", "training")}
    tuned.metadata["fine_tuned_from"] = general.metadata.get("version", "")
    if lora_rank:
        add_lora(tuned.denoiser, lora_rank, float(lora_rank))
    result = train(tuned, conditions, targets, config, on_step)
    if lora_rank:
        merge_lora(tuned.denoiser)
        tuned.metadata["lora_rank"] = lora_rank
        bad = _non_finite_weights(tuned.denoiser)
        if bad:
            raise TrainingDiverged(f"{config.description}: weights {', '.join(bad[:3])} are not finite after "
                                   f"merging the LoRA updates; {DIVERGED_HINT}")
    return tuned, result


@torch.no_grad()
def evaluation_loss(model: DiffusionModel, conditions, targets, seed: int = 0, repeats: int = 4) -> float:
    """Held-out eps-MSE with fixed noise and timesteps, comparable across models."""
    gen = torch.Generator().manual_seed(seed)
    y0 = model.encode_targets(conditions, targets)
    c = model.normalize_conditions(conditions) if model.condition_dim else torch.zeros(len(y0), 0)
    total = 0.0
    for _ in range(repeats):
        t = torch.randint(0, model.schedule.num_steps, (len(y0),), generator=gen)
        noise = torch.randn(y0.shape, generator=gen)
        total += torch.nn.functional.mse_loss(model.denoiser(model.schedule.add_noise(y0, noise, t), t, c),
                                              noise).item()
    return total / repeats


def _check_finite(name: str, values: np.ndarray, detail: str = "") -> None:
    """ValueError naming the first non-finite entry (its first index is the observation's row)."""
    values = np.asarray(values)
    finite = np.isfinite(values)
    if not finite.all():
        where = tuple(int(i) for i in np.argwhere(~finite)[0])
        raise ValueError(f"{name}[{', '.join(map(str, where))}] is {values[where]}: "
                         f"every number must be finite{detail}; {DIVERGED_HINT}")


def _non_finite_weights(net: torch.nn.Module) -> list[str]:
    return [name for name, t in net.state_dict().items()
            if t.is_floating_point() and not bool(torch.isfinite(t).all())]


def _ema_update(ema: torch.nn.Module, net: torch.nn.Module, decay: float):
    with torch.no_grad():
        for pe, p in zip(ema.parameters(), net.parameters()):
            pe.mul_(decay).add_(p.detach(), alpha=1 - decay)
        for be, b in zip(ema.buffers(), net.buffers()):
            be.copy_(b)


def _lr_scheduler(opt, config: TrainConfig, total: int, steps_per_epoch: int):
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total, 1))
    if config.lr_schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, config.step_epochs * steps_per_epoch),
                                               gamma=config.gamma)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def warm_up_training() -> float:
    """Run torch's training machinery once (autograd, AdamW, gradient clipping) on a toy network; seconds taken.

    The first training of a process pays about 0.9 s of one-time set-up on top of its steps. On a
    robot that is the first retraining, and it holds up the answers the service gives meanwhile
    (0.4-1.0 s instead of 0.1-0.2 s, docs/notes/2026-12-05-places.md); the specialized node pays it
    when it is configured instead. Once per process: later calls return 0.
    """
    global _WARMED_UP
    if _WARMED_UP:
        return 0.0
    start = time.perf_counter()
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.SiLU(), torch.nn.Linear(16, 4))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    for _ in range(3):
        loss = net(torch.randn(32, 4)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
    _WARMED_UP = True
    return time.perf_counter() - start
