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
