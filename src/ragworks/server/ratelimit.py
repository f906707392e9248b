"""A token bucket per API key: `burst` requests at once, refilled at `per_minute / 60` per second.

`TokenBucketLimiter` counts in the process; `RedisTokenBucket` keeps the buckets in Redis (one atomic script per
request), so a key's limit holds across `serve --workers` processes and API replicas.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from ragworks.config import Settings
from ragworks.errors import ConfigError

log = logging.getLogger("ragworks.server.ratelimit")


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

    async def atake(self, key: str) -> float:
        return self.take(key)

    async def aclose(self) -> None:
        pass

    @staticmethod
    def retry_after(wait_s: float) -> str:
        """The Retry-After header value: whole seconds, rounded up, at least 1."""
        return str(max(1, math.ceil(wait_s)))


# KEYS[1]: the bucket; ARGV: rate per second, burst. Redis's clock, so replicas' clocks need not agree.
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local v = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(v[1]) or burst
local ts = tonumber(v[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


class RedisTokenBucket(TokenBucketLimiter):
    """The same token bucket in Redis, shared by every process and replica that uses the same Redis.

    When Redis cannot be reached the request goes ahead (logged at most once a minute): a rate limiter must not
    take the API down with it."""

    PREFIX = "ragworks:ratelimit:"

    def __init__(self, url: str, per_minute: int, burst: int) -> None:
        super().__init__(per_minute, burst)
        self.url = url
        self._client: Any = None
        self._script: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_warning = 0.0

    def _connect(self) -> Any:
        """The client of the running event loop (asyncio connections belong to the loop that made them)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            import redis.asyncio as aioredis

            self._client = aioredis.Redis.from_url(self.url, socket_timeout=0.5, socket_connect_timeout=0.5)
            self._script = self._client.register_script(_TAKE)
            self._loop = loop
        return self._script

    def take(self, key: str) -> float:
        raise TypeError("RedisTokenBucket counts in Redis: use `await atake(key)`")

    async def atake(self, key: str) -> float:
        if not self.enabled:
            return 0.0
        try:
            wait = await self._connect()(keys=[self.PREFIX + key], args=[self.rate, self.burst])
        except Exception as exc:  # redis.RedisError, OSError, timeouts: fail open
            if time.monotonic() - self._last_warning > 60:
                self._last_warning = time.monotonic()
                log.warning("rate limit not applied: Redis at %s unreachable (%s)", self.url, exc)
            return 0.0
        return float(wait)

    async def aclose(self) -> None:
        if self._client is not None and self._loop is asyncio.get_running_loop():
            await self._client.aclose()
        self._client = None


def make_limiter(settings: Settings) -> TokenBucketLimiter:
    """Redis-backed when `rate_limit_backend` is redis, or auto with the Celery queue (Redis is there anyway)."""
    backend = settings.rate_limit_backend
    if backend == "redis" or (backend == "auto" and settings.queue_backend == "celery"):
        try:
            import redis.asyncio  # noqa: F401
        except ImportError:
            raise ConfigError("rate_limit_backend = 'redis' needs the redis package: pip install 'ragworks[queue]'"
                              ) from None
        return RedisTokenBucket(settings.redis_url, settings.rate_limit_per_minute, settings.rate_limit_burst)
    return TokenBucketLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
