"""Real servers for the Celery tests: redis-server and PostgreSQL (session-wide; skipped when missing)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.realservers import postgres_server, redis_server


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    with postgres_server() as dsn:
        yield dsn
