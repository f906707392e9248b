"""A FAISS index kept on disk as `<prefix>-<seq>.faiss`, where `seq` is the last vector-log entry it contains.

Files are written to a temporary name, fsynced and renamed, so a reader (or a restart after `kill -9`) only
ever sees complete files; the newest one wins and the store replays the log entries after its `seq`.

The kind of index follows the collection's size (`ragworks.store.ann.plan_index`): exact below 100k vectors,
IVF-Flat up to 500k, IVF-PQ (48-byte codes, candidates re-ranked exactly by the store) beyond, unless the
collection's `index_type` names one. Big IVF files are opened memory-mapped and copied into RAM only when the
index is first modified (FAISS aborts the process on a write to a mapped index).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ragworks.store import ann

# One query against an in-memory index is microseconds of work: OpenMP worker threads only add spin-wait
# (measured 60 ms with 2 threads vs 0.8 ms with 1 on 10k vectors on a loaded 2-core machine).
SEARCH_THREADS = 1

# IVF files at least this big are memory-mapped on load instead of read into RAM.
MMAP_MIN_BYTES = 64 << 20

# IVF-PQ trains 256 centroids per sub-quantizer: with fewer vectors an index type that needs training is refused.
MIN_TRAIN = 1024
_RANK = {"flat": 0, "hnsw": 1, "ivf": 1, "ivfpq": 2}

_NAME = re.compile(r"^(?P<prefix>.+)-(?P<seq>\d{12})\.faiss$")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class VectorIndex:
    """Inner-product search over unit vectors with 64-bit ids (chunk ids); exact, IVF or IVF-PQ by size."""

    def __init__(
        self, directory: Path, prefix: str, dimension: int, *, index_type: ann.IndexChoice = "auto"
    ) -> None:
        self.directory = directory
        self.prefix = prefix
        self.dimension = dimension
        self.index_type: ann.IndexChoice = index_type
        self.seq = 0
        self.plan = ann.plan_index(0, dimension, "flat")
        self.index = self._empty()
        self.mapped_from: Path | None = None  # the file the index is memory-mapped from, until first written
        self.stale = False  # an HNSW index can't remove ids: deletions wait for a rebuild (hits skip them)

    def _empty(self) -> faiss.Index:
        return ann.new_index(self.plan, self.dimension)

    @property
    def kind(self) -> ann.IndexKind:
        return self.plan.kind

    def plan_for(self, n: int) -> ann.IndexPlan:
        """The index this collection should have at `n` vectors."""
        return ann.plan_index(n, self.dimension, self.index_type)

    def outgrown(self) -> bool:
        """True when the index kind (or its IVF list count) no longer fits the number of vectors in it."""
        n = len(self)
        want = self.plan_for(n)
        if self.stale:
            return True
        if want.kind != self.plan.kind:
            if self.index_type != "auto" or _RANK[want.kind] > _RANK[self.plan.kind]:
                return not (want.needs_training and n < MIN_TRAIN)
            # hysteresis: shrink to a simpler kind only at half the threshold, so deletions don't flap
            return ann.plan_index(n * 2, self.dimension, self.index_type).kind != self.plan.kind
        return want.needs_training and want.nlist >= 4 * self.plan.nlist  # lists now 4× too long: retrain

    def rebuild(self, plan: ann.IndexPlan, sample: np.ndarray) -> None:
        """Start an empty index of `plan`, trained on `sample` when the plan needs training."""
        self.plan = plan
        self.index = self._empty()
        self.mapped_from = None
        self.stale = False
        if plan.needs_training:
            self.index.train(np.ascontiguousarray(sample, dtype=np.float32))

    # --- files

    def _files(self) -> list[tuple[int, Path]]:
        found = []
        for p in self.directory.glob(f"{self.prefix}-*.faiss"):
            m = _NAME.match(p.name)
            if m and m.group("prefix") == self.prefix:
                found.append((int(m.group("seq")), p))
        return sorted(found)

    def newest_on_disk(self) -> int:
        files = self._files()
        return files[-1][0] if files else 0

    def load(self) -> bool:
        """Load the newest complete file; False (and an empty index) when there is none or it is unreadable."""
        for seq, path in reversed(self._files()):
            mmap = path.stat().st_size >= MMAP_MIN_BYTES
            try:
                index = ann.read_index(path, mmap=mmap)
            except RuntimeError:
                continue  # unreadable file: fall back to an older one, or a rebuild from the store
            if index.d == self.dimension:
                self.index, self.seq = index, seq
                self.plan = _plan_of(index, self.dimension)
                self.mapped_from = path if mmap and self.plan.needs_training else None
                self.stale = False
                return True
        self.plan = ann.plan_index(0, self.dimension, "flat")
        self.index, self.seq, self.mapped_from = self._empty(), 0, None
        return False

    def save(self, seq: int, *, replace: bool = False) -> None:
        """Write atomically as `seq`; remove older files. A newer file from another process is left alone.

        `replace` rewrites a file of the same `seq` (a rebuild into another index kind holds the same vectors).
        """
        newest = self.newest_on_disk()
        if seq < newest or (seq == newest and not replace):
            return
        final = self.directory / f"{self.prefix}-{seq:012d}.faiss"
        tmp = self.directory / f".{final.name}.{os.getpid()}.tmp"
        faiss.write_index(self.index, str(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
        _fsync_dir(self.directory)
        self.seq = seq
        for old_seq, path in self._files():
            if old_seq < seq:
                path.unlink(missing_ok=True)
        for stray in self.directory.glob(f".{self.prefix}-*.tmp"):
            if str(os.getpid()) not in stray.name:
                try:
                    if stray.stat().st_mtime < final.stat().st_mtime - 3600:
                        stray.unlink()
                except FileNotFoundError:
                    pass

    # --- contents

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def _writable(self) -> None:
        if self.mapped_from is not None:
            self.index = ann.read_index(self.mapped_from)
            self.mapped_from = None

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self._writable()
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids.astype(np.int64))

    def remove(self, ids: Sequence[int]) -> None:
        if not len(ids):
            return
        self._writable()
        if self.plan.kind == "hnsw":
            self.stale = True
            return
        self.index.remove_ids(faiss.IDSelectorBatch(np.asarray(ids, dtype=np.int64)))

    def reset(self) -> None:
        self.index = self._empty()
        self.mapped_from = None
        self.stale = False

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        if self.index.ntotal == 0 or k <= 0:
            return []
        q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        faiss.omp_set_num_threads(SEARCH_THREADS)
        k = min(k, int(self.index.ntotal))
        if allowed is not None:
            if len(allowed) == 0:
                return []
            sel = faiss.IDSelectorBatch(allowed.astype(np.int64))
            params = (
                faiss.SearchParametersIVF(sel=sel, nprobe=self.plan.nprobe)  # type: ignore[call-arg]
                if self.plan.needs_training
                else faiss.SearchParameters(sel=sel)  # type: ignore[call-arg]
            )
            scores, ids = self.index.search(q, k, params=params)
        else:
            scores, ids = self.index.search(q, k)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    def candidates(self, k: int) -> int:
        """How many candidates to ask `search` for so that exact re-ranking can return a good top-k."""
        return max(k, self.plan.rerank) if self.plan.rerank else k

    def describe(self) -> dict[str, object]:
        return {
            "type": self.plan.kind,
            "factory": self.plan.factory(self.dimension),
            "nlist": self.plan.nlist,
            "nprobe": self.plan.nprobe,
            "pq_bytes": self.plan.pq_bytes,
            "rerank": self.plan.rerank,
            "memory_mapped": self.mapped_from is not None,
        }


def _plan_of(index: faiss.Index, dimension: int) -> ann.IndexPlan:
    """Recover the plan of an index read from a file (its kind, lists and code size)."""
    found = faiss.try_extract_index_ivf(index)
    if found is None:
        inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2) else index
        kind: ann.IndexKind = "hnsw" if isinstance(inner, faiss.IndexHNSW) else "flat"
        return ann.IndexPlan(kind, "read from file")
    ivf: Any = faiss.downcast_index(found)
    nlist = int(ivf.nlist)
    if isinstance(ivf, faiss.IndexIVFPQ):
        full = ann.plan_index(int(ivf.ntotal), dimension, "ivfpq")
        return ann.IndexPlan("ivfpq", "read from file", nlist=nlist, nprobe=ann.default_nprobe(int(ivf.ntotal), nlist),
                             pq_bytes=int(ivf.pq.M), rerank=full.rerank, pca=0 if ivf.d == dimension else int(ivf.d))
    return ann.IndexPlan("ivf", "read from file", nlist=nlist, nprobe=ann.default_nprobe(int(ivf.ntotal), nlist))
