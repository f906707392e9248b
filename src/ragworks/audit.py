"""The audit log: who asked what, which documents and chunks were retrieved and cited, with which key, when.

Append-only and per tenant: a SQLite file in the tenant's directory (`audit.sqlite3`, a trigger refuses UPDATE)
or, with the PostgreSQL store backend, the `<schema>.audit` table keyed by tenant. Entries older than
`audit_retention_days` are pruned as new ones are written — the only deletion there is.

Entries hold ids only (document id, chunk ordinal), never passage text, so erasing a document needs no rewrite of
the log: the ids stop resolving to anything. The question text is kept, because "who asked what" is the point.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ragworks.config import Settings
from ragworks.documents import SearchHit

AUDIT_DB = "audit.sqlite3"
DAY_S = 86_400.0
PRUNE_EVERY_S = 60.0  # retention is enforced on write, at most this often per tenant


@dataclass(slots=True)
class AuditEntry:
    """One read of a tenant's data. `retrieved`: `<doc id>:<chunk ordinal>` (`:*` a whole document); `cited`:
    `<doc id>@<start>-<end>` (character offsets of the cited passage)."""

    tenant: str
    action: str  # search | ask | chat | document | set-readers | delete
    collection: str
    query: str = ""
    key_id: str | None = None
    user: str | None = None
    retrieved: list[str] = field(default_factory=list)
    cited: list[str] = field(default_factory=list)
    at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def hit_refs(hits: Sequence[SearchHit]) -> list[str]:
    return [f"{h.chunk.doc_id}:{h.chunk.ordinal}" for h in hits]


class AuditLog(Protocol):
    def record(self, entry: AuditEntry) -> None: ...

    def entries(self, tenant: str, *, since: float | None = None, user: str | None = None, limit: int = 100
                ) -> list[AuditEntry]:
        """Newest first."""
        ...

    def close(self) -> None: ...


_COLUMNS = "tenant, action, collection, query, key_id, principal_user, retrieved, cited, at"


def _entry(r: Sequence[Any]) -> AuditEntry:
    return AuditEntry(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]), json.loads(r[7]), float(r[8]))


def _row(e: AuditEntry) -> tuple[Any, ...]:
    return (e.tenant, e.action, e.collection, e.query, e.key_id, e.user, json.dumps(e.retrieved),
            json.dumps(e.cited), e.at)


class SqliteAuditLog:
    """Per-tenant SQLite files; `root_of(tenant name)` is the tenant's directory."""

    def __init__(self, root_of: Any, retention_days: float) -> None:
        self._root_of = root_of
        self.retention_s = retention_days * DAY_S
        self._lock = threading.Lock()
        self._conns: dict[str, sqlite3.Connection] = {}
        self._pruned: dict[str, float] = {}

    def _conn(self, tenant: str) -> sqlite3.Connection:
        conn = self._conns.get(tenant)
        if conn is None:
            root: Path = self._root_of(tenant)
            root.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(root / AUDIT_DB, check_same_thread=False, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA secure_delete=ON")  # pruned entries are overwritten, not left in free pages
            conn.execute(
                "CREATE TABLE IF NOT EXISTS audit(seq INTEGER PRIMARY KEY AUTOINCREMENT, tenant TEXT NOT NULL, "
                "action TEXT NOT NULL, collection TEXT NOT NULL, query TEXT NOT NULL, key_id TEXT, "
                "principal_user TEXT, retrieved TEXT NOT NULL, cited TEXT NOT NULL, at REAL NOT NULL)")
            conn.execute("CREATE INDEX IF NOT EXISTS audit_at ON audit(at)")
            conn.execute("CREATE TRIGGER IF NOT EXISTS audit_append_only BEFORE UPDATE ON audit "
                         "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END")
            self._conns[tenant] = conn
        return conn

    def record(self, entry: AuditEntry) -> None:
        with self._lock:
            conn = self._conn(entry.tenant)
            conn.execute(f"INSERT INTO audit({_COLUMNS}) VALUES(?,?,?,?,?,?,?,?,?)", _row(entry))
            if entry.at - self._pruned.get(entry.tenant, 0.0) >= PRUNE_EVERY_S:
                conn.execute("DELETE FROM audit WHERE at < ?", (entry.at - self.retention_s,))
                self._pruned[entry.tenant] = entry.at

    def entries(self, tenant: str, *, since: float | None = None, user: str | None = None, limit: int = 100
                ) -> list[AuditEntry]:
        sql = f"SELECT {_COLUMNS} FROM audit WHERE at >= ?"
        args: list[Any] = [since or 0.0]
        if user is not None:
            sql += " AND principal_user = ?"
            args.append(user)
        with self._lock:
            rows = self._conn(tenant).execute(sql + " ORDER BY seq DESC LIMIT ?", [*args, limit]).fetchall()
        return [_entry(r) for r in rows]

    def close(self) -> None:
        with self._lock:
            for conn in self._conns.values():
                conn.close()
            self._conns.clear()


class PostgresAuditLog:
    """The audit table in PostgreSQL, shared by every replica; rows keyed by tenant."""

    def __init__(self, pool: Any, schema: str, retention_days: float) -> None:
        self._pool = pool
        self._table = f"{schema}.audit"
        self.retention_s = retention_days * DAY_S
        self._pruned: dict[str, float] = {}
        with pool.connection() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('ragworks-audit-schema'))")
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self._table}(seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                "tenant text NOT NULL, action text NOT NULL, collection text NOT NULL, query text NOT NULL, "
                "key_id text, principal_user text, retrieved text NOT NULL, cited text NOT NULL, "
                "at double precision NOT NULL)")
            conn.execute(f"CREATE INDEX IF NOT EXISTS audit_tenant_at ON {self._table}(tenant, at)")

    def record(self, entry: AuditEntry) -> None:
        with self._pool.connection() as conn:
            conn.execute(f"INSERT INTO {self._table}({_COLUMNS}) VALUES(%s,%s,%s,%s,%s,%s,%s,%s,%s)", _row(entry))
            if entry.at - self._pruned.get(entry.tenant, 0.0) >= PRUNE_EVERY_S:
                conn.execute(f"DELETE FROM {self._table} WHERE tenant = %s AND at < %s",
                             (entry.tenant, entry.at - self.retention_s))
                self._pruned[entry.tenant] = entry.at

    def entries(self, tenant: str, *, since: float | None = None, user: str | None = None, limit: int = 100
                ) -> list[AuditEntry]:
        sql = f"SELECT {_COLUMNS} FROM {self._table} WHERE tenant = %s AND at >= %s"
        args: list[Any] = [tenant, since or 0.0]
        if user is not None:
            sql += " AND principal_user = %s"
            args.append(user)
        with self._pool.connection() as conn:
            rows = conn.execute(sql + " ORDER BY seq DESC LIMIT %s", [*args, limit]).fetchall()
        return [_entry(r) for r in rows]

    def close(self) -> None:
        pass  # the pool is the process's shared one


def make_audit_log(settings: Settings, root_of: Any) -> AuditLog | None:
    """The audit log for `settings` (None when `audit` is off): PostgreSQL with that store backend, else SQLite
    files under each tenant's directory (`root_of(tenant name) -> Path`)."""
    if not settings.audit:
        return None
    if settings.store_backend == "postgres" and settings.postgres_dsn is not None:
        from ragworks.store.postgres import shared_pool

        pool = shared_pool(settings.postgres_dsn.get_secret_value(), settings.postgres_schema)
        return PostgresAuditLog(pool, settings.postgres_schema, settings.audit_retention_days)
    return SqliteAuditLog(root_of, settings.audit_retention_days)
