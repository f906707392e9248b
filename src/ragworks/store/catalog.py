"""Where a backend keeps its collections: the one place that turns `store_backend` into stores.

`Collection.open` and the server's per-tenant collection cache go through `make_catalog(settings)`;
nothing else decides between backends. A catalog opens and creates stores, says whether a collection exists,
lists a tenant's collections and drops one.

A collection is addressed by `where` (its directory) and its tenant. The embedded catalog keeps each collection
in `where` itself, so tenants are apart by directory; a shared catalog (PostgreSQL, Qdrant) keeps the collection
scoped to (tenant, `where.name`) in one service, and `where` only holds the collection's uploads. Shared catalogs are
seen by other processes too (API replicas, workers): a cached "it exists" must be checked again now and then.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ragworks.config import Settings
from ragworks.errors import CollectionNotFound, ConfigError
from ragworks.store.base import Droppable, Store
from ragworks.store.embedded import DB_NAME, EmbeddedStore

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool


class Catalog(Protocol):
    backend: str
    shared: bool  # collections are seen by other processes (existence must be rechecked, `where` holds uploads)

    def location(self, settings: Settings, name_or_path: str | None) -> Path:
        """The directory that addresses collection `name_or_path` (default: `settings.collection`)."""
        ...

    def exists(self, where: Path, tenant: str) -> bool: ...

    def open(self, where: Path, tenant: str, *, model_name: str | None = None, dimension: int | None = None
             ) -> Store:
        """The collection's store: created with the model when `model_name` is given and it does not exist yet,
        else CollectionNotFound when it does not exist."""
        ...

    def names(self, root: Path, tenant: str) -> list[str]:
        """The collections of `tenant` (embedded: the collection directories under `root`)."""
        ...

    def drop(self, store: Store, where: Path) -> None:
        """Delete the collection `store` was opened on (closing it) and its directory."""
        ...


class EmbeddedCatalog:
    """SQLite + FAISS, one directory per collection."""

    backend = "embedded"
    shared = False

    def location(self, settings: Settings, name_or_path: str | None) -> Path:
        return settings.collection_path(name_or_path)

    def exists(self, where: Path, tenant: str) -> bool:
        return (where / DB_NAME).exists()

    def open(self, where: Path, tenant: str, *, model_name: str | None = None, dimension: int | None = None
             ) -> Store:
        if self.exists(where, tenant):
            return EmbeddedStore(where, create=False)
        if model_name is None or dimension is None:
            raise CollectionNotFound(f"no collection {where.name!r} at {where} (run `ragworks ingest` first)")
        return EmbeddedStore(where, model_name=model_name, dimension=dimension, create=True)

    def names(self, root: Path, tenant: str) -> list[str]:
        if not root.is_dir():
            return []
        return sorted(d.name for d in root.iterdir() if d.is_dir() and (d / DB_NAME).exists())

    def drop(self, store: Store, where: Path) -> None:
        store.close()
        shutil.rmtree(where)


class _ScopedCatalog:
    """Collections as names scoped to a tenant in a shared service (rows, or one Qdrant collection each)."""

    shared = True

    def location(self, settings: Settings, name_or_path: str | None) -> Path:
        return Path(name_or_path if name_or_path is not None else settings.collection)  # its last part names it

    def exists(self, where: Path, tenant: str) -> bool:
        return where.name in self.names(where.parent, tenant)

    def names(self, root: Path, tenant: str) -> list[str]:
        raise NotImplementedError

    def drop(self, store: Store, where: Path) -> None:
        assert isinstance(store, Droppable), f"{type(store).__name__} cannot drop its collection"
        store.drop()
        store.close()
        shutil.rmtree(where, ignore_errors=True)  # only uploads live there, if any


class PostgresCatalog(_ScopedCatalog):
    """pgvector + tsvector: every tenant's collections as rows of one database (shared by replicas and workers)."""

    backend = "postgres"

    def __init__(self, settings: Settings) -> None:
        self.pool = postgres_pool(settings)
        self.schema = settings.postgres_schema

    def open(self, where: Path, tenant: str, *, model_name: str | None = None, dimension: int | None = None
             ) -> Store:
        from ragworks.store.postgres import PostgresStore

        return PostgresStore(self.pool, tenant=tenant, collection=where.name, schema=self.schema,
                             model_name=model_name, dimension=dimension, create=model_name is not None)

    def names(self, root: Path, tenant: str) -> list[str]:
        from ragworks.store.postgres import list_collections

        return list_collections(self.pool, tenant, self.schema)


class QdrantCatalog(_ScopedCatalog):
    """Qdrant (a server, or qdrant-client's local mode under `qdrant_path`): one Qdrant collection per collection."""

    backend = "qdrant"

    def __init__(self, settings: Settings) -> None:
        from ragworks.store.qdrant import client_for

        self.client = client_for(settings)
        self.prefix = settings.qdrant_prefix
        self.lexical = settings.qdrant_lexical

    def open(self, where: Path, tenant: str, *, model_name: str | None = None, dimension: int | None = None
             ) -> Store:
        from ragworks.store.qdrant import QdrantStore

        return QdrantStore(self.client, tenant=tenant, collection=where.name, prefix=self.prefix,
                           lexical=self.lexical, model_name=model_name, dimension=dimension,
                           create=model_name is not None)

    def names(self, root: Path, tenant: str) -> list[str]:
        from ragworks.store.qdrant import list_collections

        return list_collections(self.client, tenant, self.prefix)


def postgres_pool(settings: Settings) -> ConnectionPool:
    """The process's shared pool for `settings`' database and schema (one per process, closed at exit)."""
    if settings.postgres_dsn is None:
        raise ConfigError("store_backend = 'postgres' needs postgres_dsn (RAGWORKS_POSTGRES_DSN)")
    from ragworks.store.postgres import shared_pool

    return shared_pool(settings.postgres_dsn.get_secret_value(), settings.postgres_schema)


def make_catalog(settings: Settings) -> Catalog:
    """The catalog of `settings.store_backend`."""
    if settings.store_backend == "postgres":
        return PostgresCatalog(settings)
    if settings.store_backend == "qdrant":
        return QdrantCatalog(settings)
    return EmbeddedCatalog()
