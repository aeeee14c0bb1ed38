"""The seed paper's 2-D datasets: shapes, ranges and the structure the KL numbers depend on."""
import numpy as np
import pytest

from dualdiff_ros.domains.toy2d import TOY_DATASETS, dino_points, toy_dataset


@pytest.mark.parametrize("name", TOY_DATASETS)
def test_shape_and_determinism(name):
    a = toy_dataset(name, n=3000)
    assert a.shape == (3000, 2) and a.dtype == np.float64 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, toy_dataset(name, n=3000, seed=42))
    assert not np.array_equal(a, toy_dataset(name, n=3000, seed=7))


def test_default_is_the_papers_100k():
    assert toy_dataset("line").shape == (100_000, 2)


def test_line_is_a_uniform_4_by_8_rectangle():
    a = toy_dataset("line", n=20_000)
    assert np.all(np.abs(a[:, 0]) <= 2) and np.all(np.abs(a[:, 1]) <= 4)
    np.testing.assert_allclose(a.std(axis=0), [4 / np.sqrt(12), 8 / np.sqrt(12)], rtol=0.03)


def test_circle_is_16_ring_clusters_plus_origin():
    a = toy_dataset("circle", n=20_000)
    grid = np.array([(i, j) for i in range(-2, 3) for j in range(-2, 3) if (i, j) != (0, 0)], dtype=float)
    directions = np.unique(np.round(grid / np.linalg.norm(grid, axis=1, keepdims=True), 9), axis=0)
    centres = np.vstack([3 * directions, [[0.0, 0.0]]])
    assert len(centres) == 17
    dist = np.linalg.norm(a[:, None, :] - centres[None], axis=2)
    assert dist.min(axis=1).max() <= 0.09 + 1e-9  # jitter r < 0.03, times 3
    counts = np.bincount(dist.argmin(axis=1), minlength=17)
    assert np.all(counts > 0)
    assert 0.02 < counts[-1] / len(a) < 0.06  # only the rounded (0, 0) grid cell stays at the origin


def test_dino_follows_the_tsv_rows():
    raw = dino_points()
    assert raw.shape == (142, 2)
    a = toy_dataset("dino", n=20_000)
    scaled = np.stack([(raw[:, 0] / 54 - 1) * 4, (raw[:, 1] / 48 - 1) * 4], axis=1)
    nearest = np.linalg.norm(a[:, None, :] - scaled[None], axis=2).min(axis=1)
    assert np.percentile(nearest, 99) < 0.05  # 0.15 raw noise is ~0.011 scaled: 4 sd is 0.045
    assert a[:, 0].min() > -3 and a[:, 1].max() < 4.5


def test_moons_range():
    a = toy_dataset("moons", n=5000)
    assert -2.7 < a[:, 0].min() and a[:, 0].max() < 3.9
    assert -2.0 < a[:, 1].min() and a[:, 1].max() < 3.3


def test_unknown_dataset_names_the_choices():
    with pytest.raises(ValueError, match="dino"):
        toy_dataset("spiral")
