"""Where each tenant's collections live, and the open `Collection` objects the server keeps per (tenant, name).

With auth on, tenant `acme`'s collections are `data_dir/tenants/acme/<collection>`: tenants are isolated by
directory, so no query can reach another tenant's files. With auth off there is one implicit tenant whose
root is `data_dir` itself, so the server serves the collections `ragworks ingest` builds.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.embed.base import Embedder
from ragworks.errors import CollectionNotFound, InvalidName
from ragworks.generate.base import LLM
from ragworks.store.embedded import DB_NAME
from ragworks.tenancy import COLLECTION_NAME, Tenant

POSTGRES_RECHECK_S = 5.0
MODEL_RECHECK_S = 1.0  # how soon a `ragworks tune` switch in another process reaches this server's searches
RETIRED_CLOSE_S = 60.0  # a replaced collection stays open this long for the requests still using it


class CollectionCache:
    """Open collections per (tenant, name), all sharing one embedder and one LLM.

    Embedded backend: a collection is a directory under the tenant's root. PostgreSQL backend: a collection is
    rows scoped to (tenant, name) in the database; the tenant's directory then holds only uploads, which Celery
    workers read from the same path (a volume shared by API replicas and workers).
    """

    def __init__(self, settings: Settings, embedder: Embedder, llm: LLM | None) -> None:
        self.settings = settings
        self.embedder = embedder
        self.llm = llm
        self.postgres = settings.store_backend in ("postgres", "qdrant")  # collections are names, not directories
        self._open: dict[tuple[str, str], Collection] = {}
        self._checked: dict[tuple[str, str], float] = {}  # postgres: when each open collection was last seen
        self._model_checked: dict[tuple[str, str], float] = {}  # embedded: when its active model was last read
        self._retired: list[tuple[float, Collection]] = []  # replaced after a model switch, closed later
        self._lock = threading.Lock()

    def _open_collection(self, tenant: Tenant, path: Path, *, create: bool) -> Collection:
        return Collection.open(str(path), settings=self.settings, create=create, embedder=self.embedder,
                               llm=self.llm, tenant=tenant.name)

    @staticmethod
    def _dir(tenant: Tenant, name: str) -> Path:
        try:
            return tenant.collection_dir(name)
        except InvalidName:  # a name no collection can have: not found, like any other missing one
            raise CollectionNotFound(f"no collection {name!r}") from None

    def _exists(self, path: Path, tenant: Tenant | None = None) -> bool:
        if not self.postgres:
            return (path / DB_NAME).exists()
        if tenant is None:
            return True  # Collection.open(create=False) checks
        # another API replica may have deleted it: look again at most every POSTGRES_RECHECK_S
        key = (tenant.name, path.name)
        checked = self._checked.get(key, 0.0)
        if time.monotonic() - checked < POSTGRES_RECHECK_S:
            return True
        found = path.name in self.names(tenant)
        self._checked[key] = time.monotonic() if found else 0.0
        return found

    def get(self, tenant: Tenant, name: str) -> Collection:
        """The open collection, or CollectionNotFound (named as the caller knows it, never by its path)."""
        path = self._dir(tenant, name)
        key = (tenant.name, name)
        with self._lock:
            if self._retired:
                self._close_retired()
            col = self._open.get(key)
            if col is not None and self._exists(path, tenant):
                if not self._model_switched(key, col):
                    return col
                # `ragworks tune` switched (or rolled back) the model in another process: reopen with the new one,
                # and close the old object once the requests still using it are done
                self._retired.append((time.monotonic(), self._open.pop(key)))
                col = None
            if col is not None:  # deleted behind our back (CLI): forget it
                self._open.pop(key).close()
            if not self._exists(path):
                raise CollectionNotFound(f"no collection {name!r}")
            try:
                col = self._open_collection(tenant, path, create=False)
            except CollectionNotFound:
                raise CollectionNotFound(f"no collection {name!r}") from None
            self._open[key] = col
            return col

    def _model_switched(self, key: tuple[str, str], col: Collection) -> bool:
        if self.postgres:
            return False  # tuning is embedded-only
        now = time.monotonic()
        if now - self._model_checked.get(key, 0.0) < MODEL_RECHECK_S:
            return False
        self._model_checked[key] = now
        return col.model_switched()

    def _close_retired(self, older_than_s: float = RETIRED_CLOSE_S) -> None:
        now = time.monotonic()
        keep = []
        for since, col in self._retired:
            if now - since >= older_than_s:
                col.close()
            else:
                keep.append((since, col))
        self._retired = keep

    def create(self, tenant: Tenant, name: str) -> tuple[Collection, bool]:
        """Create an empty collection (recording the embedding model); returns it and whether it is new."""
        path = tenant.collection_dir(name)
        created = name not in self.names(tenant) if self.postgres else not (path / DB_NAME).exists()
        if created:
            col = self._open_collection(tenant, path, create=True)
            col.store  # noqa: B018 - materializes the directory and database with the model recorded
            col.close()
        return self.get(tenant, name), created

    def names(self, tenant: Tenant) -> list[str]:
        if self.settings.store_backend == "qdrant":
            from ragworks.store import qdrant

            return [n for n in qdrant.list_collections(qdrant.client_for(self.settings), tenant.name,
                                                       self.settings.qdrant_prefix) if COLLECTION_NAME.match(n)]
        if self.postgres:
            from ragworks.store.postgres import list_collections, shared_pool

            assert self.settings.postgres_dsn is not None
            pool = shared_pool(self.settings.postgres_dsn.get_secret_value(), self.settings.postgres_schema)
            return [n for n in list_collections(pool, tenant.name, self.settings.postgres_schema)
                    if COLLECTION_NAME.match(n)]
        if not tenant.root.is_dir():
            return []
        return sorted(d.name for d in tenant.root.iterdir()
                      if d.is_dir() and (d / DB_NAME).exists() and COLLECTION_NAME.match(d.name))

    def delete(self, tenant: Tenant, name: str) -> None:
        """Remove a collection and its uploads. Refused (CollectionLocked) while a writer holds it."""
        col = self.get(tenant, name)
        path = self._dir(tenant, name)
        with col.store.write_lock(wait_s=0):
            with self._lock:
                self._open.pop((tenant.name, name), None)
            if self.postgres:
                col.store.drop()  # type: ignore[attr-defined]
            col.close()
            shutil.rmtree(path, ignore_errors=self.postgres)  # postgres: only uploads live there, if any

    def close(self) -> None:
        with self._lock:
            for col in self._open.values():
                col.close()
            self._open.clear()
            self._close_retired(older_than_s=0.0)
