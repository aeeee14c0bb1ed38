"""The fleet loop's data out and in: a robot's database to Parquet (read back equal), bags into a database."""
import shutil
from pathlib import Path

import numpy as np
import pytest

from dualdiff_ros.cli import main as cli_main
from dualdiff_ros.domains.fleet_data import read_fleet
from dualdiff_ros.domains.spec import builtin_spec, load_spec
from dualdiff_ros.learning import ObservationStore
from dualdiff_ros.learning.exchange import (
    MSGTYPE,
    TOPIC,
    export_observations,
    import_bag,
    observation_msg_file,
    observation_typestore,
)

ROOT = Path(__file__).resolve().parents[1]
MUG_SPEC = ROOT / "examples" / "mug_counter" / "spec.yaml"


def filled_store(path, n=300, seed=0):
    """A robot's database: cabinet rows of two tasks (some with a header stamp) and mug-counter rows."""
    rng = np.random.default_rng(seed)
    with ObservationStore(path) as store:
        rows = []
        for i in range(n):
            state = rng.uniform([-4, -4, 0], [6, 6, 3])
            rows.append(("cabinet", "plates" if i % 3 else "", state.tolist(),
                         (state + rng.uniform([-1, -1, 0], [1, 1, 1])).tolist(),
                         (1_700_000_000 + i, 123_456_789) if i % 2 else None))
        rows.append(("mug_counter", "", [0.0, 0.0, 0.5, 2.0], [0.1, 0.2], None))
        store.add_many(rows)
    return rows


def test_an_exported_database_reads_back_equal(tmp_path):
    db = tmp_path / "robot.db"
    filled_store(db)
    result = export_observations(db, tmp_path / "out.parquet", domain="cabinet", robot_id="r1", home_id="kitchen7")
    assert result["rows"] == 300
    data = read_fleet(tmp_path / "out.parquet", builtin_spec("cabinet"), on_bad="refuse")
    with ObservationStore(db) as store:
        stored = store.list("cabinet")
    np.testing.assert_array_equal(data.states, np.array([r.state for r in stored]))  # float64, bit for bit
    np.testing.assert_array_equal(data.targets, np.array([r.target for r in stored]))
    assert data.task.tolist() == [r.task for r in stored]
    assert set(data.robot_id) == {"r1"} and set(data.home_id) == {"kitchen7"}
    expected_stamp = [r.stamp[0] + r.stamp[1] * 1e-9 if r.stamp else r.stored_at for r in stored]
    np.testing.assert_array_equal(data.stamp, expected_stamp)


def test_export_of_one_task_and_of_a_spec_domain(tmp_path):
    db = tmp_path / "robot.db"
    filled_store(db)
    export_observations(db, tmp_path / "plates.parquet", domain="cabinet", task="plates")
    assert len(read_fleet(tmp_path / "plates.parquet", builtin_spec("cabinet"))) == 200
    export_observations(db, tmp_path / "mugs.parquet", spec=load_spec(MUG_SPEC))
    mugs = read_fleet(tmp_path / "mugs.parquet", load_spec(MUG_SPEC))
    np.testing.assert_array_equal(mugs.states, [[0.0, 0.0, 0.5, 2.0]])
    assert mugs.robot_id is None  # not given: no column


def test_export_errors_say_what_to_give(tmp_path):
    db = tmp_path / "robot.db"
    filled_store(db)
    with pytest.raises(ValueError, match="2 domains .*name one with --domain"):
        export_observations(db, tmp_path / "o.parquet")
    with pytest.raises(ValueError, match="'mug_counter' has no built-in spec: give its spec file with --spec"):
        export_observations(db, tmp_path / "o.parquet", domain="mug_counter")
    with pytest.raises(ValueError, match="--spec is for domain 'cabinet', not 'mug_counter'"):
        export_observations(db, tmp_path / "o.parquet", spec=builtin_spec("cabinet"), domain="mug_counter")
    with pytest.raises(FileNotFoundError, match="no such observation database"):
        export_observations(tmp_path / "none.db", tmp_path / "o.parquet")
    with ObservationStore(db) as store:
        store.add("cabinet", "", [1.0, 2.0], [1.0, 2.0, 3.0])  # recorded with the wrong size
    with pytest.raises(ValueError, match="observation 302 has 2 state and 3 target numbers"):
        export_observations(db, tmp_path / "o.parquet", domain="cabinet")
    assert not (tmp_path / "o.parquet").exists() and not (tmp_path / "o.parquet.partial").exists()


def test_the_message_type_comes_from_the_package_msg_file():
    msg = observation_msg_file()
    assert msg == ROOT / "interfaces" / "dualdiff_interfaces" / "msg" / "Observation.msg"
    fields = observation_typestore().fielddefs[MSGTYPE][1]
    assert [name for name, _ in fields] == ["header", "domain", "task", "state", "target"]


def write_bag(path, observations, plugin, topic=TOPIC):
    from rosbags.rosbag2 import StoragePlugin, Writer

    typestore = observation_typestore()
    Observation = typestore.types[MSGTYPE]
    Header, Time = typestore.types["std_msgs/msg/Header"], typestore.types["builtin_interfaces/msg/Time"]
    with Writer(path, version=9, storage_plugin=getattr(StoragePlugin, plugin)) as writer:
        connection = writer.add_connection(topic, MSGTYPE, typestore=typestore)
        for i, (domain, task, state, target, stamp) in enumerate(observations):
            sec, nanosec = stamp or (0, 0)
            msg = Observation(header=Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id="map"), domain=domain,
                              task=task, state=np.asarray(state, np.float64), target=np.asarray(target, np.float64))
            writer.write(connection, 1_000_000 + i, typestore.serialize_cdr(msg, MSGTYPE))


@pytest.mark.parametrize("plugin, suffix", [("MCAP", ".mcap"), ("SQLITE3", ".db3")])
def test_a_bag_written_with_rosbags_imports_equal(tmp_path, plugin, suffix):
    observations = filled_store(tmp_path / "source.db", n=40)
    write_bag(tmp_path / "bag", observations, plugin)
    result = import_bag(tmp_path / "bag", tmp_path / "robot.db")
    assert result["rows"] == 41 and result["domains"] == {"cabinet": 40, "mug_counter": 1}
    with ObservationStore(tmp_path / "robot.db") as store:
        got = [(r.domain, r.task, list(r.state), list(r.target), r.stamp) for r in store.list()]
    assert got == [(d, t, list(s), list(y), stamp) for d, t, s, y, stamp in observations]
    # The storage file alone (no metadata.yaml beside it) reads the same.
    alone = tmp_path / f"alone{suffix}"
    shutil.copy(next((tmp_path / "bag").glob(f"*{suffix}")), alone)
    assert import_bag(alone, tmp_path / "again.db")["rows"] == 41


def test_bag_errors_and_skipped_rows(tmp_path):
    write_bag(tmp_path / "other", [("cabinet", "", [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], None)], "MCAP", topic="/chatter")
    with pytest.raises(ValueError, match="no topic /dualdiff/observations in this bag \\(it has /chatter\\)"):
        import_bag(tmp_path / "other", tmp_path / "robot.db")
    with pytest.raises(FileNotFoundError, match="no such bag"):
        import_bag(tmp_path / "nowhere", tmp_path / "robot.db")
    (tmp_path / "junk.mcap").write_text("junk")
    with pytest.raises(ValueError, match="cannot read it as a ROS 2 bag"):
        import_bag(tmp_path / "junk.mcap", tmp_path / "robot.db")
    write_bag(tmp_path / "sizes", [("cabinet", "", [1.0, 2.0], [1.0, 2.0, 3.0], None),
                                   ("cabinet", "", [1.0, 2.0, 0.5], [1.0, 2.0, 1.0], None)], "MCAP")
    result = import_bag(tmp_path / "sizes", tmp_path / "robot.db")
    assert result["rows"] == 1 and result["skipped"] == 1 and "message 0: cabinet with 2 state" in result["first_bad"]


def test_the_command_lines(tmp_path, capsys):
    observations = filled_store(tmp_path / "source.db", n=20)
    write_bag(tmp_path / "bag", observations, "MCAP")
    assert cli_main(["observations", "import", str(tmp_path / "bag"), "--db", str(tmp_path / "robot.db")]) == 0
    assert "stored 21 observations" in capsys.readouterr().out
    out = tmp_path / "robot.parquet"
    assert cli_main(["observations", "export", "--db", str(tmp_path / "robot.db"), "--output", str(out),
                     "--domain", "cabinet", "--robot-id", "r9", "--home-id", "h3"]) == 0
    assert "20 cabinet observations" in capsys.readouterr().out
    assert cli_main(["data", "check", "--spec", "cabinet", "--data", str(out)]) == 0
    assert "20 rows kept of 20" in capsys.readouterr().out
    assert cli_main(["observations", "export", "--db", str(tmp_path / "robot.db"), "--output", str(out)]) == 2
    assert "name one with --domain" in capsys.readouterr().err
