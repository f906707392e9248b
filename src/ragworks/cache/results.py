"""Exact (and optionally semantic) caching of search results and answers, never stale and never shared across
tenants or principals.

The key of an entry hashes everything a result depends on: the tenant and collection, the store's
`write_version()` (moves on every committed write or delete, in any process: so a write invalidates every entry
of its collection at once, with nothing to purge), the operation (search / ask) with its arguments (k, mode,
rerank), the Filter including `readers` (the caller's principal tokens: two principals with different
permissions never share an entry; a tenant's collections live under different keys), the collection's model, and
every setting (a hash of the whole Settings object, so no result-changing knob can be forgotten).

The semantic cache (off by default) also serves a query whose embedding is within `threshold` cosine of a cached
query's with the same key otherwise: same tenant, collection, version, filter and settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from ragworks.cache.backends import CacheBackend
from ragworks.cache.codec import dumps, loads
from ragworks.store.base import Filter

log = logging.getLogger("ragworks.cache")

_COUNTS = {"hit": 0, "miss": 0}
_LISTENERS: list[Callable[[str], None]] = []
_COUNTS_LOCK = threading.Lock()


def lookups() -> dict[str, int]:
    """This process's cache lookups so far, by result (hit, miss)."""
    with _COUNTS_LOCK:
        return dict(_COUNTS)


def observe(listener: Callable[[str], None]) -> Callable[[], None]:
    """Call `listener("hit" | "miss")` on every lookup (the server's /metrics counter); returns an unsubscribe."""
    with _COUNTS_LOCK:
        _LISTENERS.append(listener)

    def stop() -> None:
        with _COUNTS_LOCK:
            if listener in _LISTENERS:
                _LISTENERS.remove(listener)

    return stop


def _count(result: str) -> None:
    with _COUNTS_LOCK:
        _COUNTS[result] += 1
        listeners = list(_LISTENERS)
    for listener in listeners:
        listener(result)


def filter_key(flt: Filter | None) -> Any:
    """A Filter as a canonical JSON value (order of doc ids and readers does not change results)."""
    if not flt:
        return None
    return {"source_glob": flt.source_glob, "metadata": json.dumps(flt.metadata, sort_keys=True, default=str),
            "doc_ids": None if flt.doc_ids is None else sorted(flt.doc_ids),
            "readers": None if flt.readers is None else sorted(flt.readers)}


def digest(parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode("utf-8")).hexdigest()


class _SemanticIndex:
    """Cached queries' embeddings per scope (the key less the query), bounded in total entries (oldest out)."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._scopes: OrderedDict[str, list[tuple[np.ndarray, str]]] = OrderedDict()
        self._n = 0
        self._lock = threading.Lock()

    def nearest(self, scope: str, vec: np.ndarray, threshold: float) -> str | None:
        with self._lock:
            entries = list(self._scopes.get(scope, ()))
        if not entries:
            return None
        sims = np.stack([v for v, _ in entries]) @ vec
        best = int(np.argmax(sims))
        return entries[best][1] if float(sims[best]) >= threshold else None

    def add(self, scope: str, vec: np.ndarray, key: str) -> None:
        with self._lock:
            self._scopes.setdefault(scope, []).append((vec, key))
            self._scopes.move_to_end(scope)
            self._n += 1
            while self._n > self.max_entries and self._scopes:
                oldest = next(iter(self._scopes))
                self._n -= len(self._scopes.pop(oldest))


class ResultCache:
    """Search results and answers by key (see the module docstring), in a CacheBackend as JSON."""

    def __init__(self, backend: CacheBackend, *, semantic_threshold: float | None = None,
                 semantic_max_entries: int = 4096) -> None:
        self.backend = backend
        self.semantic_threshold = semantic_threshold
        self._semantic = _SemanticIndex(semantic_max_entries) if semantic_threshold is not None else None

    def get(self, scope: dict[str, Any], query: str, query_vec: Callable[[], np.ndarray] | None = None) -> Any:
        """The cached value, or None (a miss); a backend error is logged and counts as a miss."""
        key = digest({**scope, "query": query})
        try:
            text = self.backend.get(key)
            if text is None and self._semantic is not None and query_vec is not None:
                near = self._semantic.nearest(digest(scope), _unit(query_vec()), float(self.semantic_threshold or 1))
                text = self.backend.get(near) if near is not None else None
        except Exception:  # Redis unreachable: answer without the cache
            log.warning("result cache lookup failed", exc_info=True)
            text = None
        _count("miss" if text is None else "hit")
        return None if text is None else loads(text)

    def put(self, scope: dict[str, Any], query: str, value: Any,
            query_vec: Callable[[], np.ndarray] | None = None) -> None:
        key = digest({**scope, "query": query})
        try:
            self.backend.set(key, dumps(value))
            if self._semantic is not None and query_vec is not None:
                self._semantic.add(digest(scope), _unit(query_vec()), key)
        except Exception:
            log.warning("result cache write failed", exc_info=True)


def _unit(vec: np.ndarray) -> np.ndarray:
    v = np.asarray(vec, dtype=np.float32).ravel()
    n = float(np.linalg.norm(v))
    return v / n if n else v
