"""Fleet data as Parquet: one row per observation, the columns a DomainSpec names.

    state.<name> ...  float, one column per state field of the spec, in any column order
    target.<name> ... float, one per target field
    home_id, robot_id, task   optional text (which home, which robot, which sub-task)
    stamp                     optional float, seconds since the epoch (when it was observed)

A path is one .parquet file or a folder of them (searched recursively, read in name order).
Files are read lazily, a batch of rows at a time, so a folder larger than memory streams through
`iter_batches`. Why Parquet: every robot, every notebook and every data tool writes it; the columns
are self-describing (a missing field is an error that names it), and pyarrow reads a float
column at memory speed. Training still wants the rows in memory or as memmapped shards
(diffusion/shards.py: random batches), so Parquet is the exchange format, not the training one.

Bad rows: a missing column refuses the file (error naming the file, the column and the fix); a
row with a non-finite number, a value outside its field's range or a target outside the spec's
plausible range is skipped and counted, and the first one is named (file and row), or, with
``on_bad="refuse"``, refused with that same message.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .spec import DomainSpec

TEXT_COLUMNS = ("home_id", "robot_id", "task")
STAMP = "stamp"
SPEC_KEY = b"dualdiff.spec"   # a written file's schema metadata: the spec it was written for (JSON)
BATCH_ROWS = 65_536
ON_BAD = ("skip", "refuse")


class FleetDataError(ValueError):
    """Data that cannot be read for this spec: names the file, the column or row, and the fix."""


@dataclass
class ReadReport:
    """What a read saw: rows read, kept and skipped, and the first skipped row in words."""

    files: int = 0
    rows_read: int = 0
    rows_skipped: int = 0
    first_bad: str = ""
    seconds: float = 0.0      # the whole read (read_fleet), decoding included

    @property
    def rows_kept(self) -> int:
        return self.rows_read - self.rows_skipped

    def describe(self) -> str:
        text = f"{self.rows_kept} rows kept of {self.rows_read} in {self.files} file(s)"
        if self.rows_skipped:
            text += f"; {self.rows_skipped} skipped, the first: {self.first_bad}"
        return text


@dataclass
class FleetRows:
    """Rows of one domain: states [n, s] and targets [n, d] (float64, spec order) and the optional columns."""

    states: np.ndarray
    targets: np.ndarray
    home_id: np.ndarray | None = None    # object arrays of str (None where the file had no such column)
    robot_id: np.ndarray | None = None
    task: np.ndarray | None = None
    stamp: np.ndarray | None = None      # float64 seconds
    report: ReadReport = field(default_factory=ReadReport)

    def __len__(self) -> int:
        return len(self.targets)


def parquet_files(path) -> list[Path]:
    """The .parquet files of a path: the file itself, or every one under the folder, in name order."""
    path = Path(path).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.parquet") if p.is_file())
        if not files:
            raise FleetDataError(f"{path}: no .parquet files in this folder: give a .parquet file or a folder of them")
        return files
    raise FleetDataError(f"{path}: no such file or folder: give a .parquet file or a folder of them")


def _check_schema(path: Path, schema, spec: DomainSpec) -> list[str]:
    """The optional columns this file has; FleetDataError for a missing or mistyped column."""
    import pyarrow as pa

    names = set(schema.names)
    for column in spec.state_columns + spec.target_columns:
        if column not in names:
            kind = column.split(".")[0]
            present = sorted(n for n in names if n.startswith(kind + ".")) or ["none"]
            raise FleetDataError(
                f"{path}: column {column!r} is missing (spec {spec.name} from {spec.source} needs "
                f"{', '.join(spec.state_columns if kind == 'state' else spec.target_columns)}; the file has "
                f"{', '.join(present)}): write that column, or use the spec the data was written for")
        kind = schema.field(column).type
        if not (pa.types.is_floating(kind) or pa.types.is_integer(kind)):
            raise FleetDataError(f"{path}: column {column!r} has type {kind}, not a number: write it as float64")
    optional = []
    for column in TEXT_COLUMNS:
        if column in names:
            kind = schema.field(column).type
            if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_dictionary(kind)):
                raise FleetDataError(f"{path}: column {column!r} has type {kind}: write it as text (string)")
            optional.append(column)
    if STAMP in names:
        kind = schema.field(STAMP).type
        if not (pa.types.is_floating(kind) or pa.types.is_integer(kind)):
            raise FleetDataError(f"{path}: column 'stamp' has type {kind}: write seconds since the epoch as float64")
        optional.append(STAMP)
    written_for = (schema.metadata or {}).get(SPEC_KEY)
    if written_for:
        try:
            other = json.loads(written_for).get("name")
        except (ValueError, AttributeError):
            other = None
        if other and other != spec.name:
            raise FleetDataError(f"{path}: written for domain {other!r}, read with spec {spec.name!r} "
                                 f"({spec.source}): use the {other} spec, or rewrite the file")
    return optional


def _floats(batch, columns: list[str]) -> np.ndarray:
    out = np.empty((batch.num_rows, len(columns)), dtype=np.float64)
    for j, name in enumerate(columns):
        column = batch.column(name)
        if column.null_count:
            column = column.cast("float64").fill_null(float("nan"))
        out[:, j] = column.to_numpy(zero_copy_only=False)
    return out


def _texts(batch, name: str) -> np.ndarray:
    column = batch.column(name)
    if column.null_count:
        column = column.fill_null("")
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=object)


def iter_batches(path, spec: DomainSpec, on_bad: str = "skip", batch_rows: int = BATCH_ROWS,
                 report: ReadReport | None = None):
    """Good rows of every file under `path`, one FleetRows per batch read (lazily); `report` accumulates."""
    import pyarrow.parquet as pq

    if on_bad not in ON_BAD:
        raise ValueError(f"on_bad={on_bad!r}: use one of {ON_BAD}")
    report = report if report is not None else ReadReport()
    files = parquet_files(path)
    schemas = []
    for f in files:  # every file's columns before any row: a bad file late in a folder fails fast
        try:
            schemas.append(_check_schema(f, pq.read_schema(f), spec))
        except FleetDataError:
            raise
        except Exception as e:  # pyarrow's ArrowInvalid etc.: not a Parquet file
            raise FleetDataError(f"{f}: not a readable Parquet file ({e}): write it with pyarrow or pandas "
                                 "(to_parquet)") from None
    for f, optional in zip(files, schemas):
        report.files += 1
        offset = 0
        parquet = pq.ParquetFile(f)
        columns = spec.state_columns + spec.target_columns + optional
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
            states, targets = _floats(batch, spec.state_columns), _floats(batch, spec.target_columns)
            stamp = _floats(batch, [STAMP])[:, 0] if STAMP in optional else None
            bad = spec.bad_rows(states, targets)
            if stamp is not None:
                bad |= ~np.isfinite(stamp)
            texts = {c: _texts(batch, c) for c in TEXT_COLUMNS if c in optional}
            n_bad = int(bad.sum())
            if n_bad:
                i = int(np.flatnonzero(bad)[0])
                reason = spec.why_bad(states[i], targets[i]) or f"stamp is {stamp[i]}: give finite seconds"
                where = f"{f} row {offset + i}: {reason}"
                if on_bad == "refuse":
                    raise FleetDataError(f"{where}: fix or drop the row (or read with bad rows skipped)")
                if not report.first_bad:
                    report.first_bad = where
                keep = ~bad
                states, targets = states[keep], targets[keep]
                stamp = stamp[keep] if stamp is not None else None
                texts = {c: v[keep] for c, v in texts.items()}
            report.rows_read += batch.num_rows
            report.rows_skipped += n_bad
            offset += batch.num_rows
            yield FleetRows(states, targets, texts.get("home_id"), texts.get("robot_id"), texts.get("task"),
                            stamp, report)


def read_fleet(path, spec: DomainSpec, on_bad: str = "skip", batch_rows: int = BATCH_ROWS) -> FleetRows:
    """Every good row under `path` in memory (float64), with the read's report.

    An optional column present in some files only is filled with "" (text) or NaN (stamp) for
    the others' rows.
    """
    report = ReadReport()
    t0 = time.perf_counter()
    parts = list(iter_batches(path, spec, on_bad, batch_rows, report))
    report.seconds = time.perf_counter() - t0
    if not parts:
        empty = FleetRows(np.zeros((0, spec.state_dim)), np.zeros((0, spec.target_dim)), report=report)
        return empty

    def joined(name, fill):
        if all(getattr(p, name) is None for p in parts):
            return None
        return np.concatenate([getattr(p, name) if getattr(p, name) is not None
                               else np.full(len(p), fill, dtype=object if fill == "" else np.float64)
                               for p in parts])

    return FleetRows(np.concatenate([p.states for p in parts]), np.concatenate([p.targets for p in parts]),
                     joined("home_id", ""), joined("robot_id", ""), joined("task", ""), joined(STAMP, np.nan),
                     report)


def fleet_table(spec: DomainSpec, states, targets, home_id=None, robot_id=None, task=None, stamp=None):
    """A pyarrow Table in the fleet format; the spec rides in the schema metadata."""
    import pyarrow as pa

    states = np.asarray(states, dtype=np.float64).reshape(-1, spec.state_dim)
    targets = np.asarray(targets, dtype=np.float64).reshape(-1, spec.target_dim)
    if len(states) != len(targets):
        raise ValueError(f"{len(states)} states but {len(targets)} targets: they must pair up")
    n = len(states)
    columns = {c: states[:, j] for j, c in enumerate(spec.state_columns)}
    columns.update({c: targets[:, j] for j, c in enumerate(spec.target_columns)})
    for name, values in (("home_id", home_id), ("robot_id", robot_id), ("task", task)):
        if values is not None:
            columns[name] = pa.array([str(values)] * n if isinstance(values, str) else [str(v) for v in values],
                                     type=pa.string())
    if stamp is not None:
        columns[STAMP] = np.asarray(stamp, dtype=np.float64).reshape(n)
    table = pa.table(columns)
    return table.replace_schema_metadata({SPEC_KEY: json.dumps(spec.to_dict()).encode()})


class FleetWriter:
    """Append batches of rows to one Parquet file (each append one or more row groups); close() finishes it.

    The file is written beside its final name and renamed on close, so a reader never sees half of it.
    """

    def __init__(self, path, spec: DomainSpec):
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.spec = spec
        self._tmp = self.path.with_name(self.path.name + ".partial")
        self._writer = None
        self.rows = 0

    def append(self, states, targets, home_id=None, robot_id=None, task=None, stamp=None) -> None:
        import pyarrow.parquet as pq

        table = fleet_table(self.spec, states, targets, home_id, robot_id, task, stamp)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._tmp, table.schema)
        elif table.schema != self._writer.schema:
            table = table.cast(self._writer.schema)
        self._writer.write_table(table, row_group_size=BATCH_ROWS)
        self.rows += table.num_rows

    def close(self) -> Path:
        if self._writer is None:  # no rows: still a valid file with the spec's columns
            self.append(np.zeros((0, self.spec.state_dim)), np.zeros((0, self.spec.target_dim)))
        self._writer.close()
        self._tmp.replace(self.path)
        return self.path

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "FleetWriter":
        return self

    def __exit__(self, kind, *exc) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def write_fleet(path, spec: DomainSpec, states, targets, home_id=None, robot_id=None, task=None,
                stamp=None) -> Path:
    """Rows in the fleet format to one Parquet file (`home_id` etc.: one string for all rows, or one per row)."""
    with FleetWriter(path, spec) as writer:
        writer.append(states, targets, home_id, robot_id, task, stamp)
    return writer.path


# ---- the thesis's domains, as fleet data --------------------------------------------------------
def write_builtin(name: str, output, rows: int, seed: int = 0) -> Path:
    """A built-in domain's generated general data as a fleet Parquet file (the same rows `dualdiff train` uses).

    cabinet / round_table: `rows` pairs from the domain's generator; navigate_to: the simulator's
    general data from `rows` tasks (about 28 points a task; needs PyBullet), with each row's
    object type as its `task`.
    """
    from .spec import builtin_spec

    spec = builtin_spec(name)
    if name == "navigate_to":
        from ..sim import general_dataset
        from ..sim.scene import OBJECT_TYPES

        data = general_dataset(rows, seed, progress=False)
        task = [OBJECT_TYPES[int(k)] for k in data.object_type]
        return write_fleet(output, spec, data.states, data.targets, task=task)
    from . import get_domain

    data = get_domain(name).general_dataset(rows, seed)
    return write_fleet(output, spec, data.conditions, data.targets)


def benchmark_ingest(rows: int = 1_000_000, output=None, seed: int = 0, with_text: bool = True) -> dict:
    """Rows/s reading a fleet file of `rows` mug-counter-like rows (4 state, 2 target, ids and stamp)."""
    import tempfile

    from .spec import DomainSpec

    spec = DomainSpec.from_dict({
        "name": "bench", "description": "ingest benchmark",
        "state": [{"name": n, "unit": "m", "range": [-100, 100]} for n in ("x", "y", "yaw", "width")],
        "target": [{"name": "x", "unit": "m"}, {"name": "y", "unit": "m"}],
        "frame": {"type": "se2", "origin": ["x", "y"], "yaw": "yaw"}}, "benchmark")
    rng = np.random.default_rng(seed)
    states = rng.uniform(-10, 10, size=(rows, 4))
    targets = rng.uniform(-10, 10, size=(rows, 2))
    extra = {}
    if with_text:
        extra = {"home_id": [f"home{i % 100}" for i in range(rows)], "robot_id": "robot0", "task": "",
                 "stamp": 1.7e9 + np.arange(rows, dtype=np.float64)}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(output or tmp) / "bench.parquet"
        t0 = time.perf_counter()
        write_fleet(path, spec, states, targets, **extra)
        write_seconds = time.perf_counter() - t0
        size = path.stat().st_size
        t0 = time.perf_counter()
        data = read_fleet(path, spec)
        read_seconds = time.perf_counter() - t0
    if len(data) != rows or not np.array_equal(data.states, states):
        raise RuntimeError("the benchmark read back other rows than it wrote")
    return {"rows": rows, "file_mb": round(size / 1e6, 1), "write_seconds": round(write_seconds, 3),
            "read_seconds": round(read_seconds, 3), "rows_per_second": round(rows / read_seconds),
            "with_text_columns": with_text}
