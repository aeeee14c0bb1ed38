"""Noise-prediction networks eps(y_t, t, c), selectable by name for every model.

All take the noisy target y_t [B, target_dim], integer timesteps t [B] and the condition
c [B, cond_dim] (cond_dim may be 0 for unconditional 2-D data). Noise lives only on y;
the condition passes through unchanged (thesis §3.2.2).

- "mlp": a plain conditional MLP with a learned time embedding; small and fast.
- "resmlp": the 2-D template baseline of the DualDiff paper (sinusoidal embeddings of
  time and of every input coordinate, residual MLP).
- "dual_expert": the DualDiff gated pair of experts, eps = g*e1 + (1-g)*e2, with an
  optional diversity loss.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class SinusoidalEmbedding(nn.Module):
    """Fixed sin/cos features of a scalar; `scale` stretches the input (25 for coordinates)."""

    def __init__(self, size: int, scale: float = 1.0):
        super().__init__()
        self.size = size
        self.scale = scale
        half = size // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / max(half - 1, 1))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        angles = (x.float() * self.scale).unsqueeze(-1) * self.freqs
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


class ConditionalMLP(nn.Module):
    """[y_t, c, emb(t)] -> residual SiLU MLP -> eps. The default for the robot domains."""

    def __init__(self, target_dim: int, cond_dim: int, width: int = 256, depth: int = 4,
                 time_embedding: int = 64, num_steps: int = 100):
        super().__init__()
        self.num_steps = num_steps
        self.time_embed = nn.Sequential(SinusoidalEmbedding(time_embedding), nn.Linear(time_embedding, width),
                                        nn.SiLU())
        self.input = nn.Linear(target_dim + cond_dim, width)
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.SiLU(),
                                                  nn.Linear(width, width)) for _ in range(depth))
        self.head = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, target_dim))

    def forward(self, y: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.input(torch.cat([y, c], dim=-1)) + self.time_embed(t)
        for block in self.blocks:
            h = h + block(h)
        return self.head(h)


class PairedMLP:
    """Two ConditionalMLPs of one shape run as one network: each layer is one batched matmul.

    Composition evaluates the general and the specialized expert on the same noisy batch at
    every step. Their layers are small, so each costs mostly per-op overhead; stacking the two
    experts' weights halves the number of ops. Inference only: weights are copied at creation.
    """

    def __init__(self, a: ConditionalMLP, b: ConditionalMLP):
        shapes = [[tuple(p.shape) for p in m.parameters()] for m in (a, b)]
        if type(a) is not ConditionalMLP or type(b) is not ConditionalMLP or shapes[0] != shapes[1]:
            raise ValueError("PairedMLP needs two ConditionalMLPs of the same shape")
        self.sinusoid = a.time_embed[0]
        self.time = self._linear(a.time_embed[1], b.time_embed[1])
        self.input = self._linear(a.input, b.input)
        self.blocks = [(self._norm(x[0], y[0]), self._linear(x[1], y[1]), self._linear(x[3], y[3]))
                       for x, y in zip(a.blocks, b.blocks)]
        self.head = (self._norm(a.head[0], b.head[0]), self._linear(a.head[2], b.head[2]))

    @staticmethod
    def _linear(la: nn.Linear, lb: nn.Linear):
        weight = torch.stack([la.weight.detach(), lb.weight.detach()]).transpose(1, 2).contiguous()
        return weight, torch.stack([la.bias.detach(), lb.bias.detach()]).unsqueeze(1)

    @staticmethod
    def _norm(na: nn.LayerNorm, nb: nn.LayerNorm):
        return (torch.stack([na.weight.detach(), nb.weight.detach()]).unsqueeze(1),
                torch.stack([na.bias.detach(), nb.bias.detach()]).unsqueeze(1), na.normalized_shape, na.eps)

    @staticmethod
    def _apply_linear(x, layer):
        weight, bias = layer
        return torch.baddbmm(bias, x, weight)

    @staticmethod
    def _apply_norm(x, norm):
        weight, bias, shape, eps = norm
        return torch.nn.functional.layer_norm(x, shape, eps=eps) * weight + bias

    def __call__(self, y: torch.Tensor, t: torch.Tensor, c_a: torch.Tensor, c_b: torch.Tensor):
        """(eps_a, eps_b) for one noisy batch y [B, d] and each model's condition [B, c]."""
        x = torch.stack([torch.cat([y, c_a], dim=-1), torch.cat([y, c_b], dim=-1)])
        time = self.sinusoid(t).expand(2, -1, -1)
        h = self._apply_linear(x, self.input) + torch.nn.functional.silu(self._apply_linear(time, self.time))
        for norm, first, second in self.blocks:
            z = torch.nn.functional.silu(self._apply_linear(self._apply_norm(h, norm), first))
            h = h + self._apply_linear(z, second)
        norm, out = self.head
        eps = self._apply_linear(torch.nn.functional.silu(self._apply_norm(h, norm)), out)
        return eps[0], eps[1]


class _EmbeddedInput(nn.Module):
    """The template's input: 128-d sinusoids of t (scale 1) and of each coordinate (scale 25)."""

    def __init__(self, in_dim: int, embedding: int = 128):
        super().__init__()
        self.time = SinusoidalEmbedding(embedding, 1.0)
        self.coords = SinusoidalEmbedding(embedding, 25.0)
        self.out_dim = embedding * (in_dim + 1)

    def forward(self, y, t, c):
        x = torch.cat([y, c], dim=-1)
        parts = [self.coords(x[:, i]) for i in range(x.shape[1])] + [self.time(t)]
        return torch.cat(parts, dim=-1)


class _ResidualBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.ff = nn.Linear(width, width)

    def forward(self, x):
        return x + self.ff(torch.relu(x))


def _residual_trunk(in_dim: int, width: int, depth: int, out_dim: int, extra_layer: int = 0) -> nn.Sequential:
    layers = [nn.Linear(in_dim, width), *[_ResidualBlock(width) for _ in range(depth)], nn.ReLU()]
    if extra_layer:
        layers += [nn.Linear(width, extra_layer), nn.ReLU()]
    layers.append(nn.Linear(extra_layer or width, out_dim))
    return nn.Sequential(*layers)


class ResidualMLP(nn.Module):
    """The DualDiff template baseline: Linear(384->256), 3 blocks x + Linear(ReLU(x)), ReLU, Linear."""

    def __init__(self, target_dim: int, cond_dim: int, width: int = 256, depth: int = 3,
                 embedding: int = 128, num_steps: int = 100):
        super().__init__()
        self.embed = _EmbeddedInput(target_dim + cond_dim, embedding)
        self.net = _residual_trunk(self.embed.out_dim, width, depth, target_dim)

    def forward(self, y, t, c):
        return self.net(self.embed(y, t, c))


class DualExpertDenoiser(nn.Module):
    """DualDiff: a sigmoid gate mixes two residual experts, eps = g*e1 + (1-g)*e2.

    Each expert is the baseline trunk with an extra `expert_head`-wide layer before its
    head. With diversity_weight > 0, `auxiliary_loss()` returns minus the weighted mean
    pairwise distance of the batch's predicted noise vectors (the paper's diversity loss).
    """

    def __init__(self, target_dim: int, cond_dim: int, width: int = 256, depth: int = 3,
                 embedding: int = 128, expert_head: int = 128, gate_widths=(256, 128),
                 diversity_weight: float = 0.0, num_steps: int = 100):
        super().__init__()
        if diversity_weight < 0:
            raise ValueError(f"diversity_weight={diversity_weight} must be >= 0")
        self.embed = _EmbeddedInput(target_dim + cond_dim, embedding)
        self.expert1 = _residual_trunk(self.embed.out_dim, width, depth, target_dim, expert_head)
        self.expert2 = _residual_trunk(self.embed.out_dim, width, depth, target_dim, expert_head)
        gate, prev = [], self.embed.out_dim
        for w in gate_widths:
            gate += [nn.Linear(prev, w), nn.ReLU()]
            prev = w
        self.gate = nn.Sequential(*gate, nn.Linear(prev, 1), nn.Sigmoid())
        self.diversity_weight = float(diversity_weight)
        self.last_gate: torch.Tensor | None = None
        self._last_eps: torch.Tensor | None = None

    def forward(self, y, t, c):
        h = self.embed(y, t, c)
        g = self.gate(h)
        eps = g * self.expert1(h) + (1 - g) * self.expert2(h)
        self.last_gate = g.detach()
        # Kept only for the next auxiliary_loss() call, which takes it: a held non-leaf tensor
        # would make the module impossible to deepcopy (EMA copy, clone, fine-tuning).
        self._last_eps = eps if self.diversity_weight > 0 and torch.is_grad_enabled() else None
        return eps

    def auxiliary_loss(self) -> torch.Tensor:
        eps, self._last_eps = self._last_eps, None
        if self.diversity_weight == 0 or eps is None:
            return torch.zeros(())
        return -self.diversity_weight * torch.pdist(eps).mean()


ARCHITECTURES = {"mlp": ConditionalMLP, "resmlp": ResidualMLP, "dual_expert": DualExpertDenoiser}


def build_denoiser(architecture: str, target_dim: int, cond_dim: int, **kwargs) -> nn.Module:
    """Build a denoiser by name; unknown names and options fail with the valid choices."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}: use one of {sorted(ARCHITECTURES)}")
    try:
        return ARCHITECTURES[architecture](target_dim, cond_dim, **kwargs)
    except TypeError as err:
        raise ValueError(f"bad options for architecture {architecture!r}: {err}") from err


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
