"""PostgreSQL store plumbing below `PostgresStore`: the schema (DDL, in-place migrations, the per-dimension HNSW
index), connection pools, advisory-lock keys and the value conversions every statement shares.

`ensure_schema` creates the `vector` extension and the schema once per process (idempotent, safe to race);
`make_pool` / `shared_pool` hand out pools whose connections have pgvector's types registered.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

from ragworks.errors import CollectionLocked, ConfigError

try:  # the `postgres` extra
    import psycopg
    from pgvector.psycopg import register_vector
    from psycopg.conninfo import conninfo_to_dict
    from psycopg_pool import ConnectionPool
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "the PostgreSQL store needs the `postgres` extra: pip install 'ragworks[postgres]'"
    ) from exc

SCHEMA_VERSION = 1
DEFAULT_SCHEMA = "ragworks"
MAX_HNSW_DIM = 2000  # pgvector's limit for indexing `vector`

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _schema_sql(s: str) -> list[str]:
    return [
        f"CREATE SCHEMA IF NOT EXISTS {s}",
        f"CREATE TABLE IF NOT EXISTS {s}.meta(key text PRIMARY KEY, value text NOT NULL)",
        f"""CREATE TABLE IF NOT EXISTS {s}.collections(
            tenant text NOT NULL, collection text NOT NULL, model_name text NOT NULL, dimension integer NOT NULL,
            n_chunks bigint NOT NULL DEFAULT 0, total_len bigint NOT NULL DEFAULT 0,
            created timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (tenant, collection))""",
        f"""CREATE TABLE IF NOT EXISTS {s}.files(
            tenant text NOT NULL, collection text NOT NULL, path text NOT NULL, size bigint NOT NULL,
            mtime_ns bigint NOT NULL, sha256 text NOT NULL, status text NOT NULL, error text NOT NULL DEFAULT '',
            documents integer NOT NULL DEFAULT 0, chunks integer NOT NULL DEFAULT 0,
            updated timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (tenant, collection, path),
            FOREIGN KEY (tenant, collection) REFERENCES {s}.collections ON DELETE CASCADE)""",
        f"""CREATE TABLE IF NOT EXISTS {s}.documents(
            tenant text NOT NULL, collection text NOT NULL, id text NOT NULL, source text NOT NULL,
            source_path text NOT NULL, title text NOT NULL, content_hash text NOT NULL, metadata jsonb NOT NULL,
            page_starts jsonb NOT NULL, text text NOT NULL, chunks integer NOT NULL,
            updated timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (tenant, collection, id), UNIQUE (tenant, collection, source),
            FOREIGN KEY (tenant, collection) REFERENCES {s}.collections ON DELETE CASCADE)""",
        f"CREATE INDEX IF NOT EXISTS documents_path ON {s}.documents(tenant, collection, source_path)",
        # document permissions (ragworks.access): principal tokens, '{{}}' = public within the tenant
        f"ALTER TABLE {s}.documents ADD COLUMN IF NOT EXISTS readers text[] NOT NULL DEFAULT '{{}}'",
        f"CREATE INDEX IF NOT EXISTS documents_readers ON {s}.documents USING gin (readers)",
        f"""CREATE TABLE IF NOT EXISTS {s}.chunks(
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            tenant text NOT NULL, collection text NOT NULL, doc_id text NOT NULL, ordinal integer NOT NULL,
            text text NOT NULL, context text NOT NULL, start_char integer NOT NULL, end_char integer NOT NULL,
            heading_path jsonb NOT NULL, page_start integer, page_end integer, tokens integer NOT NULL,
            text_hash text NOT NULL, embedding vector, ts_config regconfig NOT NULL DEFAULT 'english',
            tsv tsvector GENERATED ALWAYS AS (to_tsvector(ts_config, context || ' ' || text)) STORED,
            UNIQUE (tenant, collection, doc_id, ordinal),
            FOREIGN KEY (tenant, collection, doc_id) REFERENCES {s}.documents(tenant, collection, id)
                ON DELETE CASCADE)""",
        # Keep tsvectors compressed in the row, not in TOAST: the lexical leg reads every matching row's tsv.
        f"ALTER TABLE {s}.chunks ALTER COLUMN tsv SET STORAGE MAIN",
        # a chunk's time range (speech) and page box (OCR); added in place to schemas made before them
        f"ALTER TABLE {s}.chunks ADD COLUMN IF NOT EXISTS locator jsonb",
        # bumped in every write transaction: result caches in any process key on it (PostgresStore.write_version)
        f"ALTER TABLE {s}.collections ADD COLUMN IF NOT EXISTS write_version bigint NOT NULL DEFAULT 0",
        f"CREATE INDEX IF NOT EXISTS chunks_tsv ON {s}.chunks USING gin (tsv)",
        # BM25 statistics: document frequency per lexeme (n_chunks and total_len live on `collections`).
        f"""CREATE TABLE IF NOT EXISTS {s}.lexicon(
            tenant text NOT NULL, collection text NOT NULL, lexeme text NOT NULL, df integer NOT NULL,
            PRIMARY KEY (tenant, collection, lexeme),
            FOREIGN KEY (tenant, collection) REFERENCES {s}.collections ON DELETE CASCADE)""",
        f"CREATE INDEX IF NOT EXISTS chunks_text_hash ON {s}.chunks(tenant, collection, text_hash)",
        f"""CREATE TABLE IF NOT EXISTS {s}.embeddings(
            tenant text NOT NULL, collection text NOT NULL, model text NOT NULL, text_hash text NOT NULL,
            vector vector NOT NULL, created timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (tenant, collection, model, text_hash),
            FOREIGN KEY (tenant, collection) REFERENCES {s}.collections ON DELETE CASCADE)""",
        f"INSERT INTO {s}.meta(key, value) VALUES ('schema_version', '{SCHEMA_VERSION}') ON CONFLICT DO NOTHING",
    ]


def _hnsw_index_sql(s: str, dim: int, m: int = 16, ef_construction: int = 64) -> str:
    return (
        f"CREATE INDEX IF NOT EXISTS chunks_hnsw_{dim} ON {s}.chunks USING hnsw "
        f"((embedding::vector({dim})) vector_ip_ops) WITH (m = {int(m)}, ef_construction = {int(ef_construction)}) "
        f"WHERE vector_dims(embedding) = {dim}"
    )


# --- values and keys


def _int64_key(*parts: str) -> int:
    """A signed 64-bit key for advisory locks."""
    digest = hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _nul(text: str) -> str:
    """PostgreSQL text cannot hold NUL; U+FFFD keeps every character offset where it was."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _json(value: Any) -> str:
    return _nul(json.dumps(value, ensure_ascii=False, default=str))


# --- connections


def _configure(conn: psycopg.Connection[Any]) -> None:
    register_vector(conn)
    # Partial indexes (per-dimension HNSW) and tenant selectivity need the parameter values at plan time.
    conn.execute("SET plan_cache_mode = force_custom_plan")
    conn.execute("SELECT '[1]'::vector")  # load pgvector so its hnsw.* settings exist in this session
    conn.commit()


_ENSURED: set[tuple[str, str]] = set()
_ENSURED_LOCK = threading.Lock()


def _ensure_schema_on(conn: psycopg.Connection[Any], schema: str) -> None:
    row = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL AND EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector')",
        (f"{schema}.embeddings",),
    ).fetchone()
    if row and row[0]:
        # a database made before per-language configurations: add the column its inserts now name (its `tsv`
        # expression stays `english` for every row; PostgresStore.per_language_tsv tells the two apart)
        has = conn.execute("SELECT 1 FROM information_schema.columns WHERE table_schema = %s AND "
                           "table_name = 'chunks' AND column_name = 'ts_config'", (schema,)).fetchone()
        if has is None:  # a constant default: no table rewrite
            conn.execute(f"ALTER TABLE {schema}.chunks ADD COLUMN IF NOT EXISTS ts_config regconfig NOT NULL "
                         "DEFAULT 'english'")
        versioned = conn.execute("SELECT 1 FROM information_schema.columns WHERE table_schema = %s AND "
                                 "table_name = 'collections' AND column_name = 'write_version'", (schema,)).fetchone()
        if versioned is None:  # a database made before result caching
            conn.execute(f"ALTER TABLE {schema}.collections ADD COLUMN IF NOT EXISTS write_version bigint NOT NULL "
                         "DEFAULT 0")
        conn.commit()
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_int64_key("ragworks-schema", schema),))
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.errors.InsufficientPrivilege as exc:
            raise ConfigError(
                "the pgvector extension is not installed in this database and this role may not create it; "
                "run `CREATE EXTENSION vector` as its owner"
            ) from exc
        for stmt in _schema_sql(schema):
            conn.execute(stmt)


def ensure_schema(conninfo: str, schema: str = DEFAULT_SCHEMA, pool: ConnectionPool | None = None) -> None:
    """Create the `vector` extension and the schema if missing (idempotent, safe to race; once per process)."""
    if not _IDENT.match(schema):
        raise ConfigError(f"invalid PostgreSQL schema name {schema!r} (lower-case letters, digits, _)")
    with _ENSURED_LOCK:
        if (conninfo, schema) in _ENSURED:
            return
        if pool is not None:
            with pool.connection() as pconn:
                pconn.commit()
                _ensure_schema_on(pconn, schema)
        else:
            try:
                conn = psycopg.connect(conninfo, autocommit=True)
            except psycopg.OperationalError as exc:
                raise ConfigError(f"cannot connect to PostgreSQL at {display_dsn(conninfo)}: {exc}".strip()) from exc
            with conn:
                _ensure_schema_on(conn, schema)
        _ENSURED.add((conninfo, schema))


def make_pool(conninfo: str, *, schema: str = DEFAULT_SCHEMA, min_size: int = 1, max_size: int = 8,
              timeout: float = 30.0) -> ConnectionPool:
    """A connection pool ready for `PostgresStore` (pgvector types registered); share one per process."""
    ensure_schema(conninfo, schema)
    pool: ConnectionPool = ConnectionPool(
        conninfo, min_size=min_size, max_size=max_size, configure=_configure, timeout=timeout, open=True,
        name="ragworks",
    )
    return pool


_POOLS: dict[tuple[int, str, str], ConnectionPool] = {}


def shared_pool(conninfo: str, schema: str = DEFAULT_SCHEMA, *, max_size: int = 8) -> ConnectionPool:
    """The process's pool for one database and schema (created on first use, closed at exit).

    What `Collection` uses: opening many collections and tenants shares one set of connections. Keyed by pid
    too, so a forked worker (Celery prefork) never uses its parent's sockets.
    """
    key = (os.getpid(), conninfo, schema)
    with _ENSURED_LOCK:
        pool = _POOLS.get(key)
    if pool is not None and not pool.closed:
        return pool
    pool = make_pool(conninfo, schema=schema, max_size=max_size)
    with _ENSURED_LOCK:
        if not _POOLS:
            atexit.register(_close_pools)
        existing = _POOLS.get(key)
        if existing is not None and not existing.closed:
            pool.close()
            return existing
        _POOLS[key] = pool
    return pool


def _close_pools() -> None:
    for key, pool in list(_POOLS.items()):
        if key[0] == os.getpid():
            pool.close()
    _POOLS.clear()


def list_collections(pool: ConnectionPool, tenant: str, schema: str = DEFAULT_SCHEMA) -> list[str]:
    """The names of one tenant's collections (for a server's collection listing)."""
    if not _IDENT.match(schema):
        raise ConfigError(f"invalid PostgreSQL schema name {schema!r}")
    ensure_schema(pool.conninfo if isinstance(pool.conninfo, str) else pool.conninfo(), schema, pool=pool)
    with pool.connection() as conn:
        rows = conn.execute(f"SELECT collection FROM {schema}.collections WHERE tenant = %s ORDER BY collection",
                            (tenant,)).fetchall()
    return [r[0] for r in rows]


def display_dsn(conninfo: str) -> str:
    """`postgresql://host:port/db` without user or password (for stats and messages)."""
    try:
        d = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "postgresql://?"
    return f"postgresql://{d.get('host', '')}:{d.get('port', '5432')}/{d.get('dbname', '')}"



# --- per-store setup on a pool (PostgresStore's constructor) and its writer lock


def tsv_is_per_language(pool: ConnectionPool, schema: str) -> bool:
    """Whether this database's `tsv` column follows each row's `ts_config` (else: `english` for every row)."""
    with pool.connection() as conn:
        row = conn.execute(
            "SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d JOIN pg_attribute a ON "
            "a.attrelid = d.adrelid AND a.attnum = d.adnum WHERE d.adrelid = %s::regclass AND a.attname = 'tsv'",
            (f"{schema}.chunks",)).fetchone()
    return bool(row and "ts_config" in row[0])


def ensure_hnsw_index(pool: ConnectionPool, schema: str, dimension: int, m: int, ef_construction: int
                      ) -> tuple[int, ...]:
    """Create this dimension's HNSW index if missing; → pgvector's version (0.8+ can scan it iteratively)."""
    name = f"chunks_hnsw_{dimension}"
    with pool.connection() as conn:
        row = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL, (SELECT extversion FROM pg_extension WHERE extname = 'vector')",
            (f"{schema}.{name}",)).fetchone()
        assert row is not None
        version = tuple(int(p) for p in re.findall(r"\d+", str(row[1]))[:3])
        if row[0] or dimension > MAX_HNSW_DIM:  # above 2000 dimensions: exact scans only
            return version
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_int64_key("ragworks-hnsw", schema, name),))
        conn.execute(_hnsw_index_sql(schema, dimension, m, ef_construction))
    return version


@contextlib.contextmanager
def session_lock(pool: ConnectionPool, key: int, wait_s: float, collection: str) -> Iterator[None]:
    """A session-level advisory lock on its own connection (PostgresStore.write_lock).

    Raises CollectionLocked if another holder keeps it past `wait_s`. PostgreSQL releases it if the holder's
    connection dies, so a killed worker never leaves the collection locked.
    """
    conn = pool.getconn()
    locked = False
    try:
        deadline = time.monotonic() + wait_s
        while True:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            conn.commit()
            if row and row[0]:
                locked = True
                break
            if time.monotonic() >= deadline:
                raise CollectionLocked(
                    f"collection {collection!r} is being written by another process; "
                    "try again when it finishes"
                )
            time.sleep(0.2)
        yield
    finally:
        try:
            if locked and not conn.closed:
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
                conn.commit()
        finally:
            pool.putconn(conn)
