"""The zero-server store: one directory with SQLite (WAL) for everything and a FAISS file for fast vector search.

`EmbeddedStore` puts together the parts in this package: the SQLite plumbing (sqlite.py), the dense leg and its
FAISS index (vectors.py), the BM25 leg (lexical.py) and model versions (models.py); this module holds what is
the store's own: files, documents, chunks, permissions and the write path.

Searches read through a small pool of read-only connections (WAL readers never block each other or the writer),
so concurrent searches run their SQL in parallel instead of queueing on the writer's connection lock.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragworks.access import READERS_KEY, normalize_readers
from ragworks.documents import COUNTS_KEY, PRIMARY_KINDS, Chunk, SearchHit, kind_totals
from ragworks.errors import DocumentNotFound, EmbedderMismatch
from ragworks.store.base import FileRecord, StoredDocument, WriteBatch
from ragworks.store.embedded.lexical import LexicalLeg
from ragworks.store.embedded.models import ModelVersions
from ragworks.store.embedded.sqlite import bump_version, readers_sql
from ragworks.store.embedded.vectors import VectorLeg
from ragworks.store.vector_index import VectorIndex


def _split_readers(metadata: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A document's metadata without its readers, and the readers as the column stores them (sorted JSON)."""
    meta = {k: v for k, v in metadata.items() if k != READERS_KEY}
    return meta, json.dumps(list(normalize_readers(metadata.get(READERS_KEY))))


class EmbeddedStore(LexicalLeg, VectorLeg, ModelVersions):
    """SQLite + FTS5 + FAISS in one directory. Safe for one writer and many readers across processes."""

    def __init__(
        self, path: Path, *, model_name: str | None = None, dimension: int | None = None, create: bool = True
    ) -> None:
        """Open (or create) the collection at `path`. Without `model_name`, use the model it was built with."""
        self._open_db(path, create)
        with self._tx():
            self.lexical_analyzer = self._open_fts()
            self.model_id, self.model_name, self.dimension = self._activate_model(model_name, dimension)
        if model_name is not None and dimension is not None:
            self.check_model(model_name, dimension)
        self.index = VectorIndex(self.path, f"dense-m{self.model_id}", self.dimension, index_type=self.index_type())
        self._index_loaded = False
        self._index_dirty = False
        self._deleted_since_gc = False
        self._init_lexical()

    # --- files and documents

    def file_record(self, path: str) -> FileRecord | None:
        row = self._query(
            "SELECT path, size, mtime_ns, sha256, status, error, documents, chunks FROM files WHERE path = ?",
            (path,),
        )
        return FileRecord(*row[0]) if row else None

    def file_records(self) -> list[FileRecord]:
        rows = self._query("SELECT path, size, mtime_ns, sha256, status, error, documents, chunks FROM files")
        return [FileRecord(*r) for r in rows]

    def documents_from(self, source_path: str) -> dict[str, str]:
        rows = self._query("SELECT id, content_hash FROM documents WHERE source_path = ?", (source_path,))
        return {r[0]: r[1] for r in rows}

    def content_hash_of(self, doc_id: str) -> str | None:
        row = self._query("SELECT content_hash FROM documents WHERE id = ?", (doc_id,))
        return row[0][0] if row else None

    def chunk_counts(self, doc_ids: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for i in range(0, len(doc_ids), 500):
            part = list(doc_ids[i : i + 500])
            rows = self._query(f"SELECT id, chunks FROM documents WHERE id IN ({','.join('?' * len(part))})", part)
            out.update({r[0]: r[1] for r in rows})
        return out

    def cached_vectors(self, text_hashes: Sequence[str]) -> set[str]:
        found: set[str] = set()
        hashes = list(dict.fromkeys(text_hashes))
        for i in range(0, len(hashes), 500):
            part = hashes[i : i + 500]
            rows = self._query(
                f"SELECT text_hash FROM embeddings WHERE model = ? AND text_hash IN ({','.join('?' * len(part))})",
                [self.model_id, *part],
            )
            found.update(r[0] for r in rows)
        return found

    def _delete_doc(self, conn: sqlite3.Connection, doc_id: str) -> int:
        rows = conn.execute(
            "SELECT id, CASE WHEN context = '' THEN text ELSE context || char(10) || text END "
            "FROM chunks WHERE doc_id = ?",
            (doc_id,),
        ).fetchall()
        if rows:
            conn.executemany("INSERT INTO chunks_fts(chunks_fts, rowid, body) VALUES('delete', ?, ?)",
                             [(cid, self._fts_body(body)) for cid, body in rows])
            conn.executemany("INSERT INTO vector_log(chunk_id, op) VALUES(?, 0)", [(r[0],) for r in rows])
            conn.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
            self._deleted_since_gc = True
        conn.execute("DELETE FROM documents WHERE id = ?", (doc_id,))
        return len(rows)

    def write(self, batch: WriteBatch) -> None:
        now = time.time()
        with self._tx() as conn:
            active = conn.execute("SELECT id, name FROM models WHERE active = 1").fetchone()
            if active is not None and int(active[0]) != self.model_id:
                # `ragworks tune` switched models after this process opened the collection: writing this model's
                # vectors would leave the active model without vectors for these chunks
                raise EmbedderMismatch(
                    f"collection {self.path.name!r} now searches with {active[1]!r}, not {self.model_name!r} (a "
                    "`ragworks tune` switch or rollback happened after this process opened it): reopen the "
                    "collection (restart the server or worker) and retry")
            conn.executemany(
                "INSERT OR IGNORE INTO embeddings(model, text_hash, vector) VALUES(?, ?, ?)",
                [(self.model_id, h, np.asarray(v, dtype=np.float32).tobytes()) for h, v in batch.vectors.items()],
            )
            for doc_id in batch.delete_doc_ids:
                self._delete_doc(conn, doc_id)
            for dw in batch.documents:
                doc = dw.document
                self._delete_doc(conn, doc.id)
                meta, readers = _split_readers(doc.metadata)
                conn.execute(
                    "INSERT INTO documents(id, source, source_path, title, content_hash, metadata, page_starts, "
                    "text, chunks, updated, readers) VALUES(?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        doc.id,
                        doc.source,
                        doc.source_path,
                        doc.title,
                        doc.content_hash,
                        json.dumps(meta, ensure_ascii=False, default=str),
                        json.dumps(doc.page_starts),
                        doc.text,
                        len(dw.chunks),
                        now,
                        readers,
                    ),
                )
                for c in dw.chunks:
                    cur = conn.execute(
                        "INSERT INTO chunks(doc_id, ordinal, text, context, start, end, heading_path, page_start, "
                        "page_end, tokens, text_hash, locator) VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
                        (
                            c.doc_id,
                            c.ordinal,
                            c.text,
                            c.context,
                            c.start,
                            c.end,
                            json.dumps(list(c.heading_path), ensure_ascii=False),
                            c.page_start,
                            c.page_end,
                            c.token_count,
                            c.text_hash,
                            json.dumps(loc) if (loc := c.locator()) else None,
                        ),
                    )
                    cid = cur.lastrowid
                    conn.execute("INSERT INTO chunks_fts(rowid, body) VALUES(?, ?)",
                                 (cid, self._fts_body(c.index_text)))
                    conn.execute("INSERT INTO vector_log(chunk_id, op) VALUES(?, 1)", (cid,))
            bump_version(conn)
            for path in batch.delete_files:
                conn.execute("DELETE FROM files WHERE path = ?", (path,))
            conn.executemany(
                "INSERT OR REPLACE INTO files(path, size, mtime_ns, sha256, status, error, documents, chunks, "
                "updated) VALUES(?,?,?,?,?,?,?,?,?)",
                [
                    (f.path, f.size, f.mtime_ns, f.sha256, f.status, f.error, f.documents, f.chunks, now)
                    for f in batch.files
                ],
            )

    def delete_documents(self, doc_ids: Sequence[str]) -> int:
        """Delete documents with their chunks, vectors and BM25 rows; forget their files so re-ingest restores."""
        removed = 0
        with self._tx() as conn:
            for doc_id in doc_ids:
                row = conn.execute("SELECT source_path FROM documents WHERE id = ?", (doc_id,)).fetchone()
                if row is None:
                    continue
                self._delete_doc(conn, doc_id)
                removed += 1
                if row[0]:
                    conn.execute("DELETE FROM files WHERE path = ?", (row[0],))
            if removed:
                bump_version(conn)
        return removed

    def write_version(self) -> int:
        """Changes with every committed write or deletion (and model switch), in any process: result caches key
        on it. A counter in `meta`, bumped inside the writing transaction."""
        rows = self._read("SELECT value FROM meta WHERE key = 'write_version'")
        return int(rows[0][0]) if rows else 0

    def purge_deleted(self) -> None:
        """Leave no copy of deleted text in any file: FTS5 keeps a deleted passage's terms in its index segments
        until they are merged, so merge them all ('optimize'); then move the WAL into the database (whose freed
        pages `secure_delete` zeroed) and truncate it. Costs a rewrite of the keyword index."""
        with self._tx() as conn:
            conn.execute("INSERT INTO chunks_fts(chunks_fts) VALUES('optimize')")
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def resolve_documents(self, ref: str) -> list[str]:
        """Doc ids for a document id, an exact source, or a source glob."""
        rows = self._query("SELECT id FROM documents WHERE id = ? OR source = ?", (ref, ref))
        if not rows:
            rows = self._query("SELECT id FROM documents WHERE source GLOB ? OR source_path = ?", (ref, ref))
        return [r[0] for r in rows]

    def get_document(self, doc_id_or_source: str, readers: tuple[str, ...] | None = None
                     ) -> tuple[StoredDocument, str, list[Chunk]]:
        """A document, its text and chunks; one the `readers` may not read is not found (never "forbidden")."""
        allowed, args = readers_sql(readers) if readers is not None else ("1", [])
        rows = self._query(
            f"SELECT {_DOC_COLUMNS}, d.text FROM documents d WHERE (d.id = ? OR d.source = ?) AND {allowed}",
            [doc_id_or_source, doc_id_or_source, *args],
        )
        if not rows:
            raise DocumentNotFound(f"no document {doc_id_or_source!r} in collection {self.path.name!r}")
        r = rows[0]
        doc = _stored_document(r)
        chunk_rows = self._query(
            f"SELECT {_CHUNK_COLUMNS} FROM chunks c WHERE c.doc_id = ? ORDER BY c.ordinal", (r[0],)
        )
        return doc, r[8], [_chunk_from_row(cr) for cr in chunk_rows]

    def chunk_window(self, doc_id: str, ordinal_from: int, ordinal_to: int) -> list[Chunk]:
        rows = self._read(
            f"SELECT {_CHUNK_COLUMNS} FROM chunks c WHERE c.doc_id = ? AND c.ordinal BETWEEN ? AND ? "
            "ORDER BY c.ordinal", (doc_id, ordinal_from, ordinal_to))
        return [_chunk_from_row(r) for r in rows]

    def document_text(self, doc_id: str, start: int, end: int) -> str:
        if end <= start:
            return ""
        rows = self._read("SELECT substr(text, ?, ?) FROM documents WHERE id = ?", (start + 1, end - start, doc_id))
        return str(rows[0][0]) if rows else ""

    def list_documents(self, *, limit: int = 100, offset: int = 0, after: str | None = None,
                       readers: tuple[str, ...] | None = None) -> list[StoredDocument]:
        conds, args = ["1"], []
        if after is not None:
            conds.append("d.source > ?")
            args.append(after)
        if readers is not None:
            cond, rargs = readers_sql(readers)
            conds.append(cond)
            args.extend(rargs)
        rows = self._query(
            f"SELECT {_DOC_COLUMNS} FROM documents d WHERE {' AND '.join(conds)} ORDER BY d.source LIMIT ? OFFSET ?",
            [*args, limit, offset],
        )
        return [_stored_document(r) for r in rows]

    def set_readers(self, doc_ids: Sequence[str], readers: Sequence[str]) -> int:
        """Replace the readers of documents in one transaction: the next search applies them, nothing re-embeds."""
        value = json.dumps(list(normalize_readers(list(readers))))
        changed = 0
        with self._tx() as conn:
            for doc_id in dict.fromkeys(doc_ids):
                changed += conn.execute("UPDATE documents SET readers = ? WHERE id = ?", (value, doc_id)).rowcount
            conn.execute("INSERT INTO meta(key, value) VALUES('acl_version', '1') ON CONFLICT(key) DO UPDATE SET "
                         "value = CAST(value AS INTEGER) + 1")
            bump_version(conn)  # cached results of searches the change affects must not be served
        return changed

    def readers_of(self, doc_ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = {}
        ids = list(doc_ids)
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            rows = self._query(f"SELECT id, readers FROM documents WHERE id IN ({','.join('?' * len(part))})", part)
            out.update({r[0]: tuple(json.loads(r[1])) for r in rows})
        return out

    def hits(self, scored: Sequence[tuple[int, float]]) -> list[SearchHit]:
        if not scored:
            return []
        ids = [cid for cid, _ in scored]
        rows = self._read(
            f"SELECT {_CHUNK_COLUMNS}, d.source, d.title, d.metadata FROM chunks c "
            f"JOIN documents d ON d.id = c.doc_id WHERE c.id IN ({','.join('?' * len(ids))})",
            ids,
        )
        by_id = {r[0]: r for r in rows}
        out = []
        for cid, score in scored:
            r = by_id.get(cid)
            if r is None:  # deleted between the index lookup and now
                continue
            out.append(
                SearchHit(
                    chunk=_chunk_from_row(r),
                    score=score,
                    source=r[-3],
                    title=r[-2],
                    metadata=json.loads(r[-1]),
                    row_id=cid,
                )
            )
        return out

    # --- reporting

    def stats(self) -> dict[str, Any]:
        self.sync_index()
        q = self._query
        files = q("SELECT count(*), sum(status != 'ok') FROM files")[0]
        size = sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())
        return {
            "collection": self.path.name,
            "path": str(self.path),
            "documents": q("SELECT count(*) FROM documents")[0][0],
            "chunks": q("SELECT count(*) FROM chunks")[0][0],
            "files": files[0],
            "failed_files": files[1] or 0,
            "vectors": len(self.index),
            "embedding_model": self.model_name,
            "dimension": self.dimension,
            "disk_bytes": size,
            "kinds": self._kinds(),
        }

    def _kinds(self) -> dict[str, float]:
        """What the documents hold, per kind (`documents.content_counts`, summed in SQL)."""
        counted = self._query(
            f"SELECT j.key, total(j.value) FROM documents d, json_each(d.metadata, '$.{COUNTS_KEY}') j "
            f"WHERE json_type(d.metadata, '$.{COUNTS_KEY}') = 'object' AND j.type IN ('integer', 'real') "
            "GROUP BY j.key")
        no_primary = " AND ".join(f"json_type(metadata, '$.{COUNTS_KEY}.{k}') IS NULL" for k in PRIMARY_KINDS)
        text_only = self._query(f"SELECT count(*) FROM documents WHERE {no_primary}")[0][0]
        return kind_totals(counted, text_only)

    def close(self) -> None:
        self._close_db()


_DOC_COLUMNS = "d.id, d.source, d.source_path, d.title, d.metadata, d.chunks, d.content_hash, d.readers"


def _stored_document(r: Sequence[Any]) -> StoredDocument:
    return StoredDocument(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6], tuple(json.loads(r[7])))


_CHUNK_COLUMNS = (
    "c.id, c.doc_id, c.ordinal, c.text, c.context, c.start, c.end, c.heading_path, c.page_start, c.page_end, c.tokens, "
    "c.locator"
)


def _chunk_from_row(r: Sequence[Any]) -> Chunk:
    chunk = Chunk(
        doc_id=r[1],
        ordinal=r[2],
        text=r[3],
        context=r[4],
        start=r[5],
        end=r[6],
        heading_path=tuple(json.loads(r[7])),
        page_start=r[8],
        page_end=r[9],
        token_count=r[10],
    )
    if r[11]:
        chunk.set_locator(json.loads(r[11]))
    return chunk
