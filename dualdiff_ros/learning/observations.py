"""Observed outcomes, stored durably in SQLite before anyone is told they were recorded.

The robot's own observations are the specialized model's only data, so an acknowledged
observation must survive a crash or a power cut: WAL journal with ``synchronous=FULL``
(every commit is fsynced), and ``add`` returns the id only after its commit. ``forget``
is durable the same way (and ``secure_delete`` overwrites the forgotten rows' bytes), so an
absurd observation that was listed and forgotten never comes back after a restart.

Schema migrations run on open and keep older files working: a database written before the
optional header stamp existed gets the ``stamp_sec``/``stamp_nanosec`` columns added (NULL
for its old rows).
"""
from __future__ import annotations

import builtins
import json
import math
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_SCHEMA = """
CREATE TABLE IF NOT EXISTS observations (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    domain  TEXT NOT NULL,
    task    TEXT NOT NULL,
    state   TEXT NOT NULL,   -- JSON array of floats (exact: JSON keeps float64 round-trips)
    target  TEXT NOT NULL,
    stamp   REAL NOT NULL,   -- seconds since the epoch, when it was stored
    stamp_sec     INTEGER,   -- the observation's own header stamp (builtin_interfaces/Time), or NULL
    stamp_nanosec INTEGER
);
CREATE INDEX IF NOT EXISTS observations_domain_task ON observations (domain, task, id);
"""

# Columns added after the first release: (name, SQL type), added by ALTER TABLE when missing.
_ADDED_COLUMNS = (("stamp_sec", "INTEGER"), ("stamp_nanosec", "INTEGER"))
_ID_CHUNK = 500  # ids per statement (SQLite's variable limit is 999 on old builds)


@dataclass(frozen=True)
class StoredObservation:
    """One stored row, as ``ObservationStore.list`` returns it."""

    id: int
    domain: str
    task: str
    state: tuple[float, ...]
    target: tuple[float, ...]
    stored_at: float                  # seconds since the epoch, when it was stored
    stamp: tuple[int, int] | None     # (sec, nanosec) of the observation's header, if given


def _vector(name: str, values) -> list[float]:
    """A finite 1-D float list, or ValueError naming the bad value."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D list of numbers, got shape {array.shape}")
    bad = [i for i, v in enumerate(array) if not math.isfinite(v)]
    if bad:
        raise ValueError(f"{name}[{bad[0]}] is {array[bad[0]]}: every number must be finite")
    return [float(v) for v in array]


def _stamp(stamp) -> tuple[int | None, int | None]:
    """(sec, nanosec) as stored: integers with 0 <= nanosec < 1e9, or (None, None)."""
    if stamp is None:
        return None, None
    try:
        sec, nanosec = stamp
        if isinstance(sec, bool) or isinstance(nanosec, bool) or int(sec) != sec or int(nanosec) != nanosec:
            raise TypeError
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"stamp must be (sec, nanosec) integers or None, got {stamp!r}") from None
    if not 0 <= int(nanosec) < 1_000_000_000:
        raise ValueError(f"stamp nanosec {nanosec} must be in [0, 1e9)")
    return int(sec), int(nanosec)


def _non_negative(name: str, value) -> int:
    if isinstance(value, bool) or int(value) != value or value < 0:
        raise ValueError(f"{name}={value!r} must be a non-negative integer")
    return int(value)


def _where(domain: str | None, task: str | None) -> tuple[str, list]:
    """SQL filter: every row (domain None), one domain's rows (task None) or one domain/task."""
    if domain is None:
        if task is not None:
            raise ValueError(f"task {task!r} given without a domain: name the domain too")
        return "", []
    if task is None:
        return "domain = ?", [str(domain)]
    return "domain = ? AND task = ?", [str(domain), str(task or "")]


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
        self._conn.execute("PRAGMA secure_delete=ON")  # forgotten rows are overwritten, not just unlinked
        self._conn.executescript(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Add the columns an older file lacks (in one write transaction: safe against a second opener)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                have = {row[1] for row in self._conn.execute("PRAGMA table_info(observations)")}
                for name, kind in _ADDED_COLUMNS:
                    if name not in have:
                        self._conn.execute(f"ALTER TABLE observations ADD COLUMN {name} {kind}")
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def add(self, domain: str, task: str, state, target, stamp: tuple[int, int] | None = None) -> int:
        """Store one observation; the id comes back only after the commit is on disk.

        `stamp` is the observation's own header stamp (sec, nanosec), or None.
        """
        row = (str(domain), str(task or ""), json.dumps(_vector("state", state)),
               json.dumps(_vector("target", target)), time.time(), *_stamp(stamp))
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                cursor = self._conn.execute(
                    "INSERT INTO observations (domain, task, state, target, stamp, stamp_sec, stamp_nanosec) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)", row)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            return int(cursor.lastrowid)

    def add_many(self, rows) -> list[int]:
        """Store many observations in one durable transaction (an import); their ids, in order.

        `rows`: (domain, task, state, target, stamp) tuples as `add` takes them. Either all are
        stored or, if one is refused (a non-finite number, a bad stamp), none is.
        """
        prepared = [(str(d), str(t or ""), json.dumps(_vector("state", s)), json.dumps(_vector("target", y)),
                     time.time(), *_stamp(stamp)) for d, t, s, y, stamp in rows]
        ids = []
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for row in prepared:
                    ids.append(int(self._conn.execute(
                        "INSERT INTO observations (domain, task, state, target, stamp, stamp_sec, stamp_nanosec) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)", row).lastrowid))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return ids

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

    def list(self, domain: str | None = None, task: str | None = None, limit: int | None = None,
             offset: int = 0) -> builtins.list[StoredObservation]:
        """Stored rows, oldest first: all (domain None), one domain's (task None) or one domain/task's.

        `limit` None = every row from `offset` on; page with `offset`.
        """
        where, args = _where(domain, task)
        offset = _non_negative("offset", offset)
        query = ("SELECT id, domain, task, state, target, stamp, stamp_sec, stamp_nanosec FROM observations"
                 + (f" WHERE {where}" if where else "") + " ORDER BY id LIMIT ? OFFSET ?")
        args += [-1 if limit is None else _non_negative("limit", limit), offset]
        with self._lock:
            rows = self._conn.execute(query, args).fetchall()
        return [StoredObservation(int(i), d, t, tuple(json.loads(s)), tuple(json.loads(y)), float(at),
                                  None if sec is None else (int(sec), int(nsec or 0)))
                for i, d, t, s, y, at, sec, nsec in rows]

    def forget(self, ids=None, domain: str | None = None, task: str | None = None) -> int:
        """Delete rows and return how many went; durable (fsynced) before it returns.

        ids given: those ids (only the ones of `domain`/`task` when those are given too; an empty
        list forgets nothing). ids None: every row of `domain` (task None) or of `domain`/`task`.
        Nothing given is a ValueError, so a forgotten argument never wipes the store.
        """
        where, args = _where(domain, task)
        if ids is None and domain is None:
            raise ValueError("forget what? give ids, or a domain (and task) to forget all of its observations")
        if ids is not None:
            if isinstance(ids, (str, bytes)):
                raise ValueError(f"ids must be a list of integers, got {ids!r}")
            ids = sorted({_non_negative("id", i) for i in ids})
            if not ids:
                return 0
            chunks = [ids[k:k + _ID_CHUNK] for k in range(0, len(ids), _ID_CHUNK)]
        else:
            chunks = [None]
        removed = 0
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for chunk in chunks:
                    clauses, values = ([where] if where else []), builtins.list(args)
                    if chunk is not None:
                        clauses.append(f"id IN ({', '.join('?' * len(chunk))})")
                        values += chunk
                    removed += self._conn.execute("DELETE FROM observations WHERE " + " AND ".join(clauses),
                                                  values).rowcount
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return removed

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "ObservationStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
