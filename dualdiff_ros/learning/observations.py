"""Observed outcomes, stored durably in SQLite before anyone is told they were recorded.

The robot's own observations are the specialized model's only data, so an acknowledged
observation must survive a crash or a power cut: WAL journal with ``synchronous=FULL``
(every commit is fsynced), and ``add`` returns the id only after its commit.
"""
from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np

_SCHEMA = """
CREATE TABLE IF NOT EXISTS observations (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    domain  TEXT NOT NULL,
    task    TEXT NOT NULL,
    state   TEXT NOT NULL,   -- JSON array of floats (exact: JSON keeps float64 round-trips)
    target  TEXT NOT NULL,
    stamp   REAL NOT NULL    -- seconds since the epoch, when it was stored
);
CREATE INDEX IF NOT EXISTS observations_domain_task ON observations (domain, task, id);
"""


def _vector(name: str, values) -> list[float]:
    """A finite 1-D float list, or ValueError naming the bad value."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D list of numbers, got shape {array.shape}")
    bad = [i for i, v in enumerate(array) if not math.isfinite(v)]
    if bad:
        raise ValueError(f"{name}[{bad[0]}] is {array[bad[0]]}: every number must be finite")
    return [float(v) for v in array]


class ObservationStore:
    """(domain, task, state, target) rows in one SQLite file; safe to share between threads."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # One connection behind a lock: SQLite serializes writers anyway, and a single
        # connection keeps the WAL pragmas in one place.
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"{self.path}: SQLite refused WAL journal mode (got {mode!r})")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(_SCHEMA)

    def add(self, domain: str, task: str, state, target) -> int:
        """Store one observation; the id comes back only after the commit is on disk."""
        row = (str(domain), str(task or ""), json.dumps(_vector("state", state)),
               json.dumps(_vector("target", target)), time.time())
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                cursor = self._conn.execute(
                    "INSERT INTO observations (domain, task, state, target, stamp) VALUES (?, ?, ?, ?, ?)", row)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            return int(cursor.lastrowid)

    def count(self, domain: str, task: str = "") -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM observations WHERE domain = ? AND task = ?",
                                          (domain, task or "")).fetchone()[0])

    def ids(self, domain: str | None = None, task: str | None = None) -> list[int]:
        """Stored ids, oldest first, optionally of one domain (and task)."""
        query, args = "SELECT id FROM observations", []
        if domain is not None:
            query += " WHERE domain = ?"
            args.append(domain)
            if task is not None:
                query += " AND task = ?"
                args.append(task or "")
        with self._lock:
            return [int(r[0]) for r in self._conn.execute(query + " ORDER BY id", args)]

    def fetch(self, domain: str, task: str = "") -> tuple[np.ndarray, np.ndarray]:
        """(states [n, s], targets [n, t]) in the order they were recorded; [0, 0] arrays when none."""
        with self._lock:
            rows = self._conn.execute("SELECT state, target FROM observations WHERE domain = ? AND task = ? "
                                      "ORDER BY id", (domain, task or "")).fetchall()
        if not rows:
            return np.zeros((0, 0)), np.zeros((0, 0))
        states = [json.loads(s) for s, _ in rows]
        targets = [json.loads(t) for _, t in rows]
        if len({len(s) for s in states}) > 1 or len({len(t) for t in targets}) > 1:
            raise ValueError(f"observations of {domain}/{task!r} in {self.path} have mixed state or target sizes")
        return np.asarray(states, dtype=np.float64), np.asarray(targets, dtype=np.float64)

    def summary(self) -> list[tuple[str, str, int]]:
        """(domain, task, count) for every pair with observations."""
        with self._lock:
            return [(d, t, int(n)) for d, t, n in self._conn.execute(
                "SELECT domain, task, COUNT(*) FROM observations GROUP BY domain, task ORDER BY domain, task")]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "ObservationStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
