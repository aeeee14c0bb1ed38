"""Training data on disk in shards that each rank reads lazily: numpy .npy files, memory-mapped.

Why .npy memmaps (not Arrow/Parquet): every training step reads a random global batch of rows,
and a fixed-width uncompressed row is one seek away in a memmap (the page cache does the rest),
where Parquet would decompress a row group per random row; numpy is already a dependency and
pyarrow is not (about 100 MB). A 1.9M-row navigate-to set (267 condition + 2 target float32 per
row) is about 2 GB: no rank ever holds it, each reads only its own slice of every batch.

Layout of a shard set (a folder):
    manifest.json                      written last, atomically: a folder without it is incomplete
    shard-00000.<column>.npy ...       one file per column per shard, each written atomically
The manifest lists every file with its rows and SHA-256, and ``data_sha256``: the same digest as
``training.data_digest`` of the whole set in memory (targets, then conditions, as float64), so a
model trained from shards records the digest a one-process run on the same rows would.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

FORMAT = "dualdiff-shards/1"
MANIFEST = "manifest.json"
REQUIRED = ("conditions", "targets")


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


class ShardWriter:
    """Append rows (column arrays of one length), flushed as shards of `rows_per_shard` rows; `close()` seals."""

    def __init__(self, directory, rows_per_shard: int = 65_536, dtypes: dict | None = None, meta: dict | None = None):
        self.root = Path(directory)
        self.root.mkdir(parents=True, exist_ok=True)
        if (self.root / MANIFEST).exists():
            raise FileExistsError(f"{self.root} already holds a shard set: pick another folder or delete it")
        self.rows_per_shard = int(rows_per_shard)
        self.dtypes = {"conditions": np.float32, "targets": np.float32, **(dtypes or {})}
        self.meta = dict(meta or {})
        self.shards: list[dict] = []
        self._pending: dict[str, list[np.ndarray]] = {}
        self._pending_rows = 0
        self._columns: dict | None = None

    def append(self, **columns: np.ndarray) -> None:
        missing = [c for c in REQUIRED if c not in columns]
        lengths = {len(v) for v in columns.values()}
        if missing or len(lengths) != 1:
            raise ValueError(f"append needs columns {REQUIRED} (missing {missing}) of one length, got {lengths}")
        arrays = {k: np.asarray(v, dtype=self.dtypes.get(k, np.asarray(v).dtype)) for k, v in columns.items()}
        for name in REQUIRED:
            if arrays[name].ndim != 2 or not np.isfinite(arrays[name]).all():
                raise ValueError(f"{name} must be a 2-D array of finite numbers (float32), got {arrays[name].shape}")
        layout = {k: {"dtype": v.dtype.str, "shape": list(v.shape[1:])} for k, v in arrays.items()}
        if self._columns is None:
            self._columns = layout
        elif layout != self._columns:
            raise ValueError(f"columns {layout} differ from the first rows' {self._columns}")
        for k, v in arrays.items():
            self._pending.setdefault(k, []).append(v)
        self._pending_rows += lengths.pop()
        while self._pending_rows >= self.rows_per_shard:
            self._flush(self.rows_per_shard)

    def _flush(self, rows: int) -> None:
        joined = {k: np.concatenate(v) for k, v in self._pending.items()}
        name = f"shard-{len(self.shards):05d}"
        files = {}
        for column, values in joined.items():
            path = self.root / f"{name}.{column}.npy"
            _atomic_write(path, lambda f, a=values[:rows]: np.save(f, a, allow_pickle=False))
            files[column] = {"file": path.name, "sha256": _file_sha256(path)}
        self.shards.append({"name": name, "rows": rows, "files": files})
        self._pending = {k: [v[rows:]] for k, v in joined.items()}
        self._pending_rows -= rows

    def close(self) -> "ShardSet":
        if self._pending_rows:
            self._flush(self._pending_rows)
        if not self.shards:
            raise ValueError("no rows were written")
        manifest = {"format": FORMAT, "rows": sum(s["rows"] for s in self.shards), "columns": self._columns,
                    "shards": self.shards, "meta": self.meta}
        manifest["data_sha256"] = ShardSet(self.root, manifest).compute_data_sha256()
        text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
        _atomic_write(self.root / MANIFEST, lambda f: f.write(text.encode()))
        return ShardSet(self.root)


class ShardSet:
    """A sealed shard set; `read(indices)` gathers rows (float64) from the memmaps, in the order asked."""

    def __init__(self, directory, manifest: dict | None = None):
        self.root = Path(directory)
        if manifest is None:
            path = self.root / MANIFEST
            if not path.is_file():
                raise FileNotFoundError(f"{self.root} has no {MANIFEST}: not a (complete) shard set; "
                                        "write one with `dualdiff navigate-data`")
            manifest = json.loads(path.read_text())
        if manifest.get("format") != FORMAT:
            raise ValueError(f"{self.root}: format {manifest.get('format')!r}, expected {FORMAT!r}")
        self.manifest = manifest
        self.offsets = np.concatenate([[0], np.cumsum([s["rows"] for s in manifest["shards"]])]).astype(np.int64)
        self._maps: dict[tuple[int, str], np.ndarray] = {}

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def data_sha256(self) -> str:
        return self.manifest["data_sha256"]

    @property
    def meta(self) -> dict:
        return self.manifest.get("meta", {})

    def column_dim(self, column: str) -> int:
        return int(np.prod(self.manifest["columns"][column]["shape"]))

    def _map(self, shard: int, column: str) -> np.ndarray:
        key = (shard, column)
        if key not in self._maps:
            entry = self.manifest["shards"][shard]
            mm = np.load(self.root / entry["files"][column]["file"], mmap_mode="r", allow_pickle=False)
            if len(mm) != entry["rows"]:
                raise ValueError(f"{self.root}/{entry['files'][column]['file']} has {len(mm)} rows, "
                                 f"the manifest says {entry['rows']}: the shard set is damaged")
            self._maps[key] = mm
        return self._maps[key]

    def read(self, indices, column: str) -> np.ndarray:
        """Rows `indices` (global row numbers, any order) of one column."""
        idx = np.asarray(indices, dtype=np.int64)
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"row indices must be in 0..{len(self) - 1}")
        shard = np.searchsorted(self.offsets, idx, side="right") - 1
        spec = self.manifest["columns"][column]
        out = np.empty((len(idx), *spec["shape"]), dtype=np.dtype(spec["dtype"]))
        for s in np.unique(shard):
            mask = shard == s
            out[mask] = self._map(int(s), column)[idx[mask] - self.offsets[s]]
        return out

    def chunks(self, column: str):
        """Each shard's whole column in order (for one streaming pass)."""
        for s in range(len(self.manifest["shards"])):
            yield np.asarray(self._map(s, column))

    def compute_data_sha256(self) -> str:
        """training.data_digest(conditions, targets) of the whole set, streamed shard by shard."""
        h = hashlib.sha256()
        for column in ("targets", "conditions"):
            for part in self.chunks(column):
                h.update(np.ascontiguousarray(part, dtype=np.float64).tobytes())
        return h.hexdigest()

    def verify(self) -> None:
        """Recompute every file's SHA-256 against the manifest; ValueError naming the first that differs."""
        for entry in self.manifest["shards"]:
            for f in entry["files"].values():
                if _file_sha256(self.root / f["file"]) != f["sha256"]:
                    raise ValueError(f"{self.root}/{f['file']} does not match its SHA-256 in {MANIFEST}")


class ShardRows:
    """Rows of a ShardSet normalized for `model` as they are read: batch(indices) -> (y0, c)."""

    def __init__(self, shards: ShardSet, model):
        self.shards, self.model = shards, model

    def __len__(self) -> int:
        return len(self.shards)

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = idx.numpy()
        conditions = self.shards.read(rows, "conditions").astype(np.float64)
        targets = self.shards.read(rows, "targets").astype(np.float64)
        y = self.model.encode_targets(conditions, targets)
        c = (self.model.normalize_conditions(conditions) if self.model.condition_dim
             else torch.zeros(len(rows), 0))
        return y, c
