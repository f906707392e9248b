"""Tenants and their API keys, in `data_dir/auth.sqlite3` or, with the PostgreSQL store backend, in the database
(shared by the server replicas and `ragworks admin`).

A key reads `rwk_<id>_<secret>`: the id finds the row, the secret is stored only as its SHA-256 and compared
in constant time. A key is shown once, when created.

A key may belong to a user with groups (`ragworks admin create-key acme --user ann --groups finance,legal`): the
server then reads documents as `user:ann`, `group:finance`, `group:legal` (ragworks.access). A key without a
user (every key made before permissions) reads every document of its tenant.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragworks.access import caller_readers
from ragworks.config import Settings
from ragworks.errors import InvalidReaders
from ragworks.server.errors import NotFound
from ragworks.tenancy import check_tenant_name

AUTH_DB = "auth.sqlite3"
KEY_PREFIX = "rwk"
log = logging.getLogger("ragworks.server.keys")


def _schema(tenants: str, keys: str) -> tuple[str, ...]:
    return (
        f"CREATE TABLE IF NOT EXISTS {tenants}(name TEXT PRIMARY KEY, created DOUBLE PRECISION NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS {keys}(id TEXT PRIMARY KEY, tenant TEXT NOT NULL, secret_sha256 TEXT NOT NULL, "
        "label TEXT NOT NULL DEFAULT '', created DOUBLE PRECISION NOT NULL, revoked DOUBLE PRECISION)",
        f"CREATE INDEX IF NOT EXISTS api_keys_tenant ON {keys}(tenant)",
    )


# columns added for document permissions (keys made before have none: unrestricted within their tenant)
_PRINCIPAL_COLUMNS = (("principal_user", "TEXT"), ("principal_groups", "TEXT NOT NULL DEFAULT ''"))
_KEY_COLUMNS = "id, tenant, label, created, revoked, principal_user, principal_groups"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    tenant: str
    label: str
    created: float
    revoked: float | None
    user: str | None = None  # the principal the key reads as; None = unrestricted within the tenant
    groups: tuple[str, ...] = ()

    @classmethod
    def from_row(cls, r: Any) -> ApiKey:
        groups = tuple(g for g in (r[6] or "").split(",") if g)
        return cls(r[0], r[1], r[2], r[3], r[4], r[5] or None, groups)

    @property
    def readers(self) -> tuple[str, ...] | None:
        """The key's principal tokens (`Filter.readers`); None when it has no user."""
        return caller_readers(self.user, self.groups)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "tenant": self.tenant, "label": self.label, "created": self.created,
                "revoked": self.revoked, "user": self.user, "groups": list(self.groups)}


class KeyStore:
    """Tenants and hashed API keys in `data_dir/auth.sqlite3`. Thread-safe; other processes (the CLI) may write at
    the same time. `PostgresKeyStore` is the same over PostgreSQL (`make_key_store` picks by the store backend)."""

    _tenants = "tenants"
    _keys = "api_keys"
    local = True  # lookups are cheap enough for the event loop (a local file, no network)

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / AUTH_DB
        self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._lock = threading.Lock()
        with self._lock:
            for stmt in _schema(self._tenants, self._keys):
                self._conn.execute(stmt)
            have = {r[1] for r in self._conn.execute(f"PRAGMA table_info({self._keys})")}
            for column, kind in _PRINCIPAL_COLUMNS:
                if column not in have:
                    self._conn.execute(f"ALTER TABLE {self._keys} ADD COLUMN {column} {kind}")

    def _q(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def _x(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        """Run a write; the number of rows it changed."""
        with self._lock:
            return int(self._conn.execute(sql, args).rowcount)

    # --- tenants

    def create_tenant(self, name: str) -> bool:
        """Create a tenant; False if it already existed."""
        check_tenant_name(name)
        return self._x(f"INSERT INTO {self._tenants}(name, created) VALUES(?, ?) ON CONFLICT DO NOTHING",
                       (name, time.time())) == 1

    def tenants(self) -> list[dict[str, Any]]:
        rows = self._q(f"SELECT t.name, t.created, count(k.id) FROM {self._tenants} t LEFT JOIN {self._keys} k "
                       "ON k.tenant = t.name AND k.revoked IS NULL GROUP BY t.name, t.created ORDER BY t.name")
        return [{"name": r[0], "created": r[1], "active_keys": r[2]} for r in rows]

    def tenant_exists(self, name: str) -> bool:
        return bool(self._q(f"SELECT 1 FROM {self._tenants} WHERE name = ?", (name,)))

    # --- keys

    def create_key(self, tenant: str, label: str = "", *, user: str | None = None, groups: tuple[str, ...] = ()
                   ) -> tuple[str, ApiKey]:
        """A new key for `tenant`: returns the key itself (shown once, never stored) and its record.

        With `user` (and `groups`) the key reads only the documents those principals may read; without, all of
        the tenant's. Raises InvalidReaders for a malformed name, or groups without a user."""
        if not self.tenant_exists(tenant):
            raise NotFound(f"no tenant {tenant!r} (create it first)")
        if groups and not user:
            raise InvalidReaders("groups need a user: pass --user too (a key without a user reads everything)")
        caller_readers(user, groups)  # validates the names
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        now = time.time()
        groups = tuple(dict.fromkeys(groups))
        self._x(f"INSERT INTO {self._keys}(id, tenant, secret_sha256, label, created, principal_user, "
                "principal_groups) VALUES(?, ?, ?, ?, ?, ?, ?)",
                (key_id, tenant, _digest(secret), label, now, user or None, ",".join(groups)))
        return f"{KEY_PREFIX}_{key_id}_{secret}", ApiKey(key_id, tenant, label, now, None, user or None, groups)

    def keys(self, tenant: str | None = None) -> list[ApiKey]:
        sql = f"SELECT {_KEY_COLUMNS} FROM {self._keys}"
        rows = self._q(sql + " WHERE tenant = ? ORDER BY created", (tenant,)) if tenant else self._q(
            sql + " ORDER BY tenant, created")
        return [ApiKey.from_row(r) for r in rows]

    def revoke_key(self, key_id: str) -> ApiKey:
        self._x(f"UPDATE {self._keys} SET revoked = ? WHERE id = ? AND revoked IS NULL", (time.time(), key_id))
        rows = self._q(f"SELECT {_KEY_COLUMNS} FROM {self._keys} WHERE id = ?", (key_id,))
        if not rows:
            raise NotFound(f"no API key {key_id!r}")
        return ApiKey.from_row(rows[0])

    def has_keys(self) -> bool:
        return bool(self._q(f"SELECT 1 FROM {self._keys} WHERE revoked IS NULL LIMIT 1"))

    def verify(self, key: str) -> ApiKey | None:
        """The key's record if `key` is a valid, unrevoked key; None otherwise."""
        prefix, _, rest = key.partition("_")
        key_id, _, secret = rest.partition("_")
        if prefix != KEY_PREFIX or not key_id or not secret:
            return None
        rows = self._q(f"SELECT {_KEY_COLUMNS}, secret_sha256 FROM {self._keys} WHERE id = ?", (key_id,))
        if not rows:
            hmac.compare_digest(_digest(secret), _digest(""))  # same work whether or not the id exists
            return None
        *fields, stored = rows[0]
        if not hmac.compare_digest(_digest(secret), stored) or fields[4] is not None:
            return None
        return ApiKey.from_row(fields)

    def export_rows(self) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """Every tenant row and key row (hashes only), to move them to another store."""
        return (self._q(f"SELECT name, created FROM {self._tenants}"),
                self._q(f"SELECT id, tenant, secret_sha256, label, created, revoked, principal_user, "
                        f"principal_groups FROM {self._keys}"))

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class PostgresKeyStore(KeyStore):
    """The key store in PostgreSQL (`<schema>.tenants`, `<schema>.api_keys`): with `store_backend = "postgres"`
    every API replica and `ragworks admin` share it through the database, not a SQLite file on a shared volume
    (whose locks NFS does not honour reliably)."""

    local = False

    def __init__(self, pool: Any, schema: str) -> None:
        self._pool = pool
        self._tenants = f"{schema}.tenants"
        self._keys = f"{schema}.api_keys"
        with pool.connection() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('ragworks-keys-schema'))")
            for stmt in _schema(self._tenants, self._keys):
                conn.execute(stmt)
            for column, kind in _PRINCIPAL_COLUMNS:
                conn.execute(f"ALTER TABLE {self._keys} ADD COLUMN IF NOT EXISTS {column} {kind}")

    def _q(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self._pool.connection() as conn:
            return list(conn.execute(sql.replace("?", "%s"), args).fetchall())

    def _x(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        with self._pool.connection() as conn:
            return int(conn.execute(sql.replace("?", "%s"), args).rowcount)

    def import_from(self, other: KeyStore) -> tuple[int, int]:
        """Copy `other`'s tenants and keys in (existing ones kept); (tenants, keys) added."""
        tenants, keys = other.export_rows()
        with self._pool.connection() as conn:
            added_t = sum(conn.execute(f"INSERT INTO {self._tenants}(name, created) VALUES(%s, %s) "
                                       "ON CONFLICT DO NOTHING", row).rowcount for row in tenants)
            added_k = sum(conn.execute(f"INSERT INTO {self._keys}(id, tenant, secret_sha256, label, created, revoked, "
                                       "principal_user, principal_groups) VALUES(%s, %s, %s, %s, %s, %s, %s, %s) "
                                       "ON CONFLICT DO NOTHING", row).rowcount
                          for row in keys)
        return added_t, added_k

    def close(self) -> None:
        pass  # the pool is the process's shared one


def make_key_store(settings: Settings) -> KeyStore:
    """The key store for `settings`: PostgreSQL with the postgres store backend, else `data_dir/auth.sqlite3`.

    Switching an existing deployment to PostgreSQL: while the database has no tenants or keys yet, those of
    `data_dir/auth.sqlite3` are copied in once (so keys issued before keep working)."""
    if settings.store_backend != "postgres":
        return KeyStore(settings.data_dir)
    from ragworks.store.catalog import postgres_pool

    store = PostgresKeyStore(postgres_pool(settings), settings.postgres_schema)
    legacy = settings.data_dir / AUTH_DB
    if legacy.exists() and not store.tenants() and not store.keys():
        local = KeyStore(settings.data_dir)
        try:
            added = store.import_from(local)
        finally:
            local.close()
        if any(added):
            log.warning("copied %d tenants and %d API keys from %s into PostgreSQL (%s); that file is no longer "
                        "read", added[0], added[1], legacy, settings.postgres_schema)
    return store


def check_admin_key(given: str, configured: str) -> bool:
    return hmac.compare_digest(_digest(given), _digest(configured))

