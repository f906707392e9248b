"""Dense, BM25 and hybrid retrieval over a Store."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

from ragworks.config import FusionMethod, SearchMode
from ragworks.documents import SearchHit, content_hash
from ragworks.embed.base import Embedder
from ragworks.retrieve.fusion import reciprocal_rank_fusion, weighted_fusion
from ragworks.store.base import Filter, FusedHybridSearch, Store

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _leg_pool() -> ThreadPoolExecutor:
    """The process's threads for running a search's BM25 leg beside its dense leg (created on first use)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="bm25-leg")
        return _POOL


class HybridRetriever:
    """Runs the dense leg, the BM25 leg, or both fused (RRF by default, or min-max weighted)."""

    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        *,
        fusion: FusionMethod = "rrf",
        rrf_k: int = 60,
        dense_weight: float = 0.5,
        candidates: int = 100,
        collapse_duplicates: bool = True,
        parallel_legs: bool = True,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.fusion = fusion
        self.rrf_k = rrf_k
        self.dense_weight = dense_weight
        self.candidates = candidates
        self.collapse_duplicates = collapse_duplicates
        self.parallel_legs = parallel_legs

    def search(
        self, query: str, *, k: int = 10, mode: SearchMode = "hybrid", flt: Filter | None = None
    ) -> list[SearchHit]:
        if not query.strip():
            return []
        n = max(self.candidates, k)
        want = k * 2 if self.collapse_duplicates else k
        dense = lexical = None
        if mode == "hybrid" and self.fusion == "rrf" and isinstance(self.store, FusedHybridSearch):
            # One round trip: the store fuses both legs itself (PostgresStore: RRF in SQL).
            qv = self.embedder.embed_queries([query])[0]
            rows = self.store.hybrid_search_ranked(qv, query, want, flt, self.rrf_k, n)
            dense_at = {r.row_id: (r.dense_rank, r.dense_score) for r in rows
                        if r.dense_rank is not None and r.dense_score is not None}
            lex_at = {r.row_id: (r.lexical_rank, r.lexical_score) for r in rows
                      if r.lexical_rank is not None and r.lexical_score is not None}
            return self._finish(self.store.hits([(r.row_id, r.score) for r in rows]), dense_at, lex_at, k)
        pending: Future[list[tuple[int, float]]] | None = None
        if mode == "hybrid" and self.parallel_legs:
            # BM25 (SQLite) runs while the query is embedded: both release the GIL, so wall time is the longer leg.
            pending = _leg_pool().submit(self.store.lexical_search, query, n, flt)
        if mode in ("dense", "hybrid"):
            try:
                qv = self.embedder.embed_queries([query])[0]
                dense = self.store.dense_search(qv, n, flt)
            except BaseException:
                if pending is not None:
                    pending.cancel()  # the dense leg's error is the one to report, not the lexical leg's
                raise
            lexical = pending.result() if pending is not None else None
        if mode == "bm25" or (mode == "hybrid" and pending is None):
            lexical = self.store.lexical_search(query, n, flt)
        if dense is not None and lexical is not None:
            if self.fusion == "weighted":
                fused = weighted_fusion([dense, lexical], [self.dense_weight, 1.0 - self.dense_weight])
            else:
                fused = reciprocal_rank_fusion([dense, lexical], k=self.rrf_k)
        else:
            fused = list(dense if dense is not None else lexical or [])
        # Materialize a little more than k so collapsing duplicates still leaves k.
        hits = self.store.hits(fused[:want])
        dense_at = {cid: (r, s) for r, (cid, s) in enumerate(dense or [], 1)}
        lex_at = {cid: (r, s) for r, (cid, s) in enumerate(lexical or [], 1)}
        return self._finish(hits, dense_at, lex_at, k)

    def _finish(self, hits: list[SearchHit], dense_at: dict[int, tuple[int, float]],
                lex_at: dict[int, tuple[int, float]], k: int) -> list[SearchHit]:
        out: list[SearchHit] = []
        seen: set[str] = set()
        for hit in hits:
            if hit.row_id in dense_at:
                hit.dense_rank, hit.dense_score = dense_at[hit.row_id]
            if hit.row_id in lex_at:
                hit.lexical_rank, hit.lexical_score = lex_at[hit.row_id]
            if self.collapse_duplicates:
                key = content_hash(" ".join(hit.chunk.text.split()))
                if key in seen:
                    continue
                seen.add(key)
            out.append(hit)
            if len(out) == k:
                break
        return out
