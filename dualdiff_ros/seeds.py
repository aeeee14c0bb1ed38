"""Disjoint random streams from one seed: training data, test conditions, sampling, training.

Every study derives its seeds here, as `stream(seed, name)` = 100 * seed + offset, so the
cabinet, round-table and navigate-to studies mean the same thing by "seed 2's sampling
noise", and no test condition is ever drawn from a training stream.
"""
from __future__ import annotations

STREAMS = {
    "general_data": 1, "specialized_data": 2, "test": 3, "reference": 4, "sampling": 5, "plot_sampling": 6,
    "train_general": 11, "train_scratch": 12, "train_fine_tuned": 13, "train_home_aware": 14,
    "homes": 21, "observations": 22, "fleet_data": 23,
}


def stream(seed: int, name: str) -> int:
    """The seed of stream `name` (a key of STREAMS) for run seed `seed`."""
    return int(seed) * 100 + STREAMS[name]
