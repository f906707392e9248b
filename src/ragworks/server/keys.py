"""Tenants and their API keys, in `data_dir/auth.sqlite3` (shared by the server and `ragworks admin`).

A key reads `rwk_<id>_<secret>`: the id finds the row, the secret is stored only as its SHA-256 and compared
in constant time. A key is shown once, when created.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragworks.server.errors import NotFound
from ragworks.server.tenants import check_tenant_name

AUTH_DB = "auth.sqlite3"
KEY_PREFIX = "rwk"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS tenants(name TEXT PRIMARY KEY, created REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS api_keys(id TEXT PRIMARY KEY, tenant TEXT NOT NULL, secret_sha256 TEXT NOT NULL, "
    "label TEXT NOT NULL DEFAULT '', created REAL NOT NULL, revoked REAL)",
    "CREATE INDEX IF NOT EXISTS api_keys_tenant ON api_keys(tenant)",
)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    tenant: str
    label: str
    created: float
    revoked: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "tenant": self.tenant, "label": self.label, "created": self.created,
                "revoked": self.revoked}


class KeyStore:
    """Tenants and hashed API keys. Thread-safe; other processes (the CLI) may write at the same time."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / AUTH_DB
        self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._lock = threading.Lock()
        with self._lock:
            for stmt in _SCHEMA:
                self._conn.execute(stmt)

    def _q(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    # --- tenants

    def create_tenant(self, name: str) -> bool:
        """Create a tenant; False if it already existed."""
        check_tenant_name(name)
        with self._lock:
            cur = self._conn.execute("INSERT OR IGNORE INTO tenants(name, created) VALUES(?, ?)", (name, time.time()))
            return cur.rowcount == 1

    def tenants(self) -> list[dict[str, Any]]:
        rows = self._q("SELECT t.name, t.created, count(k.id) FROM tenants t LEFT JOIN api_keys k "
                       "ON k.tenant = t.name AND k.revoked IS NULL GROUP BY t.name ORDER BY t.name")
        return [{"name": r[0], "created": r[1], "active_keys": r[2]} for r in rows]

    def tenant_exists(self, name: str) -> bool:
        return bool(self._q("SELECT 1 FROM tenants WHERE name = ?", (name,)))

    # --- keys

    def create_key(self, tenant: str, label: str = "") -> tuple[str, ApiKey]:
        """A new key for `tenant`: returns the key itself (shown once, never stored) and its record."""
        if not self.tenant_exists(tenant):
            raise NotFound(f"no tenant {tenant!r} (create it first)")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        now = time.time()
        with self._lock:
            self._conn.execute("INSERT INTO api_keys(id, tenant, secret_sha256, label, created) VALUES(?, ?, ?, ?, ?)",
                               (key_id, tenant, _digest(secret), label, now))
        return f"{KEY_PREFIX}_{key_id}_{secret}", ApiKey(key_id, tenant, label, now, None)

    def keys(self, tenant: str | None = None) -> list[ApiKey]:
        sql = "SELECT id, tenant, label, created, revoked FROM api_keys"
        rows = self._q(sql + " WHERE tenant = ? ORDER BY created", (tenant,)) if tenant else self._q(
            sql + " ORDER BY tenant, created")
        return [ApiKey(*r) for r in rows]

    def revoke_key(self, key_id: str) -> ApiKey:
        with self._lock:
            self._conn.execute("UPDATE api_keys SET revoked = ? WHERE id = ? AND revoked IS NULL",
                               (time.time(), key_id))
        rows = self._q("SELECT id, tenant, label, created, revoked FROM api_keys WHERE id = ?", (key_id,))
        if not rows:
            raise NotFound(f"no API key {key_id!r}")
        return ApiKey(*rows[0])

    def has_keys(self) -> bool:
        return bool(self._q("SELECT 1 FROM api_keys WHERE revoked IS NULL LIMIT 1"))

    def verify(self, key: str) -> ApiKey | None:
        """The key's record if `key` is a valid, unrevoked key; None otherwise."""
        prefix, _, rest = key.partition("_")
        key_id, _, secret = rest.partition("_")
        if prefix != KEY_PREFIX or not key_id or not secret:
            return None
        rows = self._q("SELECT id, tenant, label, created, revoked, secret_sha256 FROM api_keys WHERE id = ?",
                       (key_id,))
        if not rows:
            hmac.compare_digest(_digest(secret), _digest(""))  # same work whether or not the id exists
            return None
        *fields, stored = rows[0]
        if not hmac.compare_digest(_digest(secret), stored) or fields[4] is not None:
            return None
        return ApiKey(*fields)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def check_admin_key(given: str, configured: str) -> bool:
    return hmac.compare_digest(_digest(given), _digest(configured))

