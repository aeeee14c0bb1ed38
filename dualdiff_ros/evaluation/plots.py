"""Pictures that say more than tables: samples of every configuration, loss curves."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def configuration_scatter(domain, condition, samples: dict, path: Path, seed: int = 0):
    """One panel per configuration: its samples [k, d] for one condition (top view), inside = green."""
    cond = np.asarray(condition).reshape(1, -1)
    n = len(samples)
    cols = min(n, 5)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    rng = np.random.default_rng(seed)
    truth = domain.sample_specialized_targets(np.repeat(cond, 2000, axis=0), rng)
    general = domain.sample_general_targets(np.repeat(cond, 2000, axis=0), rng)
    for ax, (name, y) in zip(axes.flat, samples.items()):
        inside = domain.in_specialized_region(np.repeat(cond, len(y), axis=0), y)
        ax.scatter(general[:, 0], general[:, 1], s=2, c="0.85", label="general data")
        ax.scatter(truth[:, 0], truth[:, 1], s=2, c="#9ecae1", label="specialized data")
        ax.scatter(y[inside, 0], y[inside, 1], s=6, c="tab:green", label="inside")
        ax.scatter(y[~inside, 0], y[~inside, 1], s=6, c="tab:red", label="outside")
        ax.set_title(f"{name}\naccuracy {inside.mean():.2f}", fontsize=9)
        ax.set_aspect("equal")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6, loc="lower left")
    fig.suptitle(f"{domain.name}: samples for condition {np.round(condition, 2).tolist()}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def loss_curves(curves: dict, path: Path):
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, losses in curves.items():
        ax.plot(np.arange(1, len(losses) + 1), losses, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (eps MSE)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
