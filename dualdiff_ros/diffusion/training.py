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
from tqdm.auto import tqdm

from .lora import add_lora, merge_lora
from .model import DiffusionModel
from .sampling import target_moments

DIVERGED_HINT = "an observation may be absurd: list and forget it"
_OVERFLOW = " (the raw value is too large for float32 once normalized)"


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
          config: TrainConfig, on_step=None) -> TrainResult:
    """Train `model` in place; its denoiser ends holding the EMA weights.

    `on_step(step, total, loss)` is called every epoch (progress for a ROS topic).
    """
    config.validate()
    targets = np.asarray(targets, dtype=np.float64)
    if targets.ndim != 2 or targets.shape[1] != model.target_dim or len(targets) == 0:
        raise ValueError(f"targets must be [n>0, {model.target_dim}], got {targets.shape}")
    _check_finite("targets", targets)
    if conditions is not None and (model.condition_dim or model.relative_targets):
        conditions = np.asarray(conditions, dtype=np.float64)
        _check_finite("conditions", conditions)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    y_all = model.encode_targets(conditions, targets)
    _check_finite("normalized targets", y_all.numpy(), _OVERFLOW)
    # Recorded once, from the data a model is first trained on (a fine-tune keeps its prior's).
    model.metadata.setdefault("target_moments", target_moments(y_all))
    if model.condition_dim:
        c_all = model.normalize_conditions(conditions)
        _check_finite("normalized conditions", c_all.numpy(), _OVERFLOW)
    else:
        c_all = torch.zeros(len(y_all), 0)
    n = len(y_all)
    batch = min(config.batch_size, n)
    steps_per_epoch = max(1, n // batch)
    total = config.steps or config.epochs * steps_per_epoch
    net = model.denoiser
    net.train()
    ema = copy.deepcopy(net).eval()
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=config.lr,
                            weight_decay=config.weight_decay)
    sched = _lr_scheduler(opt, config, total, steps_per_epoch)
    T = model.schedule.num_steps
    result = TrainResult(data_sha256=data_digest(conditions if model.condition_dim else None, targets))
    start, window = time.perf_counter(), []
    bar = tqdm(range(total), desc=config.description, disable=not config.progress, leave=False, mininterval=1.0)
    perm = torch.randperm(n, generator=gen)
    cursor = 0
    for step in bar:
        if cursor + batch > n:
            perm, cursor = torch.randperm(n, generator=gen), 0
        idx = perm[cursor:cursor + batch]
        cursor += batch
        y0, c = y_all[idx], c_all[idx]
        t = torch.randint(0, T, (len(idx),), generator=gen)
        noise = torch.randn(y0.shape, generator=gen)
        y_t = model.schedule.add_noise(y0, noise, t)
        loss = torch.nn.functional.mse_loss(net(y_t, t, c), noise)
        if hasattr(net, "auxiliary_loss"):
            loss = loss + net.auxiliary_loss()
        value = loss.item()
        if not np.isfinite(value):
            raise TrainingDiverged(f"{config.description}: loss is {value} at step {step + 1}/{total} "
                                   f"(epoch {step // steps_per_epoch + 1}); {DIVERGED_HINT}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_([p for p in net.parameters() if p.requires_grad], config.grad_clip)
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
    net.load_state_dict(ema.state_dict())
    net.eval()
    bad = _non_finite_weights(net)
    if bad:
        raise TrainingDiverged(f"{config.description}: weights {', '.join(bad[:3])} are not finite after "
                               f"{total} steps; {DIVERGED_HINT}")
    result.steps = total
    result.seconds = time.perf_counter() - start
    model.metadata.setdefault("training", []).append(
        {**asdict(config), "data_sha256": result.data_sha256, "num_examples": n,
         "final_loss": result.losses[-1], "seconds": round(result.seconds, 2),
         "losses": [round(v, 6) for v in result.losses]})
    model.metadata["data_sha256"] = result.data_sha256
    return result


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
