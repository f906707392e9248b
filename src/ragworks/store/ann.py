"""Approximate nearest-neighbour indexes chosen by collection size: exact → IVF-Flat → IVF-PQ with exact re-ranking.

All indexes are inner product over unit vectors with 64-bit ids. IVF-PQ keeps `pq_bytes` bytes per vector in RAM
(48 by default: 1M vectors ≈ 56 MB with ids) and finds candidates; the top `rerank` of them are re-scored
exactly against full vectors kept elsewhere (SQLite, or a memory-mapped float16 file), which recovers the recall
that product quantization loses.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np

IndexKind = Literal["flat", "hnsw", "ivf", "ivfpq"]
IndexChoice = Literal["auto", "flat", "hnsw", "ivf", "ivfpq"]

# Below this many vectors exact search is fast enough (100k × 384-d ≈ 5 ms a query on one core) and needs no
# training; up to IVF_FLAT_MAX full float32 vectors in RAM are affordable (500k × 384-d = 768 MB); past it only
# compressed codes are kept in RAM.
FLAT_MAX = 100_000
IVF_FLAT_MAX = 500_000
PQ_BYTES = 48  # 384-d / 48 = 8 dimensions per 8-bit sub-quantizer: 48 B codes, ≤ 64 B target
TRAIN_PER_LIST = 64  # k-means training points per inverted list (FAISS warns below 39)
TRAIN_MAX = 262_144
HNSW_M = 32


@dataclass(frozen=True, slots=True)
class IndexPlan:
    """Which index to build for a collection, and why."""

    kind: IndexKind
    reason: str
    nlist: int = 0
    nprobe: int = 0
    pq_bytes: int = 0
    opq: bool = False
    pca: int = 0  # reduce to this many dimensions first (0: keep all)
    rerank: int = 0  # candidates re-scored exactly from full vectors (0: none)

    def factory(self, dimension: int) -> str:
        """The FAISS index_factory string."""
        if self.kind == "flat":
            return "Flat"
        if self.kind == "hnsw":
            return f"HNSW{HNSW_M}"
        pre = ""
        d = dimension
        if self.pca:
            pre += f"PCAR{self.pca},"
            d = self.pca
        if self.kind == "ivf":
            return f"{pre}IVF{self.nlist},Flat"
        if self.opq:
            pre = f"OPQ{self.pq_bytes}_{d}," + pre
        return f"{pre}IVF{self.nlist},PQ{self.pq_bytes}"

    @property
    def needs_training(self) -> bool:
        return self.kind in ("ivf", "ivfpq")

    def training_size(self) -> int:
        # PQ trains 256 centroids per sub-quantizer and FAISS wants ≥ 39 points per centroid
        return min(max(self.nlist * TRAIN_PER_LIST, 39 * 256 if self.kind == "ivfpq" else 0), TRAIN_MAX)

    def ram_bytes(self, n: int, dimension: int) -> int:
        """Estimated resident bytes of the index (codes, ids, centroids) for `n` vectors."""
        d = self.pca or dimension
        if self.kind == "flat":
            return n * (dimension * 4 + 8)
        if self.kind == "hnsw":
            return n * (dimension * 4 + 8 + HNSW_M * 2 * 4)
        per_vector = (d * 4 if self.kind == "ivf" else self.pq_bytes) + 8
        fixed = self.nlist * d * 4 + (256 * d * 4 if self.kind == "ivfpq" else 0) + self.pca * dimension * 4
        if self.opq:
            fixed += d * d * 4
        return n * per_vector + fixed


def ivf_lists(n: int) -> int:
    """Inverted lists for `n` vectors: the power of two nearest √n, within [64, 65536].

    √n rather than the 4–16·√n often quoted: k-means training cost grows with nlist² (sample ∝ nlist), and on
    a 2-core machine 4096 lists at 1M took many minutes to train; recall is bought back with nprobe instead.
    """
    target = math.sqrt(max(n, 1))
    return int(min(max(2 ** round(math.log2(target)), 64), 65536))


def default_nprobe(n: int, nlist: int) -> int:
    """Lists to probe so that a query scans max(25k, n/16) vectors.

    Measured on MiniLM-like vectors (bench/results/scale.json): recall@10 after re-ranking is ~0.95 at that scan
    size at both 100k (64 of 256 lists) and 1M (64 of 1024); a fixed fraction of lists falls short on small lists.
    """
    per_list = max(n / max(nlist, 1), 1.0)
    return int(min(nlist, max(8, math.ceil(max(25_000, n / 16) / per_list))))


def plan_index(
    n: int, dimension: int, choice: IndexChoice = "auto", *, pca: int = 0, opq: bool = False
) -> IndexPlan:
    """The index for a collection of `n` vectors: by size unless `choice` names a kind."""
    if choice == "auto":
        if n < FLAT_MAX:
            kind: IndexKind = "flat"
            why = f"{n:,} vectors < {FLAT_MAX:,}: exact search is fast enough and needs no training"
        elif n < IVF_FLAT_MAX:
            kind = "ivf"
            why = (
                f"{FLAT_MAX:,} ≤ {n:,} vectors < {IVF_FLAT_MAX:,}: IVF over full vectors keeps recall high and "
                "fits in RAM"
            )
        else:
            kind = "ivfpq"
            why = (
                f"{n:,} vectors ≥ {IVF_FLAT_MAX:,}: only {PQ_BYTES}-byte PQ codes are kept in RAM, candidates are "
                "re-ranked exactly from stored vectors"
            )
    else:
        kind = choice
        why = f"index_type = {choice!r} (set explicitly)"
    if kind in ("flat", "hnsw"):
        return IndexPlan(kind, why)
    nlist = ivf_lists(n)
    nprobe = default_nprobe(n, nlist)
    if kind == "ivf":
        return IndexPlan(kind, why, nlist=nlist, nprobe=nprobe, pca=pca)
    d = pca or dimension
    pq = PQ_BYTES if d % PQ_BYTES == 0 else max(m for m in range(1, 65) if d % m == 0)
    return IndexPlan(kind, why, nlist=nlist, nprobe=nprobe, pq_bytes=pq, opq=opq, pca=pca, rerank=100)


def new_index(plan: IndexPlan, dimension: int) -> faiss.Index:
    """An empty index for `plan` that accepts `add_with_ids` (trained later if `plan.needs_training`)."""
    inner = faiss.index_factory(dimension, plan.factory(dimension), faiss.METRIC_INNER_PRODUCT)
    found = faiss.try_extract_index_ivf(inner)
    if found is not None:
        ivf: Any = faiss.downcast_index(found)
        if isinstance(ivf, faiss.IndexIVFPQ):
            # Hamming pre-filtering only serves L2 search, and its training took minutes at 20k vectors
            ivf.do_polysemous_training = False  # type: ignore[attr-defined]
            # 10 k-means iterations per sub-quantizer instead of 25: same recall (0.966 vs 0.965 at 20k,
            # re-ranked), 2.5× faster training
            ivf.pq.cp.niter = 10
        ivf.nprobe = plan.nprobe
        ivf.cp.max_points_per_centroid = TRAIN_PER_LIST * 4
        return inner
    return faiss.IndexIDMap2(inner)  # flat and HNSW have no ids of their own


def set_nprobe(index: faiss.Index, nprobe: int) -> None:
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.nprobe = nprobe


def write_index(index: faiss.Index, path: Path) -> None:
    faiss.write_index(index, str(path))


def read_index(path: Path, *, mmap: bool = False) -> faiss.Index:
    """Read an index file; `mmap` leaves IVF lists on disk in the page cache (read-only: never add/remove)."""
    return faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0)


def rerank(
    query: np.ndarray, candidates: np.ndarray, k: int, fetch: Callable[[np.ndarray], np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Re-score candidate ids exactly: `fetch(ids)` returns their full vectors in the same order."""
    ids = candidates[candidates >= 0]
    if len(ids) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    vecs = fetch(ids).astype(np.float32, copy=False)
    scores = vecs @ query.astype(np.float32).ravel()
    top = np.argsort(-scores)[:k]
    return ids[top], scores[top]


def recall_at_k(found: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    """Mean share of the true top-k ids found in the returned top-k, over rows."""
    hits = sum(len(set(f[:k].tolist()) & set(t[:k].tolist())) for f, t in zip(found, truth, strict=True))
    return hits / (k * len(truth))


def search(
    index: faiss.Index,
    queries: np.ndarray,
    k: int,
    *,
    plan: IndexPlan,
    fetch: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Top-k ids per query row (-1 padded), re-ranked exactly when the plan says so and vectors are at hand."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if plan.rerank and fetch is not None:
        _, cand = index.search(q, max(plan.rerank, k))
        out = np.full((len(q), k), -1, dtype=np.int64)
        for row in range(len(q)):
            ids, _ = rerank(q[row], cand[row], k, fetch)
            out[row, : len(ids)] = ids
        return out
    _, ids = index.search(q, k)
    return np.asarray(ids)


def with_overrides(plan: IndexPlan, *, nprobe: int | None = None, rerank_n: int | None = None) -> IndexPlan:
    return replace(
        plan,
        nprobe=plan.nprobe if nprobe is None else nprobe,
        rerank=plan.rerank if rerank_n is None else rerank_n,
    )
