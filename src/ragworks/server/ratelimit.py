"""A token bucket per API key: `burst` requests at once, refilled at `per_minute / 60` per second."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class TokenBucketLimiter:
    """`take(key)` returns 0 when the request may go ahead, else the seconds until it could."""

    def __init__(self, per_minute: int, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key → (tokens, last refill time)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key: str) -> float:
        if not self.enabled:
            return 0.0
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate

    @staticmethod
    def retry_after(wait_s: float) -> str:
        """The Retry-After header value: whole seconds, rounded up, at least 1."""
        return str(max(1, math.ceil(wait_s)))
