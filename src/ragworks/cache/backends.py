"""Where cached results live: an in-process LRU bounded by entries and bytes, or Redis (shared by every
`--workers` process and replica). Both hold JSON text (cache/codec.py) under an opaque key."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Protocol


class CacheBackend(Protocol):
    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str) -> None: ...

    def clear(self) -> None: ...


class MemoryBackend:
    """LRU over entries, evicting the least recently used until both bounds hold; entries expire after `ttl_s`.

    An entry's size is its JSON text's UTF-8 length (what it occupies is a small multiple of that); one larger than
    the whole budget is not stored.
    """

    def __init__(self, *, max_entries: int = 1024, max_bytes: int = 64 * 2**20, ttl_s: float | None = None) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self._items: OrderedDict[str, tuple[str, int, float]] = OrderedDict()  # key → (value, size, expires)
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        return self._bytes

    def get(self, key: str) -> str | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if item[2] and item[2] < time.monotonic():
                self._drop(key)
                return None
            self._items.move_to_end(key)
            return item[0]

    def set(self, key: str, value: str) -> None:
        size = len(value.encode("utf-8"))
        if size > self.max_bytes or self.max_entries <= 0:
            return
        expires = time.monotonic() + self.ttl_s if self.ttl_s else 0.0
        with self._lock:
            if key in self._items:
                self._drop(key)
            self._items[key] = (value, size, expires)
            self._bytes += size
            while len(self._items) > self.max_entries or self._bytes > self.max_bytes:
                self._drop(next(iter(self._items)))

    def _drop(self, key: str) -> None:
        _, size, _ = self._items.pop(key)
        self._bytes -= size

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


class RedisBackend:
    """Entries as Redis strings under `prefix`, each expiring after `ttl_s` (Redis' own maxmemory policy bounds
    the total: configure `allkeys-lru` on a Redis that serves only as this cache)."""

    def __init__(self, url: str, *, ttl_s: float | None = 3600.0, prefix: str = "ragworks:cache:") -> None:
        import redis  # the `queue` extra

        self._redis = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self.ttl_s = ttl_s
        self.prefix = prefix

    def get(self, key: str) -> str | None:
        value = self._redis.get(self.prefix + key)
        return None if value is None else bytes(value).decode("utf-8")  # type: ignore[arg-type]

    def set(self, key: str, value: str) -> None:
        self._redis.set(self.prefix + key, value.encode("utf-8"), px=int(self.ttl_s * 1000) if self.ttl_s else None)

    def clear(self) -> None:
        for key in self._redis.scan_iter(match=self.prefix + "*", count=1000):
            self._redis.delete(key)
