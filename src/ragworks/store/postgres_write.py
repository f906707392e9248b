"""The tenant-scoped statement runner under `PostgresStore` and its write path.

`_PostgresWriter` binds every statement to the store's `(tenant, collection)` pair (`_sql` refuses SQL that does
not bind both) and holds what changes rows: `write(batch)` as one transaction under a per-collection transaction
lock (delete-then-insert of whole documents, the BM25 statistics `lexicon` / `collections.n_chunks,total_len`
kept in step, `write_version` bumped), `delete_documents`, `set_readers`, the vector-cache GC in `flush` and
`drop`. `PostgresStore` (ragworks.store.postgres) sets the attributes declared here in its constructor.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ragworks.access import READERS_KEY, normalize_readers
from ragworks.store.base import WriteBatch
from ragworks.store.postgres_schema import _int64_key, _json, _nul
from ragworks.store.postgres_search import ts_config_of

if TYPE_CHECKING:  # the `postgres` extra (postgres_schema says so when it is missing)
    import psycopg
    from psycopg_pool import ConnectionPool

_FILE_COLUMNS = "path, size, mtime_ns, sha256, status, error, documents, chunks"
_TENANT_BOUND = ("%(tenant)s", "%(collection)s")


class _PostgresWriter:
    """Statements scoped to one tenant's collection, and the methods that write it (base of PostgresStore)."""

    _tenant: str
    _collection: str
    _pool: ConnectionPool
    _deleted_since_gc: bool
    schema: str
    model_name: str
    cache_grace_s: float

    # --- plumbing: every statement goes through _sql

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

    # --- writes

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

    def set_readers(self, doc_ids: Sequence[str], readers: Sequence[str]) -> int:
        """Replace the readers of documents in one statement: the next search applies them, nothing re-embeds."""
        with self._tx() as conn:
            cur = self._run(conn, "UPDATE {s}.documents SET readers = %(readers)s::text[] WHERE tenant = %(tenant)s "
                            "AND collection = %(collection)s AND id = ANY(%(ids)s)",
                            {"readers": list(normalize_readers(list(readers))), "ids": list(dict.fromkeys(doc_ids))})
            self._bump_version(conn)  # cached results of searches the change affects must not be served
            return int(cur.rowcount or 0)

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

    def drop(self) -> None:
        """Delete the whole collection (documents, chunks, vectors, files, model record)."""
        with self._tx() as conn:
            self._run(conn, "DELETE FROM {s}.collections WHERE tenant = %(tenant)s AND collection = %(collection)s")
