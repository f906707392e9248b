"""Embedding shards: a dump's records, chunked and embedded, written `records_per_shard` records at a time.

A shard directory holds `manifest.json` (the dump, model and shard size it was made for) and, per shard `k`,
`shard-<k>.f16.npy` (float16 vectors, one row per chunk) and `shard-<k>.docs.jsonl.gz` (the records and their
chunks). Each file is written under a temporary name, fsynced and renamed, vectors first: a shard whose docs file
exists is complete, so a run killed at any point resumes at the first incomplete shard and never writes a record
twice. Shards are independent, so any process (a pool worker, a Celery task) may write any of them.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragworks.errors import ConfigError

MANIFEST = "manifest.json"


@dataclass(frozen=True, slots=True)
class ShardManifest:
    """What a shard directory was made from; a resumed run must match it."""

    dump: str
    dump_size: int
    model: str
    records_per_shard: int
    chunk_tokens: int
    chunk_overlap: int


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def encode_docs(docs: list[dict[str, Any]]) -> bytes:
    """A shard's docs file: JSON lines, gzip-compressed."""
    lines = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs)
    return gzip.compress(lines.encode(), compresslevel=3)


class ShardDir:
    """The shards of one dump; safe for several writer processes as long as each shard has one writer."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    # --- manifest

    def manifest(self) -> ShardManifest | None:
        p = self.path / MANIFEST
        return ShardManifest(**json.loads(p.read_text())) if p.exists() else None

    def start(self, manifest: ShardManifest) -> None:
        """Create the directory for `manifest`, or check that an existing one was made for the same thing."""
        self.path.mkdir(parents=True, exist_ok=True)
        old = self.manifest()
        if old is None:
            _atomic_write(self.path / MANIFEST, json.dumps(asdict(manifest), indent=2).encode())
        elif old != manifest:
            diff = ", ".join(
                f"{k}: {v!r} ≠ {getattr(manifest, k)!r}" for k, v in asdict(old).items() if getattr(manifest, k) != v
            )
            raise ConfigError(
                f"{self.path} holds shards of another run ({diff}); use a new shard directory, or delete this one "
                "to start over"
            )

    # --- shards

    def _vectors(self, k: int) -> Path:
        return self.path / f"shard-{k:06d}.f16.npy"

    def _docs(self, k: int) -> Path:
        return self.path / f"shard-{k:06d}.docs.jsonl.gz"

    def is_complete(self, k: int) -> bool:
        return self._docs(k).exists() and self._vectors(k).exists()

    def complete(self) -> list[int]:
        """Numbers of the complete shards, ascending."""
        out = []
        for p in self.path.glob("shard-*.docs.jsonl.gz"):
            k = int(p.name[6:12])
            if self._vectors(k).exists():
                out.append(k)
        return sorted(out)

    def write(self, k: int, docs: list[dict[str, Any]], vectors: np.ndarray) -> None:
        """Write shard `k` (vectors first, then the docs file that marks it complete)."""
        self.write_encoded(k, encode_docs(docs), vectors)

    def write_encoded(self, k: int, docs_file: bytes, vectors: np.ndarray) -> None:
        """`write` with the docs already encoded by `encode_docs` (in the process that chunked them)."""
        import io

        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(vectors, dtype=np.float16))
        _atomic_write(self._vectors(k), buf.getvalue())
        _atomic_write(self._docs(k), docs_file)

    def read(self, k: int) -> tuple[list[dict[str, Any]], np.ndarray]:
        """The docs of shard `k` and their chunk vectors (float32, rows in chunk order)."""
        with gzip.open(self._docs(k), "rt", encoding="utf-8") as f:
            docs = [json.loads(line) for line in f]
        return docs, np.load(self._vectors(k)).astype(np.float32)

    def vectors(self, k: int, *, mmap: bool = True) -> np.ndarray:
        """Shard `k`'s float16 vectors, memory-mapped (the re-ranker's full-precision store)."""
        return np.load(self._vectors(k), mmap_mode="r" if mmap else None)

    def iter_shards(self) -> Iterator[tuple[int, list[dict[str, Any]], np.ndarray]]:
        for k in self.complete():
            docs, vecs = self.read(k)
            yield k, docs, vecs

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())
