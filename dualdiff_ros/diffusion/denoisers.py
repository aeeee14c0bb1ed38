"""Noise-prediction networks eps(y_t, t, c), selectable by name for every model.

All take the noisy target y_t [B, target_dim], integer timesteps t [B] and the condition
c [B, cond_dim] (cond_dim may be 0 for unconditional 2-D data). Noise lives only on y;
the condition passes through unchanged (thesis §3.2.2).

- "mlp": a plain conditional MLP with a learned time embedding; small and fast.
- "resmlp": the 2-D template baseline of the DualDiff paper (sinusoidal embeddings of
  time and of every input coordinate, residual MLP).
- "dual_expert": the DualDiff gated pair of experts, eps = g*e1 + (1-g)*e2, with an
  optional diversity loss.
- "set_mlp": the conditional MLP whose condition ends with a set of points (a home's
  observations), read by a learned permutation-invariant encoder (DeepSets).
- "set_kernel": "set_mlp" plus, at every step, what the points say about the clean target at
  the current noise level (`KernelReadout`): a local read of the set that a pooled code loses.
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


class StackedMLP:
    """One or more ConditionalMLPs of one shape run as one network, for sampling.

    Sampling evaluates the same networks on small batches a hundred times, so per-op overhead
    and repeated work dominate. This inference-only plan (weights are copied at creation)
    - stacks the experts' weights, so every layer of every expert is one batched matmul
      (composition evaluates the general and the specialized expert at every step);
    - precomputes the time embedding of every integer step once;
    - projects the condition once per batch (`bind`): it does not change between steps;
    - folds each block's LayerNorm affine into the linear layer after it.
    The result equals each network's own forward pass (test_composition checks it).
    """

    def __init__(self, *nets: ConditionalMLP):
        shapes = {tuple(tuple(p.shape) for p in m.parameters()) for m in nets}
        if not nets or any(type(m) is not ConditionalMLP for m in nets) or len(shapes) != 1 \
                or len({m.num_steps for m in nets}) != 1:
            raise ValueError("StackedMLP needs ConditionalMLPs of one shape and one number of steps")
        with torch.inference_mode():
            steps = torch.arange(nets[0].num_steps)
            self.time = torch.stack([m.time_embed(steps) for m in nets])        # [n, T, width]
            weight_in, self.bias_in = self._linear([m.input for m in nets])
            self.target_dim = nets[0].head[2].out_features
            self.weight_y, self.weight_c = weight_in[:, :self.target_dim], weight_in[:, self.target_dim:]
            self.blocks = [(self._normed_linear([m.blocks[i][0] for m in nets], [m.blocks[i][1] for m in nets]),
                            self._linear([m.blocks[i][3] for m in nets])) for i in range(len(nets[0].blocks))]
            self.head = (self._norm([m.head[0] for m in nets]), self._linear([m.head[2] for m in nets]))
        self.size = len(nets)

    @staticmethod
    def _linear(layers):
        weight = torch.stack([la.weight.detach() for la in layers]).transpose(1, 2).contiguous()
        return weight, torch.stack([la.bias.detach() for la in layers]).unsqueeze(1)

    @classmethod
    def _normed_linear(cls, norms, layers):
        """A LayerNorm's affine folded into the linear layer after it: (x*g + b) W + c = x (g W) + (b W + c)."""
        weight, bias = cls._linear(layers)
        gain, shift, shape, eps = cls._norm(norms)
        return weight * gain.transpose(1, 2), torch.baddbmm(bias, shift, weight), shape, eps

    @staticmethod
    def _norm(norms):
        return (torch.stack([n.weight.detach() for n in norms]).unsqueeze(1),
                torch.stack([n.bias.detach() for n in norms]).unsqueeze(1), norms[0].normalized_shape, norms[0].eps)

    def bind(self, conditions: list[torch.Tensor], step_input=None, step_size: int = 0):
        """A function (y [B, d], t) -> eps [n, B, d] for these normalized conditions (one [B, c] per expert).

        With `step_input`, the last `step_size` numbers of each condition change at every step: the
        conditions hold zeros there and step_input(y, t) -> one [B, step_size] per expert (None = zeros)
        supplies them (the set's kernel readout), projected by the same columns of the input layer.
        """
        if len(conditions) != self.size:
            raise ValueError(f"{len(conditions)} condition batches for {self.size} experts")
        with torch.inference_mode():
            c = torch.stack(conditions)
            base = torch.baddbmm(self.bias_in, c, self.weight_c) if c.shape[-1] else self.bias_in.expand(
                -1, c.shape[1], -1)
            weight_step = self.weight_c[:, self.weight_c.shape[1] - step_size:] if step_input else None
        layer_norm, silu = torch.nn.functional.layer_norm, torch.nn.functional.silu

        @torch.inference_mode()
        def run(y: torch.Tensor, t: int) -> torch.Tensor:
            h = torch.baddbmm(base + self.time[:, t:t + 1], y.expand(self.size, -1, -1), self.weight_y)
            if weight_step is not None:
                for i, extra in enumerate(step_input(y, t)):
                    if extra is not None:
                        h[i].addmm_(extra, weight_step[i])
            for (w1, b1, shape, eps), (w2, b2) in self.blocks:
                z = silu(torch.baddbmm(b1, layer_norm(h, shape, eps=eps), w1), inplace=True)
                h = torch.baddbmm(h, z, w2).add_(b2)
            (nw, nb, shape, eps), (w, b) = self.head
            return torch.baddbmm(b, silu(torch.addcmul(nb, layer_norm(h, shape, eps=eps), nw), inplace=True), w)
        return run


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


def set_points(block: torch.Tensor, set_size: int, point_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A set block [B, 1 + set_size * d] (count / set_size, then the points) -> points [B, K, d], mask [B, K]."""
    count = torch.round(block[:, 0] * set_size).clamp(0, set_size)
    mask = torch.arange(set_size, device=block.device) < count[:, None]
    return block[:, 1:].reshape(len(block), set_size, point_dim), mask


class SetEncoder(nn.Module):
    """DeepSets (Zaheer et al. 2017): phi per point, masked mean and max pools, log-count, rho.

    The mean pool of rich per-point features is a kernel mean embedding of the points (it keeps
    two shelves apart where a mean and a bounding box merge them); the max pool gives the extent;
    log(1 + n) says how much evidence there is. Any set size, any order, the empty set included
    (all pools 0: the "no context" of classifier-free guidance).
    """

    FREQUENCIES = (1.0, 2.0, 4.0, 8.0, 16.0)  # sin / cos of pi f x per axis: a shelf board 2 cm high is visible

    def __init__(self, point_dim: int, set_size: int, hidden: int = 64, encoding: int = 64):
        super().__init__()
        self.point_dim, self.set_size = point_dim, set_size
        self.register_buffer("freqs", math.pi * torch.tensor(self.FREQUENCIES), persistent=False)
        features = point_dim * (1 + 2 * len(self.FREQUENCIES))
        self.phi = nn.Sequential(nn.Linear(features, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.rho = nn.Sequential(nn.Linear(2 * hidden + 1, encoding), nn.SiLU(), nn.Linear(encoding, encoding))

    def features(self, points: torch.Tensor) -> torch.Tensor:
        """[P, d] normalized points -> [P, d (1 + 2F)]: the points and their Fourier features."""
        angles = (points[:, :, None] * self.freqs).reshape(len(points), points.shape[1] * len(self.freqs))
        return torch.cat([points, torch.sin(angles), torch.cos(angles)], dim=-1)

    def forward(self, block: torch.Tensor) -> torch.Tensor:
        """[B, 1 + set_size * point_dim] (count / set_size, then the points, padded) -> [B, encoding]."""
        points, mask = set_points(block, self.set_size, self.point_dim)
        count = mask.sum(1).to(block.dtype)
        # Only the points that are there go through phi (packed): padding costs nothing.
        owner = torch.nonzero(mask)[:, 0]
        h = self.phi(self.features(points[mask]))
        total = torch.zeros(len(block), h.shape[1], dtype=h.dtype, device=h.device).index_add(0, owner, h)
        mean = total / count.clamp(min=1)[:, None]
        peak = torch.zeros_like(total).scatter_reduce(0, owner[:, None].expand_as(h), h, "amax", include_self=False)
        evidence = (torch.log1p(count) / math.log1p(self.set_size))[:, None]
        return self.rho(torch.cat([mean, peak, evidence], dim=-1))


class SetConditionedMLP(nn.Module):
    """eps(y, t, [state, set]) = trunk(y, t, [state, encoder(set)]): a ConditionalMLP on an encoded set.

    The condition is [state (state_dim), count / set_size, set_size x point_dim points]. The set's
    encoding does not change between sampling steps, so samplers encode once (`encode`) and run
    the trunk, a plain ConditionalMLP, on the fast stacked path.
    """

    def __init__(self, target_dim: int, cond_dim: int, state_dim: int, set_size: int, point_dim: int = 3,
                 width: int = 256, depth: int = 4, encoder_width: int = 64, encoding: int = 64,
                 time_embedding: int = 64, num_steps: int = 100):
        super().__init__()
        if cond_dim != state_dim + 1 + set_size * point_dim:
            raise ValueError(f"a set condition has {state_dim} + 1 + {set_size} x {point_dim} numbers, not {cond_dim}")
        self.state_dim = state_dim
        self.encoder = SetEncoder(point_dim, set_size, encoder_width, encoding)
        self.trunk = ConditionalMLP(target_dim, state_dim + encoding, width, depth, time_embedding, num_steps)

    def encode(self, c: torch.Tensor) -> torch.Tensor:
        """The trunk's condition: the state and the set's encoding."""
        return torch.cat([c[:, :self.state_dim], self.encoder(c[:, self.state_dim:])], dim=-1)

    def forward(self, y: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.trunk(y, t, self.encode(c))

    def for_sampling(self, c: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
        """(network, condition) for every step: the trunk on the set's encoding (computed once)."""
        with torch.inference_mode():
            return self.trunk, self.encode(c)


class KernelReadout(nn.Module):
    """Which of the set's points the noisy target is near, at the current noise level.

    If the target were one of the set's points p_j blurred by a Gaussian of width h (a kernel
    density of the observations), then at step t, where y_t = sqrt(a) y_0 + sqrt(1 - a) eps
    (a = alpha_bar_t), the posterior over j has logits -|y_t - sqrt(a) p_j|^2 / (2 (1 - a + a h^2)),
    and the readout is the posterior mean of p_j: attention whose keys are the points and whose
    temperature is set by the schedule. It has no weights, so it reads a home of any shape the
    same way: two shelves are two groups of points, a ring is a ring. The network decides how far
    to trust it (it also sees the pooled encoding and the count). Per bandwidth h it gives the
    posterior mean, the noise it implies, and the log kernel mass at y_t (is y_t near any point?).
    The points must be in the normalized target space (in_context.home_aware_condition_normalizer).
    """

    BANDWIDTHS = (0.02, 0.05, 0.15, 0.4)   # in normalized units: a shelf board .. half the furniture
    EPS_LIMIT = 5.0

    def __init__(self, point_dim: int, num_steps: int, bandwidths=BANDWIDTHS):
        super().__init__()
        from .schedules import NoiseSchedule

        self.point_dim = point_dim
        self.register_buffer("bandwidths", torch.tensor(bandwidths, dtype=torch.float32), persistent=False)
        self.use_schedule(NoiseSchedule("linear", num_steps).alphas_cumprod)

    @property
    def size(self) -> int:
        return len(self.bandwidths) * (2 * self.point_dim + 1)

    def use_schedule(self, alphas_cumprod: torch.Tensor) -> None:
        """The model's own alpha_bar_t (DiffusionModel.create calls this; not saved: the schedule is)."""
        self.register_buffer("alpha_bar", torch.as_tensor(alphas_cumprod, dtype=torch.float32).clone(),
                             persistent=False)
        self._alpha_bars = self.alpha_bar.tolist()  # floats for the per-step sampling path

    def shared(self, y: torch.Tensor, t: int, points: torch.Tensor,
               allowed: torch.Tensor | None = None) -> torch.Tensor:
        """`forward` for one step t of a batch that reads one set of points [K, d] (K >= 1): sampling's case.

        `allowed` [B, K]: which of the points each row reads (rows reading different sets, e.g. the
        places of a home, in one pass over the union of their points); every row must read one or more.
        """
        a = self._alpha_bars[t]
        root_a, root_1a = math.sqrt(a), math.sqrt(max(1 - a, 1e-8))
        scale = (-0.5 / ((1 - a) + a * self.bandwidths ** 2))[:, None, None]                # [H, 1, 1]
        # |y - sqrt(a) p|^2 = |y|^2 - 2 sqrt(a) y.p + a |p|^2
        gap = torch.addmm((a * (points * points).sum(1))[None, :], y, points.T, alpha=-2 * root_a)
        gap = gap + (y * y).sum(1, keepdim=True)                                             # [B, K]
        logits = gap[None] * scale                                                           # [H, B, K]
        if allowed is not None:
            logits = logits.masked_fill(~allowed, -1e30)
        # softmax and logsumexp from one exp (torch's logsumexp alone costs as much as the rest)
        peak = logits.amax(dim=-1, keepdim=True)
        weights = (logits - peak).exp_()
        total = weights.sum(dim=-1, keepdim=True)
        count = math.log(len(points)) if allowed is None else allowed.sum(1).clamp(min=1).log()
        mass = (total.log() + peak).squeeze(-1) - count                                      # [H, B]
        mean = (weights / total) @ points                                                    # [H, B, d]
        implied = ((y[None] - root_a * mean) / root_1a).clamp_(-self.EPS_LIMIT, self.EPS_LIMIT)
        out = torch.cat([mean, implied, (mass.clamp(min=-20.0) / 10.0)[..., None]], dim=-1)  # [H, B, 2d + 1]
        return out.transpose(0, 1).reshape(len(y), -1)

    def forward(self, y: torch.Tensor, t: torch.Tensor, points: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The readout of rows y [B, d] at steps t [B] from points [B, K, d] (mask [B, K]): [B, size]; 0 if none."""
        a = self.alpha_bar[t].to(y.dtype)[:, None]                                       # [B, 1]
        root_a, root_1a = a.sqrt(), (1 - a).clamp(min=1e-8).sqrt()
        gap = ((y[:, None, :] - root_a[:, :, None] * points) ** 2).sum(-1)              # [B, K]
        var = (1 - a) + a * self.bandwidths[None, :] ** 2                                 # [B, H]
        logits = -gap[:, None, :] / (2 * var[:, :, None])                                 # [B, H, K]
        any_point = mask.any(dim=1)
        logits = logits.masked_fill(~mask[:, None, :], -1e30)
        mass = torch.logsumexp(logits, dim=-1) - torch.log(mask.sum(1).clamp(min=1).to(y.dtype))[:, None]
        mean = torch.einsum("bhk,bkd->bhd", torch.softmax(logits, dim=-1), points)       # [B, H, d]
        implied = ((y[:, None, :] - root_a[:, :, None] * mean) / root_1a[:, :, None]).clamp(
            -self.EPS_LIMIT, self.EPS_LIMIT)
        out = torch.cat([mean, implied, (mass.clamp(min=-20.0) / 10.0)[..., None]], dim=-1).flatten(1)
        return out * any_point[:, None].to(y.dtype)


class SetKernelMLP(nn.Module):
    """eps(y, t, [state, set]) = trunk(y, t, [state, encoder(set), readout(y, t, set)]).

    The pooled encoding says what kind of home this is (how many places, how big, how much
    evidence); the kernel readout (`KernelReadout`) says, at this y and noise level, where the
    nearby observations are. The condition layout is SetConditionedMLP's. Sampling encodes the set
    once per request and keeps the points (`for_sampling`); only the readout runs per step.
    """

    def __init__(self, target_dim: int, cond_dim: int, state_dim: int, set_size: int, point_dim: int = 3,
                 width: int = 256, depth: int = 4, encoder_width: int = 64, encoding: int = 64,
                 time_embedding: int = 64, num_steps: int = 100, bandwidths=KernelReadout.BANDWIDTHS):
        super().__init__()
        if cond_dim != state_dim + 1 + set_size * point_dim:
            raise ValueError(f"a set condition has {state_dim} + 1 + {set_size} x {point_dim} numbers, not {cond_dim}")
        if not bandwidths or min(bandwidths) <= 0:
            raise ValueError(f"kernel bandwidths {bandwidths}: give one or more widths > 0 (normalized units)")
        if point_dim != target_dim:
            raise ValueError(f"the kernel readout needs points in the target's space: point_dim {point_dim} "
                             f"!= target_dim {target_dim}")
        self.state_dim, self.set_size, self.point_dim = state_dim, set_size, point_dim
        self.encoder = SetEncoder(point_dim, set_size, encoder_width, encoding)
        self.readout = KernelReadout(point_dim, num_steps, tuple(float(b) for b in bandwidths))
        self.trunk = ConditionalMLP(target_dim, state_dim + encoding + self.readout.size, width, depth,
                                    time_embedding, num_steps)

    def use_schedule(self, alphas_cumprod: torch.Tensor) -> None:
        self.readout.use_schedule(alphas_cumprod)

    def points(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The set's points [B, K, d] and which are there [B, K]."""
        return set_points(c[:, self.state_dim:], self.set_size, self.point_dim)

    def encode(self, c: torch.Tensor) -> torch.Tensor:
        return torch.cat([c[:, :self.state_dim], self.encoder(c[:, self.state_dim:])], dim=-1)

    def forward(self, y: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        points, mask = self.points(c)
        return self.trunk(y, t, torch.cat([self.encode(c), self.readout(y, t, points, mask)], dim=-1))

    def for_sampling(self, c: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
        """(network, condition) for every step: the set encoded once, the points kept (no padding)."""
        with torch.inference_mode():
            points, mask = self.points(c)
            keep = int(mask.sum(1).max().item()) if len(c) else 0
            encoded = self.encode(c)
            return _BoundKernel(self, points[:, :keep].clone(), mask[:, :keep].clone(), encoded), encoded


def stacked_kernel_plan(bounds: list["_BoundKernel"], make_plan=None):
    """(y, t) -> eps [n, B, d] for one SetKernelMLP asked with n sets (guidance: the set and no set).

    The sampling counterpart of SetKernelMLP.forward: the trunks run as one StackedMLP whose input
    layer takes the readout as a per-step input, and each set's readout is computed on its points
    alone (no padding; a set with no points reads zeros, as in training). An expert's rows may come
    in runs that read one set each (a home read place by place: one run per place). Equal to the forward pass
    (test_home_check checks it). `make_plan` builds (or reuses) the StackedMLP of a list of networks.
    Raises ValueError where it does not apply.
    """
    if not all(isinstance(b, _BoundKernel) for b in bounds) or len({id(b.net) for b in bounds}) != 1:
        raise ValueError("a kernel plan runs one SetKernelMLP")
    net = bounds[0].net
    readers = [b.point_groups() for b in bounds]
    if any(r is False for r in readers):
        raise ValueError(f"a kernel plan reads at most {_BoundKernel.MAX_GROUPS} runs of rows with one set each")
    size = net.readout.size
    plan = (make_plan or (lambda nets: StackedMLP(*nets)))([net.trunk] * len(bounds))
    conditions = [torch.cat([b.condition, torch.zeros(len(b.condition), size)], dim=1) for b in bounds]
    readout = net.readout

    def union(groups: list):
        """(points of every run, which each row reads, rows that read any), None when no row reads a point."""
        sets = [points for _, _, points in groups if points is not None]
        if not sets:
            return None
        if len(groups) == 1:
            return sets[0], None, None
        rows = groups[-1][1]
        allowed, offset = torch.zeros(rows, sum(len(p) for p in sets), dtype=torch.bool), 0
        for start, stop, points in groups:
            if points is not None:
                allowed[start:stop, offset:offset + len(points)] = True
                offset += len(points)
        reads = allowed.any(1)
        allowed[~reads, 0] = True  # rows without a set read zeros (below); keep their softmax finite
        return torch.cat(sets), allowed, None if reads.all() else reads[:, None].float()

    unions = [union(groups) for groups in readers]

    def read(y: torch.Tensor, t: int, found):
        if found is None:
            return None
        points, allowed, reads = found
        out = readout.shared(y, t, points, allowed)
        return out if reads is None else out * reads

    def step_input(y: torch.Tensor, t: int) -> list:
        return [read(y, t, found) for found in unions]
    return plan.bind(conditions, step_input, size)


class _BoundKernel(nn.Module):
    """SetKernelMLP with its set fixed: (y, t, encoded condition) -> eps, what samplers run per step."""

    def __init__(self, net: SetKernelMLP, points: torch.Tensor, mask: torch.Tensor, condition: torch.Tensor):
        super().__init__()
        self.net, self.points, self.mask, self.condition = net, points, mask, condition

    MAX_GROUPS = 16   # more runs of rows with one set each: the batched forward pass is as fast

    def point_groups(self):
        """Runs of rows that read one set: [(start, stop, points [K, d] or None = no points)].

        A home read place by place asks one batch whose rows come in runs, one run per place; a plain
        request is one run. False when the rows change sets more than MAX_GROUPS times.
        """
        rows = len(self.points)
        if rows == 0:
            return [(0, 0, None)]
        kept = self.points * self.mask[..., None]
        same = (self.mask[1:] == self.mask[:-1]).all(1) & (kept[1:] == kept[:-1]).all(2).all(1)
        starts = [0] + (torch.nonzero(~same).flatten() + 1).tolist()
        if len(starts) > self.MAX_GROUPS:
            return False
        groups = []
        for start, stop in zip(starts, starts[1:] + [rows]):
            mask = self.mask[start]
            groups.append((start, stop, self.points[start][mask].contiguous() if mask.any() else None))
        return groups

    def forward(self, y: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.net.trunk(y, t, torch.cat([c, self.net.readout(y, t, self.points, self.mask)], dim=-1))


ARCHITECTURES = {"mlp": ConditionalMLP, "resmlp": ResidualMLP, "dual_expert": DualExpertDenoiser,
                 "set_mlp": SetConditionedMLP, "set_kernel": SetKernelMLP}


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
