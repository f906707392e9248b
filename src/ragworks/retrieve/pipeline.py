"""SearchPipeline: first-stage retrieval, then the optional stages the settings switch on, in a fixed order.

    query transform (LLM variants, RRF) → first stage (dense / BM25 / hybrid) → reranker → near-duplicate
    collapse → MMR → retrieval unit (top k chunks, small-to-big windows, or document-first passages)

Each optional stage widens the first stage's candidate list (the reranker to `rerank_candidates`, hygiene to
3·k) so it has something to choose from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ragworks.config import SearchMode, Settings
from ragworks.documents import SearchHit
from ragworks.embed.base import Embedder
from ragworks.generate.base import LLM
from ragworks.retrieve.base import Reranker, Retriever
from ragworks.retrieve.hierarchical import DOCUMENT_POOL, RetrievalUnit, document_first, small_to_big
from ragworks.retrieve.hygiene import collapse_near_duplicates, diversify
from ragworks.retrieve.transforms import QueryTransform, fused_search
from ragworks.store.base import ChunkWindows, Filter, Store


@dataclass
class SearchPipeline:
    retriever: Retriever
    store: Store
    embedder: Embedder
    reranker: Reranker | None = None
    transform: QueryTransform | None = None
    rerank_candidates: int = 30
    mmr_lambda: float | None = None
    near_duplicate_threshold: float | None = None
    retrieval_unit: RetrievalUnit = "chunk"
    window: int = 1
    documents: int = 4

    @classmethod
    def from_settings(cls, settings: Settings, retriever: Retriever, *, store: Store, embedder: Embedder,
                      reranker: Reranker | None, llm: Callable[[], LLM | None]) -> SearchPipeline:
        """The pipeline `settings` describe; `llm` is called only when a query transform needs the model."""
        transform = None
        if settings.query_transform != "none":
            model = llm()
            if model is None:
                from ragworks.errors import ConfigError

                raise ConfigError(f"query_transform = {settings.query_transform!r} needs an LLM (set llm to "
                                  "'local', 'openai' or 'fireworks')")
            transform = QueryTransform(model, settings.query_transform, count=settings.query_transform_count)
        return cls(retriever, store, embedder, reranker=reranker, transform=transform,
                   rerank_candidates=settings.rerank_candidates, mmr_lambda=settings.mmr_lambda,
                   near_duplicate_threshold=settings.near_duplicate_threshold,
                   retrieval_unit=settings.retrieval_unit, window=settings.retrieval_window,
                   documents=settings.retrieval_documents)

    def candidates(self, k: int) -> int:
        n = k
        if self.reranker is not None:
            n = max(n, self.rerank_candidates)
        if self.mmr_lambda is not None or self.near_duplicate_threshold is not None:
            n = max(n, 3 * k)
        if self.retrieval_unit == "small-to-big":
            n = max(n, 2 * k)  # adjacent hits merge into one source: more hits to fill k sources
        elif self.retrieval_unit == "document-first":
            n = max(n, DOCUMENT_POOL)  # documents are scored from a wide list of their chunks
        return n

    def search(self, query: str, *, k: int, mode: SearchMode = "hybrid", flt: Filter | None = None
               ) -> list[SearchHit]:
        n = self.candidates(k)

        def first_stage(text: str, size: int) -> list[SearchHit]:
            return self.retriever.search(text, k=size, mode=mode, flt=flt)

        if self.transform is not None and query.strip():
            hits = fused_search(first_stage, self.transform.variants(query), n)
        else:
            hits = first_stage(query, n)
        if self.reranker is not None:
            hits = self.reranker.rerank(query, hits, len(hits))
        if self.near_duplicate_threshold is not None:
            hits = collapse_near_duplicates(hits, self.near_duplicate_threshold)
        if self.mmr_lambda is not None:
            hits = diversify(hits, k, self.mmr_lambda, store=self.store, embedder=self.embedder)
        return self.arrange(hits, k)

    def arrange(self, hits: list[SearchHit], k: int) -> list[SearchHit]:
        """The retrieval unit applied to ranked chunk hits: the top k chunks, windows, or best documents' passages."""
        if self.retrieval_unit == "small-to-big":
            if not isinstance(self.store, ChunkWindows):
                from ragworks.errors import ConfigError

                raise ConfigError(f"retrieval_unit = 'small-to-big' needs a store that reads chunk windows; "
                                  f"{type(self.store).__name__} does not")
            return small_to_big(hits, self.store, window=self.window, k=k)
        if self.retrieval_unit == "document-first":
            return document_first(hits, k=k, documents=self.documents)
        return hits[:k]
