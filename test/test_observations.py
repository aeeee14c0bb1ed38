"""ObservationStore: round trips, validation, threads, and durability of acknowledged ids under SIGKILL."""

import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from dualdiff_ros.learning import ObservationStore


def test_add_count_fetch_round_trip(tmp_path):
    with ObservationStore(tmp_path / "obs.sqlite") as store:
        first = store.add("cabinet", "", [0.1, 0.2, 0.3], [1.0, 2.0, 3.0])
        second = store.add("cabinet", "", [0.4, 0.5, 0.6], [4.0, 5.0, 1 / 3])
        store.add("cabinet", "cups", [0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
        assert second > first
        assert store.count("cabinet") == 2 and store.count("cabinet", "cups") == 1
        assert store.count("round_table") == 0
        states, targets = store.fetch("cabinet")
        assert states.shape == (2, 3) and targets.shape == (2, 3)
        assert targets[1, 2] == 1 / 3  # exact float64 round trip
        assert store.fetch("round_table")[0].shape == (0, 0)
        assert store.summary() == [("cabinet", "", 2), ("cabinet", "cups", 1)]
        assert store.ids("cabinet", "") == [first, second]


def test_wal_and_full_sync(tmp_path):
    path = tmp_path / "obs.sqlite"
    ObservationStore(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persistent in the file
    conn.close()
    store = ObservationStore(path)
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()


@pytest.mark.parametrize("state, target, words", [
    ([0.0, float("nan"), 0.0], [0.0, 0.0, 0.0], "state[1] is nan"),
    ([0.0, 0.0, 0.0], [float("inf"), 0.0, 0.0], "target[0] is inf"),
    ([], [0.0], "state must be a non-empty"),
    ([[0.0]], [0.0], "state must be a non-empty 1-D"),
])
def test_rejects_bad_vectors(tmp_path, state, target, words):
    with ObservationStore(tmp_path / "obs.sqlite") as store:
        with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
            store.add("cabinet", "", state, target)
        assert store.count("cabinet") == 0


def test_threads_share_one_store(tmp_path):
    store = ObservationStore(tmp_path / "obs.sqlite")
    ids, errors = [], []

    def writer(k):
        try:
            for i in range(25):
                ids.append(store.add("cabinet", "", [k, i, 0.0], [k, i, 1.0]))
                store.count("cabinet")
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(ids)) == 100 and store.count("cabinet") == 100
    store.close()


CHILD = textwrap.dedent("""
    import sys
    from dualdiff_ros.learning import ObservationStore
    store = ObservationStore(sys.argv[1])
    i = 0
    while True:
        oid = store.add("cabinet", "", [i, 0.5, 0.25], [i + 1.0, 0.5, 0.25])
        print(oid, flush=True)   # acknowledged: printed only after the commit returned
        i += 1
""")


def test_acknowledged_ids_survive_sigkill(tmp_path):
    path = tmp_path / "obs.sqlite"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True)
    acknowledged = []
    try:
        deadline = time.monotonic() + 30
        while len(acknowledged) < 40 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            acknowledged.append(int(line))
        child.send_signal(signal.SIGKILL)  # mid-stream: the child is still writing
        child.wait(10)
        for line in child.stdout:  # anything printed before the kill was acknowledged too
            acknowledged.append(int(line))
    finally:
        if child.poll() is None:
            child.kill()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert len(acknowledged) >= 40, "the child did not get going"
    with ObservationStore(path) as store:
        stored = set(store.ids())
        assert set(acknowledged) <= stored, f"lost acknowledged ids {sorted(set(acknowledged) - stored)[:5]}"
        states, targets = store.fetch("cabinet")
        assert np.all(targets[:, 0] == states[:, 0] + 1.0)  # no torn rows


def _filled(path):
    store = ObservationStore(path)
    a = store.add("cabinet", "", [0.1, 0.2, 0.3], [1.0, 2.0, 3.0], stamp=(1_700_000_000, 5))
    b = store.add("cabinet", "cups", [0.4, 0.5, 0.6], [4.0, 5.0, 6.0])
    c = store.add("round_table", "", [1.0, 2.0], [1e300, 0.0])
    d = store.add("cabinet", "", [0.7, 0.8, 0.9], [7.0, 8.0, 1 / 3])
    return store, (a, b, c, d)


def test_list_filters_pages_and_returns_every_field(tmp_path):
    before = time.time()
    store, (a, b, c, d) = _filled(tmp_path / "obs.sqlite")
    with store:
        rows = store.list()
        assert [r.id for r in rows] == [a, b, c, d]
        first = rows[0]
        assert (first.domain, first.task, first.state, first.target) == ("cabinet", "", (0.1, 0.2, 0.3),
                                                                          (1.0, 2.0, 3.0))
        assert first.stamp == (1_700_000_000, 5) and rows[1].stamp is None
        assert before - 1 <= first.stored_at <= time.time() + 1
        assert rows[3].target[2] == 1 / 3 and rows[2].target[0] == 1e300  # exact, mixed sizes are fine
        assert [r.id for r in store.list("cabinet")] == [a, b, d]          # every task of the domain
        assert [r.id for r in store.list("cabinet", "")] == [a, d]         # the default task only
        assert [r.id for r in store.list("cabinet", "cups")] == [b]
        assert store.list("kitchen") == []
        assert [r.id for r in store.list(limit=2)] == [a, b]
        assert [r.id for r in store.list(limit=2, offset=2)] == [c, d]
        assert [r.id for r in store.list("cabinet", offset=1)] == [b, d]
        assert store.list(limit=0) == []
        for bad in ({"limit": -1}, {"offset": -2}, {"limit": 1.5}, {"task": "cups"}):
            with pytest.raises(ValueError):
                store.list(**bad)


def test_forget_by_ids_domain_and_task_is_durable(tmp_path):
    path = tmp_path / "obs.sqlite"
    store, (a, b, c, d) = _filled(path)
    with pytest.raises(ValueError, match="forget what"):
        store.forget()
    with pytest.raises(ValueError, match="without a domain"):
        store.forget(task="cups")
    with pytest.raises(ValueError):
        store.forget(ids=[-1])
    assert store.forget(ids=[]) == 0
    assert store.forget(ids=[c, 10_000]) == 1                 # unknown ids are no error
    assert store.forget(ids=[b], domain="cabinet", task="") == 0  # b is of task "cups": not touched
    assert store.forget(domain="cabinet", task="cups") == 1
    assert [r.id for r in store.list()] == [a, d]
    store.close()
    with ObservationStore(path) as reopened:                   # durable: gone after a reopen
        assert [r.id for r in reopened.list()] == [a, d]
        assert reopened.forget(domain="cabinet") == 2
        assert reopened.summary() == []
    with ObservationStore(path) as reopened:
        assert reopened.list() == [] and reopened.ids() == []
        new = reopened.add("cabinet", "", [0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
        assert new > d  # AUTOINCREMENT: a forgotten id is never reused


def test_forget_many_ids_in_one_transaction(tmp_path):
    with ObservationStore(tmp_path / "obs.sqlite") as store:
        ids = [store.add("cabinet", "", [i, 0.0], [0.0, i]) for i in range(1200)]
        assert store.forget(ids=ids[:1100]) == 1100  # more ids than one SQL statement may bind
        assert store.ids() == ids[1100:]


@pytest.mark.parametrize("stamp", [(1, 1_000_000_000), (1, -1), (1.5, 0), ("1", 0), (1,), 7, (True, 0)])
def test_bad_stamps_are_refused(tmp_path, stamp):
    with ObservationStore(tmp_path / "obs.sqlite") as store:
        with pytest.raises(ValueError, match="stamp"):
            store.add("cabinet", "", [0.0], [0.0], stamp=stamp)
        assert store.count("cabinet") == 0


OLD_SCHEMA = """
CREATE TABLE observations (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    domain  TEXT NOT NULL,
    task    TEXT NOT NULL,
    state   TEXT NOT NULL,
    target  TEXT NOT NULL,
    stamp   REAL NOT NULL
);
CREATE INDEX observations_domain_task ON observations (domain, task, id);
INSERT INTO observations (domain, task, state, target, stamp) VALUES ('cabinet', '', '[0.5, 1.5]', '[2.5, 3.5]', 12.0);
"""


def test_database_of_the_first_schema_is_migrated(tmp_path):
    path = tmp_path / "obs.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(OLD_SCHEMA)
    conn.close()
    with ObservationStore(path) as store:
        (old,) = store.list()
        assert (old.state, old.target, old.stored_at, old.stamp) == ((0.5, 1.5), (2.5, 3.5), 12.0, None)
        new = store.add("cabinet", "", [1.0, 2.0], [3.0, 4.0], stamp=(3, 4))
        assert store.list()[-1].stamp == (3, 4)
        assert store.fetch("cabinet")[0].tolist() == [[0.5, 1.5], [1.0, 2.0]]
    with ObservationStore(path) as store:  # the migration runs once; reopening is a no-op
        assert [r.id for r in store.list()] == [old.id, new]
    columns = [row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(observations)")]
    assert columns[-2:] == ["stamp_sec", "stamp_nanosec"]
