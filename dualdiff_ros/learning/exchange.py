"""The fleet loop's way out and in: a robot's stored observations to Parquet, recorded bags to a store.

    dualdiff observations export --db robot.db --output robot1.parquet --robot-id r1 --home-id kitchen7
    dualdiff observations import recorded_bag/ --db robot.db

Export writes the fleet format (domains/fleet_data.py) with the domain's spec naming the columns,
so robots' exports are the next general prior's training data as they are (`dualdiff train --spec
... --data exports/`). Each row keeps the observation's own header stamp when it had one (else
the time it was stored), its task, and the robot and home the command line names.

Import reads rosbag2 recordings (.mcap or .db3, a bag folder or the file itself) of the topic
/dualdiff/observations with the pure-Python `rosbags` library: no ROS install. The message type
dualdiff_interfaces/msg/Observation is registered from the package's own .msg file where it is
found, else taken from the definitions the bag carries.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..domains.spec import BUILTIN_SPECS, DomainSpec, builtin_spec
from .observations import ObservationStore

TOPIC = "/dualdiff/observations"
MSGTYPE = "dualdiff_interfaces/msg/Observation"
PAGE = 50_000  # rows per read from the store and per Parquet row group
IMPORT_CHUNK = 10_000  # observations per durable transaction on import


def _open_existing(db) -> ObservationStore:
    path = Path(db).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"--db {path}: no such observation database (the specialized-model node's "
                                "storage.path)")
    return ObservationStore(path)


def export_observations(db, output, spec: DomainSpec | None = None, domain: str | None = None,
                        task: str | None = None, robot_id: str = "", home_id: str = "") -> dict:
    """Write one domain's stored observations (optionally one task's) to a fleet Parquet file.

    The domain is the only one in the database unless named; its spec is the given one or the
    built-in spec of that name. Returns {"rows", "path", "seconds"}.
    """
    from ..domains.fleet_data import FleetWriter

    start = time.perf_counter()
    with _open_existing(db) as store:
        domains = sorted({d for d, _, _ in store.summary()})
        if domain is None:
            domain = spec.name if spec is not None else (domains[0] if len(domains) == 1 else None)
            if domain is None:
                raise ValueError(f"{store.path} holds observations of {len(domains)} domains "
                                 f"({', '.join(domains) or 'none'}): name one with --domain")
        if spec is None:
            if domain not in BUILTIN_SPECS:
                raise ValueError(f"domain {domain!r} has no built-in spec: give its spec file with --spec")
            spec = builtin_spec(domain)
        if spec.name != domain:
            raise ValueError(f"--spec is for domain {spec.name!r}, not {domain!r}: give {domain}'s spec")
        writer = FleetWriter(output, spec)
        try:
            offset = 0
            while True:
                page = store.list(domain, task, limit=PAGE, offset=offset)
                if not page:
                    break
                offset += len(page)
                for row in page:
                    if len(row.state) != spec.state_dim or len(row.target) != spec.target_dim:
                        raise ValueError(f"{store.path}: observation {row.id} has {len(row.state)} state and "
                                         f"{len(row.target)} target numbers, spec {spec.name} ({spec.source}) has "
                                         f"{spec.state_dim} and {spec.target_dim}: forget it, or use the spec it "
                                         "was recorded with")
                stamps = [r.stamp[0] + r.stamp[1] * 1e-9 if r.stamp is not None else r.stored_at for r in page]
                writer.append(np.array([r.state for r in page]), np.array([r.target for r in page]),
                              home_id=home_id or None, robot_id=robot_id or None, task=[r.task for r in page],
                              stamp=stamps)
        except BaseException:
            writer.abort()
            raise
        path = writer.close()
    return {"rows": writer.rows, "path": str(path), "domain": domain, "seconds": time.perf_counter() - start}


def observation_msg_file() -> Path | None:
    """The package's Observation.msg: in the source tree beside dualdiff_ros, or in an installed share/."""
    here = Path(__file__).resolve().parents[2] / "interfaces" / "dualdiff_interfaces" / "msg" / "Observation.msg"
    if here.is_file():
        return here
    try:
        from ament_index_python.packages import get_package_share_directory

        shared = Path(get_package_share_directory("dualdiff_interfaces")) / "msg" / "Observation.msg"
        return shared if shared.is_file() else None
    except Exception:  # no ament index (plain pip install): the bag's own definitions are used
        return None


def observation_typestore():
    """A ROS 2 Jazzy typestore that knows dualdiff_interfaces/msg/Observation (when its .msg is found)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    typestore = get_typestore(Stores.ROS2_JAZZY)
    msg = observation_msg_file()
    if msg is not None:
        typestore.register(get_types_from_msg(msg.read_text(), MSGTYPE))
    return typestore


def read_bag(bag, topic: str = TOPIC):
    """(domain, task, state, target, (sec, nanosec)) of every Observation on `topic`, in recorded order."""
    from rosbags.highlevel import AnyReader

    path = Path(bag).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such bag: give a rosbag2 folder, or its .mcap or .db3 file")
    try:
        reader = AnyReader([path], default_typestore=observation_typestore())
        reader.open()
    except Exception as e:  # rosbags' own errors: not a bag, unknown storage, conflicting types
        raise ValueError(f"{path}: cannot read it as a ROS 2 bag ({type(e).__name__}: {e}): give a rosbag2 folder, "
                         "or its .mcap or .db3 file") from None
    try:
        connections = [c for c in reader.connections if c.topic == topic]
        if not connections:
            topics = sorted({c.topic for c in reader.connections}) or ["none"]
            raise ValueError(f"{path}: no topic {topic} in this bag (it has {', '.join(topics)}): record "
                             f"{topic}, or name the topic with --topic")
        wrong = [c.msgtype for c in connections if c.msgtype != MSGTYPE]
        if wrong:
            raise ValueError(f"{path}: {topic} carries {wrong[0]}, not {MSGTYPE}")
        for connection, _, raw in reader.messages(connections=connections):
            msg = reader.deserialize(raw, connection.msgtype)
            stamp = (int(msg.header.stamp.sec), int(msg.header.stamp.nanosec))
            yield (msg.domain, msg.task, np.asarray(msg.state, dtype=np.float64).tolist(),
                   np.asarray(msg.target, dtype=np.float64).tolist(), None if stamp == (0, 0) else stamp)
    finally:
        reader.close()


def import_bag(bag, db, topic: str = TOPIC) -> dict:
    """Store every observation of a recorded bag in the database (durably, in chunks); counts per domain.

    An observation of a built-in domain whose sizes do not fit its spec is skipped (counted, the
    first named), as the specialized-model node would have refused it.
    """
    start = time.perf_counter()
    counts: dict[str, int] = {}
    sizes = {name: (builtin_spec(name).state_dim, builtin_spec(name).target_dim) for name in BUILTIN_SPECS}
    skipped, first_bad = 0, ""
    with ObservationStore(db) as store:
        chunk = []
        for index, row in enumerate(read_bag(bag, topic)):
            want = sizes.get(row[0])
            if want is not None and (len(row[2]), len(row[3])) != want:
                skipped += 1
                first_bad = first_bad or (f"message {index}: {row[0]} with {len(row[2])} state and {len(row[3])} "
                                          f"target numbers (the domain has {want[0]} and {want[1]})")
                continue
            chunk.append(row)
            counts[row[0]] = counts.get(row[0], 0) + 1
            if len(chunk) >= IMPORT_CHUNK:
                store.add_many(chunk)
                chunk = []
        if chunk:
            store.add_many(chunk)
    return {"rows": sum(counts.values()), "domains": counts, "skipped": skipped, "first_bad": first_bad,
            "seconds": time.perf_counter() - start}


def benchmark_export(rows: int = 100_000, seed: int = 0) -> dict:
    """Seconds to export `rows` stored cabinet observations to Parquet (and to store them first, in bulk)."""
    import tempfile

    from ..domains.fleet_data import read_fleet

    rng = np.random.default_rng(seed)
    states = rng.uniform([-4, -4, 0], [6, 6, 3], size=(rows, 3))
    targets = states + rng.uniform([-1, -1, 0], [1, 1, 1], size=(rows, 3))
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "robot.db"
        t0 = time.perf_counter()
        with ObservationStore(db) as store:
            for a in range(0, rows, IMPORT_CHUNK):
                store.add_many(("cabinet", "", s, y, (1_700_000_000 + i, 0))
                               for i, (s, y) in enumerate(zip(states[a:a + IMPORT_CHUNK].tolist(),
                                                             targets[a:a + IMPORT_CHUNK].tolist()), a))
        store_seconds = time.perf_counter() - t0
        result = export_observations(db, Path(tmp) / "robot.parquet", robot_id="bench", home_id="bench")
        back = read_fleet(Path(tmp) / "robot.parquet", builtin_spec("cabinet"), on_bad="refuse")
    if len(back) != rows or not np.array_equal(back.states, states):
        raise RuntimeError("the exported file holds other rows than were stored")
    return {"rows": rows, "store_seconds": round(store_seconds, 2), "export_seconds": round(result["seconds"], 2),
            "export_rows_per_second": round(rows / result["seconds"])}
