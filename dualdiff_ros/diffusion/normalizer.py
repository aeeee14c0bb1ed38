"""Affine map of each dimension to [-1, 1], fitted once on the general data.

Every model of a domain (general, specialized, fine-tuned) shares the general data's
normalizer, so their noise predictions live in one space and can be added.
"""
from __future__ import annotations

import numpy as np
import torch


class Normalizer:
    def __init__(self, low, high):
        self.low = np.asarray(low, dtype=np.float64)
        self.high = np.asarray(high, dtype=np.float64)
        if self.low.shape != self.high.shape or self.low.ndim != 1:
            raise ValueError("normalizer low and high must be 1-D arrays of one length")
        span = self.high - self.low
        # A constant dimension keeps unit scale instead of dividing by zero.
        self._half = np.where(span > 1e-9, span / 2, 1.0)
        self._mid = (self.high + self.low) / 2

    @classmethod
    def fit(cls, data: np.ndarray) -> "Normalizer":
        data = np.asarray(data, dtype=np.float64)
        if data.ndim != 2 or len(data) == 0:
            raise ValueError("fit a normalizer on a non-empty 2-D array")
        return cls(data.min(axis=0), data.max(axis=0))

    @property
    def dim(self) -> int:
        return len(self.low)

    def normalize(self, x):
        if isinstance(x, torch.Tensor):
            return (x - torch.as_tensor(self._mid, dtype=x.dtype)) / torch.as_tensor(self._half, dtype=x.dtype)
        return (np.asarray(x, dtype=np.float64) - self._mid) / self._half

    def denormalize(self, x):
        if isinstance(x, torch.Tensor):
            return x * torch.as_tensor(self._half, dtype=x.dtype) + torch.as_tensor(self._mid, dtype=x.dtype)
        return np.asarray(x, dtype=np.float64) * self._half + self._mid

    def to_dict(self) -> dict:
        return {"low": self.low.tolist(), "high": self.high.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Normalizer":
        return cls(d["low"], d["high"])
