"""Result caching (issue 15): exact and semantic caches of search results and answers, keyed so that a write to
the collection, another tenant or another principal never gets a cached result (cache/results.py).

Floor 3 (beside ingest/): imports config, documents and store.base only; collection.py uses it, server/ counts
its lookups in /metrics through `observe`.
"""

from __future__ import annotations

import threading

from ragworks.cache.backends import CacheBackend, MemoryBackend, RedisBackend
from ragworks.cache.results import ResultCache, digest, filter_key, lookups, observe
from ragworks.config import Settings

__all__ = ["CacheBackend", "MemoryBackend", "RedisBackend", "ResultCache", "digest", "filter_key", "lookups",
           "observe", "shared_cache"]

_SHARED: dict[tuple[object, ...], ResultCache] = {}
_SHARED_LOCK = threading.Lock()


def shared_cache(settings: Settings) -> ResultCache | None:
    """The process's cache for these cache settings (one for every collection it opens); None when off."""
    if settings.cache_backend == "off":
        return None
    url = settings.cache_redis_url or settings.redis_url
    threshold = settings.cache_semantic_threshold if settings.cache_semantic else None
    key = (settings.cache_backend, url if settings.cache_backend == "redis" else None, settings.cache_max_entries,
           settings.cache_max_mb, settings.cache_ttl_s, threshold)
    with _SHARED_LOCK:
        cache = _SHARED.get(key)
        if cache is None:
            backend: CacheBackend
            if settings.cache_backend == "redis":
                backend = RedisBackend(url, ttl_s=settings.cache_ttl_s)
            else:
                backend = MemoryBackend(max_entries=settings.cache_max_entries,
                                        max_bytes=int(settings.cache_max_mb * 2**20), ttl_s=settings.cache_ttl_s)
            cache = _SHARED[key] = ResultCache(backend, semantic_threshold=threshold)
        return cache
