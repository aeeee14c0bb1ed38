"""Exact noise predictors for Gaussian data: ground truth for testing samplers.

For data N(mu, diag(sigma^2)) the noised marginal at step t is
N(sqrt(ab) mu, ab sigma^2 + 1 - ab), so the ideal eps-prediction is known in closed form.
The product of two Gaussians is a Gaussian, so composed samplers can be checked exactly.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .model import DiffusionModel
from .normalizer import Normalizer
from .schedules import NoiseSchedule


class GaussianDenoiser(nn.Module):
    def __init__(self, mean, std, schedule: NoiseSchedule):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        self.register_buffer("ab", schedule.alphas_cumprod.float())

    def forward(self, y, t, c):
        ab = self.ab[t].unsqueeze(-1)
        var = ab * self.std**2 + 1 - ab
        score = -(y - ab.sqrt() * self.mean) / var
        return -score * (1 - ab).sqrt()


def gaussian_model(mean, std, schedule: NoiseSchedule) -> DiffusionModel:
    """An unconditional 'trained' model of N(mean, std^2), in identity-normalized units."""
    d = len(mean)
    identity = Normalizer(-np.ones(d), np.ones(d))
    return DiffusionModel(GaussianDenoiser(mean, std, schedule), schedule, None, identity,
                          {"name": "analytic_gaussian"}, {"role": "analytic"})


def gaussian_product(mean1, std1, mean2, std2):
    """Mean, std and log of the integral of N1*N2 for diagonal Gaussians."""
    m1, s1, m2, s2 = (np.asarray(v, dtype=np.float64) for v in (mean1, std1, mean2, std2))
    prec = 1 / s1**2 + 1 / s2**2
    mean = (m1 / s1**2 + m2 / s2**2) / prec
    var_sum = s1**2 + s2**2
    log_z = float(np.sum(-0.5 * np.log(2 * math.pi * var_sum) - 0.5 * (m1 - m2) ** 2 / var_sum))
    return mean, np.sqrt(1 / prec), log_z
