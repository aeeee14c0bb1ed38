"""Low-rank adaptation (Hu et al. 2021) of a trained denoiser, merged back after training.

Fine-tuning every weight of the general prior on ~100 observations lets it memorise them.
LoRA trains only a rank-r update B·A of each linear layer, so the specialized model stays
close to the prior's smooth shape. After training the update is folded into the weights:
the checkpoint is an ordinary model of the prior's architecture.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.down = nn.Parameter(torch.empty(rank, base.in_features))
        self.up = nn.Parameter(torch.zeros(base.out_features, rank))  # zero: starts as the prior exactly
        nn.init.kaiming_uniform_(self.down, a=math.sqrt(5))
        self.scale = alpha / rank

    def forward(self, x):
        return self.base(x) + (x @ self.down.t() @ self.up.t()) * self.scale

    def merged(self) -> nn.Linear:
        with torch.no_grad():
            self.base.weight += self.scale * self.up @ self.down
        for p in self.base.parameters():
            p.requires_grad_(True)
        return self.base


def add_lora(module: nn.Module, rank: int = 4, alpha: float = 4.0) -> nn.Module:
    """Replace every nn.Linear inside `module` by a LoRA-wrapped one (in place); freezes the rest."""
    if rank < 1:
        raise ValueError(f"LoRA rank={rank} must be >= 1")
    for p in module.parameters():
        p.requires_grad_(False)
    _swap(module, lambda child: LoRALinear(child, rank, alpha) if isinstance(child, nn.Linear) else None)
    return module


def merge_lora(module: nn.Module) -> nn.Module:
    """Fold every LoRA update into its base layer; the module's state dict is the original shape again."""
    _swap(module, lambda child: child.merged() if isinstance(child, LoRALinear) else None)
    for p in module.parameters():
        p.requires_grad_(True)
    return module


def _swap(module: nn.Module, make):
    for name, child in module.named_children():
        new = make(child)
        if new is not None:
            setattr(module, name, new)
        else:
            _swap(child, make)
