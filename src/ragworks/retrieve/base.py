"""Retrieval interfaces: a Retriever finds hits for a query; a Reranker reorders a retriever's hits."""

from __future__ import annotations

from typing import Protocol

from ragworks.config import SearchMode
from ragworks.documents import SearchHit
from ragworks.store.base import Filter


class Retriever(Protocol):
    def search(
        self, query: str, *, k: int = 10, mode: SearchMode = "hybrid", flt: Filter | None = None
    ) -> list[SearchHit]: ...


class Reranker(Protocol):
    """Rescores (query, passage) pairs more precisely than first-stage retrieval, returning the best `k`."""

    name: str

    def rerank(self, query: str, hits: list[SearchHit], k: int) -> list[SearchHit]: ...
