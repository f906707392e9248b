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

Layout: this module is the store (`PostgresStore`: construction, reads, the retrieval legs, stats) and the public
entry point. `postgres_schema` holds the DDL, in-place migrations, connection pools and advisory-lock helpers;
`postgres_search` the retrieval legs' SQL (filter, dense, BM25, RRF fusion) and text search helpers;
`postgres_write` the tenant-scoped statement runner and the write path (`_PostgresWriter`, PostgresStore's base).
Their public names are importable from here too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ragworks.documents import COUNTS_KEY, PRIMARY_KINDS, Chunk, SearchHit, kind_totals
from ragworks.errors import CollectionNotFound, ConfigError, DocumentNotFound, EmbedderMismatch
from ragworks.store.base import FileRecord, Filter, HybridRow, StoredDocument
from ragworks.store.postgres_schema import (
    _IDENT,
    DEFAULT_SCHEMA,
    MAX_HNSW_DIM,
    SCHEMA_VERSION,
    _int64_key,
    _schema_sql,
    display_dsn,
    ensure_hnsw_index,
    ensure_schema,
    list_collections,
    make_pool,
    session_lock,
    shared_pool,
    tsv_is_per_language,
)
from ragworks.store.postgres_search import (
    _READERS_RULE,
    TS_CONFIG,
    TS_CONFIGS,
    dense_sql,
    filter_sql,
    fused_sql,
    glob_to_regex,
    lexical_params,
    lexical_sql,
    set_hnsw,
    ts_config_of,
    tsquery_text,
)
from ragworks.store.postgres_write import _FILE_COLUMNS, _PostgresWriter

if TYPE_CHECKING:  # the `postgres` extra (postgres_schema says so when it is missing)
    import psycopg
    from psycopg_pool import ConnectionPool

__all__ = [  # with the names of postgres_schema and postgres_search that importers reach through this module
    "DEFAULT_SCHEMA", "MAX_HNSW_DIM", "SCHEMA_VERSION", "TS_CONFIG", "TS_CONFIGS", "PostgresStore", "_schema_sql",
    "display_dsn", "ensure_schema", "glob_to_regex", "list_collections", "make_pool", "shared_pool", "ts_config_of",
    "tsquery_text",
]

# --- the store

_CHUNK_COLUMNS = (
    "c.id, c.doc_id, c.ordinal, c.text, c.context, c.start_char, c.end_char, c.heading_path, c.page_start, "
    "c.page_end, c.tokens, c.locator"
)
_DOC_COLUMNS = "id, source, source_path, title, metadata, chunks, content_hash, readers"


class PostgresStore(_PostgresWriter):
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
        self.per_language_tsv = tsv_is_per_language(self._pool, schema)
        self._iterative = True
        self.pgvector_version: tuple[int, ...] = ()
        try:
            self.model_name, self.dimension = self._activate_model(model_name, dimension, create)
            if model_name is not None and dimension is not None:
                self.check_model(model_name, dimension)
            self.pgvector_version = ensure_hnsw_index(self._pool, self.schema, self.dimension, self.hnsw_m,
                                                      self.hnsw_ef_construction)
            self._iterative = self.pgvector_version >= (0, 8)
        except BaseException:
            self.close()
            raise
        self.path = f"{display_dsn(self._conninfo)}#{self.schema}/{self.tenant}/{self.collection}"

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
        with session_lock(self._pool, key, wait_s, self.collection):
            yield

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

    def readers_of(self, doc_ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
        rows = self._query("SELECT id, readers FROM {s}.documents WHERE tenant = %(tenant)s AND "
                           "collection = %(collection)s AND id = ANY(%(ids)s)", {"ids": list(doc_ids)})
        return {r[0]: tuple(r[1]) for r in rows}

    # --- retrieval legs

    def _lexical_params(self, query: str) -> dict[str, Any] | None:
        return lexical_params(query, per_language_tsv=self.per_language_tsv, norm=self.rank_normalization,
                              k1=self.k1, b=self.b)

    def _set_hnsw(self, conn: psycopg.Connection[Any], k: int) -> None:
        set_hnsw(conn, k, ef_search=self.ef_search, max_scan_tuples=self.max_scan_tuples, iterative=self._iterative)

    def _qvec(self, query: np.ndarray) -> np.ndarray:
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        if q.shape[0] != self.dimension:
            raise ValueError(f"query vector has {q.shape[0]} dimensions, the collection {self.dimension}")
        return q

    def dense_search(self, query: np.ndarray, k: int, flt: Filter | None = None) -> list[tuple[int, float]]:
        """Top-k chunks by inner product (HNSW; relaxed iterative scan, re-sorted exactly)."""
        if k <= 0:
            return []
        f = filter_sql(flt)
        dense = dense_sql(f, self.dimension)
        text = f"WITH cand AS MATERIALIZED ({dense}) SELECT id, -dist FROM cand ORDER BY dist, id"
        with self._pool.connection() as conn:
            self._set_hnsw(conn, k)
            rows = self._run(conn, text, {**f.params, "qvec": self._qvec(query), "n_dense": k}).fetchall()
        return [(int(r[0]), float(r[1])) for r in rows]

    def lexical_search(self, query: str, k: int, flt: Filter | None = None) -> list[tuple[int, float]]:
        """Top-k chunks by `ts_rank_cd` over an OR of the query's lexemes."""
        lex = self._lexical_params(query)
        if lex is None or k <= 0:
            return []
        f = filter_sql(flt)
        rows = self._query(lexical_sql(f, self.lexical_ranking), {**f.params, **lex, "n_lex": k})
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
        f = filter_sql(flt)
        lex = self._lexical_params(query_text)
        params: dict[str, Any] = {**f.params, **(lex or {}), "qvec": self._qvec(query_vec), "n_dense": candidates,
                                  "n_lex": candidates, "rrf_k": rrf_k, "k": k}
        text = fused_sql(dense_sql(f, self.dimension), lexical_sql(f, self.lexical_ranking) if lex else None)
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
