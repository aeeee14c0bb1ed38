"""Fleet data in Parquet: written and read back equal, read lazily, bad rows skipped or refused by name."""
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dualdiff_ros.domains import fleet_data
from dualdiff_ros.domains.fleet_data import FleetDataError, iter_batches, read_fleet, write_builtin, write_fleet
from dualdiff_ros.domains.spec import builtin_spec, load_spec

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mug_counter"


@pytest.fixture
def spec():
    return load_spec(EXAMPLE / "spec.yaml")


def rows(n, seed=0):
    rng = np.random.default_rng(seed)
    states = np.column_stack([rng.uniform(-5, 5, (n, 2)), rng.uniform(-3, 3, n), rng.uniform(1, 3, n)])
    local = np.column_stack([rng.uniform(-0.5, 0.5, n), rng.uniform(-0.25, 0.25, n)])
    c, s = np.cos(states[:, 2]), np.sin(states[:, 2])
    targets = states[:, :2] + np.column_stack([c * local[:, 0] - s * local[:, 1], s * local[:, 0] + c * local[:, 1]])
    return states, targets


def test_written_rows_read_back_equal_with_every_column(tmp_path, spec):
    states, targets = rows(500)
    homes = [f"h{i % 7}" for i in range(500)]
    stamp = 1.7e9 + np.arange(500) * 0.25
    write_fleet(tmp_path / "a.parquet", spec, states, targets, home_id=homes, robot_id="r1", task="mug", stamp=stamp)
    data = read_fleet(tmp_path / "a.parquet", spec)
    np.testing.assert_array_equal(data.states, states)
    np.testing.assert_array_equal(data.targets, targets)
    assert data.home_id.tolist() == homes and set(data.robot_id) == {"r1"} and set(data.task) == {"mug"}
    np.testing.assert_array_equal(data.stamp, stamp)
    assert (data.report.rows_read, data.report.rows_skipped, data.report.files) == (500, 0, 1)


def test_a_folder_of_files_in_any_column_order(tmp_path, spec):
    states, targets = rows(300, 1)
    write_fleet(tmp_path / "fleet" / "r1.parquet", spec, states[:100], targets[:100], robot_id="r1")
    # A user's own file: columns in another order, extra columns, ints for floats, no optional columns.
    table = pa.table({"target.y": targets[100:, 1], "note": ["x"] * 200, "state.length": states[100:, 3],
                      "state.yaw": states[100:, 2], "state.y": states[100:, 1], "state.x": states[100:, 0],
                      "target.x": targets[100:, 0]})
    (tmp_path / "fleet" / "more").mkdir()
    pq.write_table(table, tmp_path / "fleet" / "more" / "r2.parquet")
    data = read_fleet(tmp_path / "fleet", spec)  # path order: more/r2.parquet, then r1.parquet
    np.testing.assert_array_equal(data.states, np.concatenate([states[100:], states[:100]]))
    np.testing.assert_array_equal(data.targets, np.concatenate([targets[100:], targets[:100]]))
    assert data.robot_id.tolist() == [""] * 200 + ["r1"] * 100  # the file without the column: empty


def test_reads_lazily_in_batches(tmp_path, spec):
    states, targets = rows(1000, 2)
    write_fleet(tmp_path / "a.parquet", spec, states, targets)
    batches = list(iter_batches(tmp_path / "a.parquet", spec, batch_rows=300))
    assert [len(b) for b in batches] == [300, 300, 300, 100]
    np.testing.assert_array_equal(np.concatenate([b.states for b in batches]), states)


def test_bad_rows_are_skipped_counted_and_the_first_named(tmp_path, spec):
    states, targets = rows(200, 3)
    states[17, 0] = np.nan
    states[40, 0] = 50.0            # outside state.x's range [-10, 10]
    targets[90] = states[90, :2] + 1.5 * np.array([-np.sin(states[90, 2]), np.cos(states[90, 2])])  # off the counter
    path = write_fleet(tmp_path / "a.parquet", spec, states, targets)
    data = read_fleet(path, spec)
    assert data.report.rows_skipped == 3 and len(data) == 197
    assert f"{path} row 17" in data.report.first_bad and "state.x is nan" in data.report.first_bad
    keep = np.setdiff1d(np.arange(200), [17, 40, 90])
    np.testing.assert_array_equal(data.states, states[keep])
    with pytest.raises(FleetDataError, match=r"row 17: state\.x is nan.*fix or drop the row"):
        read_fleet(path, spec, on_bad="refuse")
    assert "3 skipped" in data.report.describe()


def test_a_missing_column_refuses_the_file_by_name(tmp_path, spec):
    states, targets = rows(10)
    table = pa.table({"state.x": states[:, 0], "state.y": states[:, 1], "state.heading": states[:, 2],
                      "state.length": states[:, 3], "target.x": targets[:, 0], "target.y": targets[:, 1]})
    pq.write_table(table, tmp_path / "a.parquet")
    with pytest.raises(FleetDataError) as err:
        read_fleet(tmp_path / "a.parquet", spec)
    message = str(err.value)
    assert "a.parquet" in message and "'state.yaw' is missing" in message and "state.heading" in message


def test_other_malformed_data(tmp_path, spec):
    states, targets = rows(10)
    cols = {c: states[:, j] for j, c in enumerate(spec.state_columns)}
    cols.update({c: targets[:, j] for j, c in enumerate(spec.target_columns)})
    pq.write_table(pa.table({**cols, "state.x": ["a"] * 10}), tmp_path / "text.parquet")
    with pytest.raises(FleetDataError, match="'state.x' has type string, not a number"):
        read_fleet(tmp_path / "text.parquet", spec)
    pq.write_table(pa.table({**cols, "home_id": np.arange(10)}), tmp_path / "ids.parquet")
    with pytest.raises(FleetDataError, match="'home_id' has type int64: write it as text"):
        read_fleet(tmp_path / "ids.parquet", spec)
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(FleetDataError, match="not a readable Parquet file"):
        read_fleet(tmp_path / "junk.parquet", spec)
    with pytest.raises(FleetDataError, match="no such file or folder"):
        read_fleet(tmp_path / "nowhere", spec)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FleetDataError, match="no .parquet files"):
        read_fleet(tmp_path / "empty", spec)
    cabinet_file = write_fleet(tmp_path / "cab" / "c.parquet", builtin_spec("cabinet"), np.zeros((2, 3)),
                               np.zeros((2, 3)))
    with pytest.raises(FleetDataError):  # the cabinet's columns are not the mug counter's
        read_fleet(cabinet_file, spec)
    with_nulls = pa.table({**cols, "target.x": pa.array([None] + targets[1:, 0].tolist(), pa.float64())})
    pq.write_table(with_nulls, tmp_path / "nulls.parquet")
    data = read_fleet(tmp_path / "nulls.parquet", spec)
    assert data.report.rows_skipped == 1 and "target.x is nan" in data.report.first_bad


def test_a_file_written_for_another_domain_is_refused(tmp_path):
    cabinet, table = builtin_spec("cabinet"), builtin_spec("round_table")
    path = write_fleet(tmp_path / "c.parquet", cabinet, np.zeros((2, 3)), np.zeros((2, 3)) + 0.5)
    with pytest.raises(FleetDataError, match="written for domain 'cabinet'"):
        read_fleet(path, table)


def test_builtin_generators_write_the_rows_training_uses(tmp_path):
    from dualdiff_ros.domains import get_domain

    for name in ("cabinet", "round_table"):
        path = write_builtin(name, tmp_path / f"{name}.parquet", 2000, seed=5)
        data = read_fleet(path, builtin_spec(name))
        expected = get_domain(name).general_dataset(2000, 5)
        np.testing.assert_array_equal(data.states, expected.conditions)
        np.testing.assert_array_equal(data.targets, expected.targets)
        assert data.report.rows_skipped == 0


def test_navigate_to_data_fits_its_builtin_spec(tmp_path):
    path = write_builtin("navigate_to", tmp_path / "nav.parquet", 3, seed=0)
    data = read_fleet(path, builtin_spec("navigate_to"))
    assert len(data) > 20 and data.report.rows_skipped == 0  # every simulated row inside the spec's ranges
    assert set(data.task) <= {"basket", "bin", "book", "box", "cup", "cupboard", "shelf", "stick", "tray"}


def test_ingest_benchmark_reads_what_it_wrote():
    result = fleet_data.benchmark_ingest(20_000)
    assert result["rows"] == 20_000 and result["rows_per_second"] > 0 and math.isfinite(result["read_seconds"])


def test_dictionary_encoded_ids_as_pandas_writes_categories(tmp_path, spec):
    states, targets = rows(6)
    cols = {c: states[:, j] for j, c in enumerate(spec.state_columns)}
    cols.update({c: targets[:, j] for j, c in enumerate(spec.target_columns)})
    homes = pa.array(["a", "b", "a", "c", "b", "a"]).dictionary_encode()
    table = pa.table({**cols, "home_id": homes, "stamp": pa.array(range(6), pa.int64())})
    pq.write_table(table, tmp_path / "d.parquet")
    data = read_fleet(tmp_path / "d.parquet", spec)
    assert data.home_id.tolist() == ["a", "b", "a", "c", "b", "a"]
    np.testing.assert_array_equal(data.stamp, np.arange(6.0))
