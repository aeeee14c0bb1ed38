"""How thick are generated moons? Spread across the curve, against the real data's.

A k-NN KL estimate below its real-vs-real floor means samples tighter than the data, not a
better-than-perfect model; this measures that directly: the standard deviation of each point's
signed distance to the nearer noiseless moon (sklearn's make_moons units, before the seed's
rescaling), for the real data and for every samples file given.

    .venv/bin/python scripts/moons_spread.py runs/bench2d_*/samples/moons/*.npy
"""
import argparse

import numpy as np

from dualdiff_ros.domains.toy2d import toy_dataset


def offsets(points: np.ndarray) -> np.ndarray:
    """Signed distance to the nearer noiseless moon (unit half-circles at (0, 0) and (1, 0.5))."""
    x = (points[:, 0] + 1) / 2 - 0.3   # undo the seed's x = (x + 0.3) * 2 - 1
    y = (points[:, 1] + 1) / 3 - 0.3   # and y = (y + 0.3) * 3 - 1
    upper, lower = np.hypot(x, y) - 1, np.hypot(x - 1, y - 0.5) - 1
    return np.where(np.abs(upper) < np.abs(lower), upper, lower)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("samples", nargs="+", help=".npy files of generated moons points [n, 2]")
    args = parser.parse_args()
    print(f"{'real data (10,000 points, seed 1000)':<72} {offsets(toy_dataset('moons', 10_000, 1000)).std():.4f}")
    for path in args.samples:
        print(f"{path:<72} {offsets(np.load(path)).std():.4f}")


if __name__ == "__main__":
    main()
