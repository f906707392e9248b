"""The zero-server store: one directory with SQLite (WAL) for everything and a FAISS file for fast vector search.

SQLite is the source of truth, vectors included (`embeddings`, keyed by chunk text hash, doubling as the
embedding cache). Every chunk insert or delete appends to `vector_log` in the same transaction; the FAISS index
is derived state that records the last log entry it contains and catches up by replaying the rest. So a
`kill -9` at any moment leaves SQLite at its last commit and the index at its last complete file, and the next
open reconciles them.

Searches read through a small pool of read-only connections (WAL readers never block each other or the writer),
so concurrent searches run their SQL in parallel instead of queueing on the writer's connection lock. The BM25
leg is FTS5 or, for collections up to `lexical_memory_max_chunks`, an in-memory BM25 (lexical/bm25.py) that
replays the same vector log as the FAISS index.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ragworks.access import READERS_KEY, normalize_readers
from ragworks.documents import COUNTS_KEY, PRIMARY_KINDS, Chunk, SearchHit, kind_totals
from ragworks.errors import CollectionLocked, CollectionNotFound, DocumentNotFound, EmbedderMismatch
from ragworks.lexical.analysis import STOPWORDS, fts5_like_analyzer
from ragworks.lexical.bm25 import SegmentedBM25
from ragworks.lexical.languages import LanguageAnalyzer
from ragworks.store.ann import IndexChoice, plan_index
from ragworks.store.base import FileRecord, Filter, StoredDocument, WriteBatch
from ragworks.store.vector_index import MIN_TRAIN, VectorIndex

SCHEMA_VERSION = 1
DB_NAME = "ragworks.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS models(
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, dimension INTEGER NOT NULL,
    active INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS files(
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL,
    status TEXT NOT NULL, error TEXT NOT NULL DEFAULT '', documents INTEGER NOT NULL DEFAULT 0,
    chunks INTEGER NOT NULL DEFAULT 0, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS documents(
    id TEXT PRIMARY KEY, source TEXT NOT NULL UNIQUE, source_path TEXT NOT NULL, title TEXT NOT NULL,
    content_hash TEXT NOT NULL, metadata TEXT NOT NULL, page_starts TEXT NOT NULL, text TEXT NOT NULL,
    chunks INTEGER NOT NULL, updated REAL NOT NULL, readers TEXT NOT NULL DEFAULT '[]');
CREATE INDEX IF NOT EXISTS documents_path ON documents(source_path);
CREATE TABLE IF NOT EXISTS chunks(
    id INTEGER PRIMARY KEY AUTOINCREMENT, doc_id TEXT NOT NULL, ordinal INTEGER NOT NULL, text TEXT NOT NULL,
    context TEXT NOT NULL, start INTEGER NOT NULL, end INTEGER NOT NULL, heading_path TEXT NOT NULL,
    page_start INTEGER, page_end INTEGER, tokens INTEGER NOT NULL, text_hash TEXT NOT NULL, locator TEXT);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id, ordinal);
CREATE INDEX IF NOT EXISTS chunks_hash ON chunks(text_hash);
CREATE TABLE IF NOT EXISTS embeddings(
    model INTEGER NOT NULL, text_hash TEXT NOT NULL, vector BLOB NOT NULL,
    PRIMARY KEY(model, text_hash)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS vector_log(seq INTEGER PRIMARY KEY AUTOINCREMENT, chunk_id INTEGER NOT NULL,
    op INTEGER NOT NULL);
CREATE VIEW IF NOT EXISTS chunk_bodies AS
    SELECT id, CASE WHEN context = '' THEN text ELSE context || char(10) || text END AS body FROM chunks;
"""
# The FTS5 table indexes each passage's terms as ragworks.lexical.languages analyzes them (per-language rules,
# joined by spaces), so it gets no stemmer or mark folding of its own. Collections made before that indexed the
# raw text with FTS5's Porter stemmer and folded marks (LEGACY_FTS): they keep doing so until re-created, because
# removing a row from an external-content FTS5 table needs exactly the text it was indexed with.
_FTS_SQL = """CREATE VIRTUAL TABLE chunks_fts USING fts5(
    body, content='chunk_bodies', content_rowid='id', tokenize='unicode61 remove_diacritics 0')"""
LEGACY_FTS_SQL = """CREATE VIRTUAL TABLE chunks_fts USING fts5(
    body, content='chunk_bodies', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2')"""
LEXICAL_ANALYZER = "languages-1"  # meta `lexical_analyzer` of collections indexed through LanguageAnalyzer

_ADD, _DEL = 1, 0
LexicalBackend = Literal["auto", "fts5", "memory"]
LEXICAL_MEMORY_MAX_CHUNKS = 200_000  # "auto": in-memory BM25 up to this many chunks (~0.3 KB each), FTS5 beyond
LEXICAL_SYNC_BUILD_CHUNKS = 20_000  # build the in-memory BM25 inline up to this size (~0.5 s); beyond, in the
# background while FTS5 answers
READ_CACHE_KIB = 2048  # private page cache per pooled reader; reads go through the shared mmap below instead
READ_MMAP_BYTES = 1 << 30  # readers map the database file: one copy in the OS page cache for all connections
READ_POOL_IDLE = 8  # idle readers kept; more are opened under a burst and closed when handed back
ALLOWED_CACHE_FILTERS = 32  # filters (principal sets) whose allowed chunk ids are kept between searches

_TERM = re.compile(r"\w+", re.UNICODE)


def fts_query(text: str) -> str:
    """A free-text question → an FTS5 OR-query of its quoted terms (stopwords dropped unless nothing is left)."""
    terms = [t.lower() for t in _TERM.findall(text)]
    kept = [t for t in terms if t not in STOPWORDS] or terms
    unique = list(dict.fromkeys(kept))
    return " OR ".join(f'"{t}"' for t in unique)


def _filter_sql(flt: Filter | None) -> tuple[str, list[Any]]:
    """SQL conditions over `documents d` for a filter."""
    if not flt:
        return "", []
    conds: list[str] = []
    args: list[Any] = []
    if flt.source_glob:
        conds.append("d.source GLOB ?")
        args.append(flt.source_glob)
    for key, value in flt.metadata.items():
        conds.append("json_extract(d.metadata, ?) = ?")
        args.append('$."' + key.replace('"', "") + '"')
        args.append(int(value) if isinstance(value, bool) else value)
    if flt.doc_ids is not None:
        conds.append(f"d.id IN ({','.join('?' * len(flt.doc_ids))})" if flt.doc_ids else "0")
        args.extend(flt.doc_ids)
    if flt.readers is not None:
        cond, rargs = _readers_sql(flt.readers)
        conds.append(cond)
        args.extend(rargs)
    return " AND ".join(conds), args


def _readers_sql(readers: Sequence[str]) -> tuple[str, list[Any]]:
    """The permission rule over `documents d`: public (no readers) or one of the caller's tokens is a reader."""
    if not readers:
        return "d.readers = '[]'", []
    marks = ",".join("?" * len(readers))
    return (f"(d.readers = '[]' OR EXISTS (SELECT 1 FROM json_each(d.readers) r WHERE r.value IN ({marks})))",
            list(readers))


def _split_readers(metadata: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A document's metadata without its readers, and the readers as the column stores them (sorted JSON)."""
    meta = {k: v for k, v in metadata.items() if k != READERS_KEY}
    return meta, json.dumps(list(normalize_readers(metadata.get(READERS_KEY))))


class EmbeddedStore:
    """SQLite + FTS5 + FAISS in one directory. Safe for one writer and many readers across processes."""

    def __init__(
        self, path: Path, *, model_name: str | None = None, dimension: int | None = None, create: bool = True
    ) -> None:
        """Open (or create) the collection at `path`. Without `model_name`, use the model it was built with."""
        self.path = Path(path)
        db = self.path / DB_NAME
        if not db.exists():
            if not create:
                raise CollectionNotFound(f"no collection at {self.path} (ingest something to create it)")
            self.path.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._flush_lock = threading.RLock()  # one flush at a time (its index build runs outside `_lock`)
        self._conn = sqlite3.connect(db, check_same_thread=False, timeout=60, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=OFF")
        self._conn.execute("PRAGMA cache_size=-65536")
        # erasure (issue 14): freed pages are zeroed, so a deleted passage leaves no bytes in the file
        self._conn.execute("PRAGMA secure_delete=ON")
        with self._tx():
            for stmt in _split_sql(_SCHEMA):
                self._conn.execute(stmt)
            self._conn.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
            if "locator" not in {r[1] for r in self._conn.execute("PRAGMA table_info(chunks)")}:
                # collections made before OCR/speech: a chunk's time range and page box (JSON), NULL for text
                self._conn.execute("ALTER TABLE chunks ADD COLUMN locator TEXT")
            if "readers" not in {r[1] for r in self._conn.execute("PRAGMA table_info(documents)")}:
                # document permissions (ragworks.access): a JSON list of principal tokens, '[]' = public
                self._conn.execute("ALTER TABLE documents ADD COLUMN readers TEXT NOT NULL DEFAULT '[]'")
            self.lexical_analyzer = self._open_fts()
            self.model_id, self.model_name, self.dimension = self._activate_model(model_name, dimension)
        if model_name is not None and dimension is not None:
            self.check_model(model_name, dimension)
        self.index = VectorIndex(self.path, f"dense-m{self.model_id}", self.dimension, index_type=self.index_type())
        self._index_loaded = False
        self._index_dirty = False  # the index type setting changed: rebuild on the next flush
        self._deleted_since_gc = False
        self._db = db
        self._readers: list[sqlite3.Connection] = []  # idle pooled read connections
        self._readers_lock = threading.Lock()
        self._allowed_cache: dict[tuple[Any, ...], tuple[tuple[int, int], np.ndarray]] = {}
        self._closed = False
        self.lexical_backend: LexicalBackend = "auto"
        self.lexical_memory_max_chunks = LEXICAL_MEMORY_MAX_CHUNKS
        self._bm25: SegmentedBM25 | None = None
        self._bm25_seq = 0
        self._bm25_skip_head = -1
        self._bm25_lock = threading.Lock()
        self._bm25_building: threading.Thread | None = None

    # --- plumbing

    def _open_fts(self) -> LanguageAnalyzer | None:
        """Create the FTS5 table of a new collection; the analyzer its terms come from (None: LEGACY_FTS)."""
        conn = self._conn
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'chunks_fts'").fetchone() is None:
            conn.execute(_FTS_SQL)
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('lexical_analyzer', ?)", (LEXICAL_ANALYZER,))
        row = conn.execute("SELECT value FROM meta WHERE key = 'lexical_analyzer'").fetchone()
        return LanguageAnalyzer() if row is not None and row[0] == LEXICAL_ANALYZER else None

    def _fts_body(self, body: str) -> str:
        """What the FTS5 table indexes for a passage body (also what removing it must pass again)."""
        return body if self.lexical_analyzer is None else self.lexical_analyzer.indexed_text(body)

    def _bm25_analyzer(self) -> Callable[[str], list[str]]:
        """The in-memory leg's analyzer: the FTS5 table's, so both legs index the same terms."""
        return self.lexical_analyzer if self.lexical_analyzer is not None else fts5_like_analyzer()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    @contextlib.contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        """A pooled read-only connection: sees every committed write, never what a `_tx` has not committed."""
        with self._readers_lock:
            if self._closed:
                raise sqlite3.ProgrammingError("the store is closed")
            conn = self._readers.pop() if self._readers else None
        if conn is None:
            conn = sqlite3.connect(self._db, check_same_thread=False, timeout=60, isolation_level=None)
            conn.execute("PRAGMA query_only=ON")
            conn.execute(f"PRAGMA cache_size=-{READ_CACHE_KIB}")
            conn.execute(f"PRAGMA mmap_size={READ_MMAP_BYTES}")
        try:
            yield conn
        finally:
            with self._readers_lock:
                keep = not self._closed and len(self._readers) < READ_POOL_IDLE
                if keep:
                    self._readers.append(conn)
            if not keep:
                conn.close()

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._reader() as conn:
            return conn.execute(sql, args).fetchall()

    def _activate_model(self, name: str | None, dimension: int | None) -> tuple[int, str, int]:
        active = self._conn.execute("SELECT id, name, dimension FROM models WHERE active = 1").fetchone()
        if active is None:
            if name is None or dimension is None:
                raise CollectionNotFound(f"collection at {self.path} is empty (ingest something first)")
            cur = self._conn.execute(
                "INSERT INTO models(name, dimension, active, created) VALUES(?, ?, 1, ?)",
                (name, dimension, time.time()),
            )
            return int(cur.lastrowid or 0), name, dimension
        return int(active[0]), str(active[1]), int(active[2])

    def active_model_changed(self) -> bool:
        """True once another process (`ragworks tune`'s switch or rollback) made another model the active one:
        this store still searches the old model's vectors, and its writes are refused; reopen to follow."""
        rows = self._read("SELECT id FROM models WHERE active = 1")
        return bool(rows) and int(rows[0][0]) != self.model_id

    def check_model(self, name: str, dimension: int) -> None:
        """Raise EmbedderMismatch unless `name` is the model this collection's vectors come from."""
        if name != self.model_name or dimension != self.dimension:
            raise EmbedderMismatch(
                f"collection {self.path.name!r} was embedded with {self.model_name!r} ({self.dimension}-d), but "
                f"the configured embedder is {name!r} ({dimension}-d); configure the same model "
                "(RAGWORKS_EMBED_MODEL / --embed-model) or ingest into a new collection"
            )

    @contextlib.contextmanager
    def write_lock(self, wait_s: float = 0.0) -> Iterator[None]:
        """Exclusive writer lock across processes (ingest, delete). Raises CollectionLocked if held."""
        lock_path = self.path / "write.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_s
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise CollectionLocked(
                            f"collection {self.path.name!r} is being written by another process; "
                            "try again when it finishes"
                        ) from None
                    time.sleep(0.2)
            yield
        finally:
            os.close(fd)

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
            _bump_version(conn)
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
                _bump_version(conn)
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
        allowed, args = _readers_sql(readers) if readers is not None else ("1", [])
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
            cond, rargs = _readers_sql(readers)
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
            _bump_version(conn)  # cached results of searches the change affects must not be served
        return changed

    def readers_of(self, doc_ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = {}
        ids = list(doc_ids)
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            rows = self._query(f"SELECT id, readers FROM documents WHERE id IN ({','.join('?' * len(part))})", part)
            out.update({r[0]: tuple(json.loads(r[1])) for r in rows})
        return out

    # --- the vector index

    def _log_head(self) -> int:
        with self._lock:
            return _head_of(self._conn)

    def _read_head(self) -> int:
        with self._reader() as conn:
            return _head_of(conn)

    def _saved_seq(self) -> int:
        row = self._query("SELECT value FROM meta WHERE key = ?", (f"index_seq_m{self.model_id}",))
        return int(row[0][0]) if row else 0

    def _vectors_for(self, chunk_ids: Sequence[int], conn: sqlite3.Connection | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
        # CROSS JOIN pins the loop order (chunks by id, then the embedding by primary key); with a plain JOIN
        # SQLite scanned every embedding per call: 2.9 s at 4k chunks, quadratic in collection size.
        ids: list[int] = []
        blobs: list[bytes] = []
        for i in range(0, len(chunk_ids), 900):
            part = list(chunk_ids[i : i + 900])
            sql = ("SELECT c.id, e.vector FROM chunks c "
                   "CROSS JOIN embeddings e ON e.model = ? AND e.text_hash = c.text_hash "
                   f"WHERE c.id IN ({','.join('?' * len(part))})")
            args = [self.model_id, *part]
            rows = self._query(sql, args) if conn is None else conn.execute(sql, args).fetchall()
            for cid, blob in rows:
                ids.append(cid)
                blobs.append(blob)
        if not ids:
            return np.zeros(0, dtype=np.int64), np.zeros((0, self.dimension), dtype=np.float32)
        vecs = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(ids), self.dimension)
        return np.asarray(ids, dtype=np.int64), vecs

    def vectors_for(self, chunk_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(ids, float32 vectors) of the active model for those of `chunk_ids` that still exist."""
        return self._vectors_for(chunk_ids)

    def index_type(self) -> IndexChoice:
        """The collection's index type setting: "auto" (by size) unless `set_index_type` chose one."""
        row = self._query("SELECT value FROM meta WHERE key = 'index_type'")
        return row[0][0] if row else "auto"

    def set_index_type(self, choice: IndexChoice) -> None:
        """Remember `choice` for this collection; the next `flush` rebuilds the index if its kind differs."""
        with self._tx() as conn:
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('index_type', ?)", (choice,))
        self.index.index_type = choice
        self._index_dirty = True

    def request_index_rebuild(self) -> None:
        """Make the next `flush` rebuild the index from SQLite in one pass (after a bulk load)."""
        self._index_dirty = True

    def iter_vectors(self, batch: int = 20000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(chunk ids, vectors) of the whole collection, `batch` chunks at a time (bounded memory)."""
        last = 0
        while True:
            rows = self._query("SELECT id FROM chunks WHERE id > ? ORDER BY id LIMIT ?", (last, batch))
            if not rows:
                return
            yield self._vectors_for([r[0] for r in rows])
            last = rows[-1][0]

    def random_chunk_ids(self, n: int) -> list[int]:
        return sorted(r[0] for r in self._query("SELECT id FROM chunks ORDER BY random() LIMIT ?", (n,)))

    def rebuild_index(self) -> None:
        """Rebuild the FAISS index from the vectors in SQLite, choosing its kind by size (or `index_type`), with
        searches waiting (`flush` builds an outgrown index beside the serving one instead)."""
        with self._lock:
            fresh = self._build_beside()
            if fresh is not None:
                self.index = fresh

    def _build_beside(self) -> VectorIndex | None:
        """A new index built from one read snapshot of SQLite while searches go on with the current one; its
        `seq` is that snapshot's log head. None if the model was switched meanwhile."""
        model_id = self.model_id
        fresh = VectorIndex(self.path, f"dense-m{model_id}", self.dimension, index_type=self.index_type())
        with self._reader() as conn:
            conn.execute("BEGIN")  # the head, the sample and every vector come from the same snapshot
            try:
                head = _head_of(conn)
                n = int(conn.execute("SELECT count(*) FROM chunks").fetchone()[0])
                plan = fresh.plan_for(n)
                if plan.needs_training and n < MIN_TRAIN:
                    plan = replace(plan_index(n, self.dimension, "flat"),
                                   reason=f"{n} vectors: too few to train {plan.kind}")
                sample = np.zeros(0)
                if plan.needs_training:
                    ids = sorted(r[0] for r in conn.execute("SELECT id FROM chunks ORDER BY random() LIMIT ?",
                                                             (plan.training_size(),)))
                    sample = self._vectors_for(ids, conn)[1]
                fresh.rebuild(plan, sample)
                last = 0
                while rows := conn.execute("SELECT id FROM chunks WHERE id > ? ORDER BY id LIMIT 20000",
                                           (last,)).fetchall():
                    fresh.add(*self._vectors_for([r[0] for r in rows], conn))
                    last = rows[-1][0]
            finally:
                conn.execute("COMMIT")
        fresh.seq = head
        return fresh if self.model_id == model_id else None

    def sync_index(self) -> None:
        """Bring the in-memory index up to the last committed write (ours or another process's)."""
        if self._index_loaded and self.index.seq == self._read_head():
            return  # up to date: checked on a pooled connection, without waiting for the writer's lock
        with self._lock:
            if not self._index_loaded:
                self.index.load()
                self._index_loaded = True
            head = self._log_head()
            if self.index.seq == head:
                return
            saved = self._saved_seq()
            if self.index.seq < saved:  # the log before `saved` was compacted away: start from that file
                if not self.index.load() or self.index.seq < saved:
                    self.rebuild_index()
                    return
            rows = self._query("SELECT seq, chunk_id, op FROM vector_log WHERE seq > ? ORDER BY seq", (self.index.seq,))
            last_op: dict[int, int] = {}
            top = self.index.seq
            for seq, cid, op in rows:
                last_op[cid] = op
                top = seq
            # added ids are new (AUTOINCREMENT): removing them too only guards against a replay interrupted
            # half-way, and HNSW, which cannot remove, would rebuild on every flush, so it gets the deletions only
            gone = [cid for cid, op in last_op.items() if op != _ADD]
            self.index.remove(gone if self.index.plan.kind == "hnsw" else list(last_op))
            ids, vecs = self._vectors_for([cid for cid, op in last_op.items() if op == _ADD])
            self.index.add(ids, vecs)
            self.index.seq = max(top, head if not rows else top)

    def flush(self) -> None:
        """Save the index file at the current log position, compact the log, drop unused cached vectors."""
        with self._flush_lock:
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            if (
                not self._deleted_since_gc
                and not self._index_dirty
                and self._log_head() == self._saved_seq()
                and self.index.newest_on_disk()
            ):
                return  # nothing written since the last save: don't even load the index
            # a bulk load leaves millions of log rows: rebuild from SQLite in one pass instead of replaying them
            bulk = self._index_dirty
            if bulk:
                self._index_loaded = True
                self.rebuild_index()
                rebuilt = True
            else:
                self.sync_index()
                rebuilt = self.index.outgrown()
        if rebuilt and not bulk:
            # the index outgrew its kind (flat → IVF, IVF lists, HNSW deletions): build the new one beside it,
            # off the lock, so searches keep answering from the current index (a big build takes minutes)
            fresh = self._build_beside()
            with self._lock:
                if fresh is not None:
                    self.index = fresh
                self.sync_index()  # replay what was written during the build
        with self._lock:
            self._index_dirty = False
            seq = self.index.seq
            if rebuilt or seq > self._saved_seq() or not self.index.newest_on_disk():
                self.index.save(seq, replace=rebuilt)
                with self._bm25_lock:  # replay what the compaction below removes, so BM25 needs no rebuild
                    if self._bm25 is not None and self._bm25_building is None:
                        self._replay_bm25(self._bm25)
                with self._tx() as conn:
                    conn.execute(
                        "INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)",
                        (f"index_seq_m{self.model_id}", str(seq)),
                    )
                    conn.execute("DELETE FROM vector_log WHERE seq <= ?", (seq,))
            if self._deleted_since_gc:
                with self._tx() as conn:
                    conn.execute("DELETE FROM embeddings WHERE text_hash NOT IN (SELECT text_hash FROM chunks)")
                self._deleted_since_gc = False

    # --- model versions (`ragworks tune`): an inactive model's vectors and index are filled in beside the active
    # one's, then one transaction makes it active; the previous model's rows stay for a rollback.

    def models(self) -> list[tuple[int, str, int, bool]]:
        """(id, name, dimension, active) of every model this collection has vectors for, oldest first."""
        return [(int(r[0]), str(r[1]), int(r[2]), bool(r[3]))
                for r in self._query("SELECT id, name, dimension, active FROM models ORDER BY id")]

    def add_model(self, name: str, dimension: int) -> int:
        """The id of model `name`, recorded inactive if new (its vectors are written with `write_model_vectors`)."""
        with self._tx() as conn:
            row = conn.execute("SELECT id FROM models WHERE name = ?", (name,)).fetchone()
            if row is not None:
                return int(row[0])
            cur = conn.execute("INSERT INTO models(name, dimension, active, created) VALUES(?, ?, 0, ?)",
                               (name, dimension, time.time()))
            return int(cur.lastrowid or 0)

    def missing_model_vectors(self, model_id: int, *, after: int = 0, limit: int = 256) -> list[tuple[int, str, str]]:
        """(chunk id, text hash, embedded text) of chunks after `after` whose text has no vector for `model_id`."""
        return [(int(r[0]), str(r[1]), str(r[2])) for r in self._query(
            "SELECT c.id, c.text_hash, CASE WHEN c.context = '' THEN c.text ELSE c.context || char(10) || c.text END "
            "FROM chunks c WHERE c.id > ? AND NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.model = ? "
            "AND e.text_hash = c.text_hash) ORDER BY c.id LIMIT ?", (after, model_id, limit))]

    def write_model_vectors(self, model_id: int, vectors: dict[str, np.ndarray]) -> None:
        """Store vectors of `model_id` (by chunk text hash) in one transaction."""
        with self._tx() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO embeddings(model, text_hash, vector) VALUES(?, ?, ?)",
                [(model_id, h, np.asarray(v, dtype=np.float32).tobytes()) for h, v in vectors.items()],
            )

    def build_model_index(self, model_id: int) -> int:
        """Write `model_id`'s complete FAISS file at the current log position; returns that position.

        Call under `write_lock` after every chunk has a vector of the model (else ValueError), so no chunk can
        arrive between this and `activate_model`.
        """
        row = self._query("SELECT dimension FROM models WHERE id = ?", (model_id,))
        if not row:
            raise ValueError(f"no model {model_id} in {self.path}")
        # exact index; a collection big enough for IVF gets it rebuilt by the first `flush` after activation
        index = VectorIndex(self.path, f"dense-m{model_id}", int(row[0][0]), index_type=self.index_type())
        head = self._log_head()
        last = 0
        while True:
            rows = self._query(
                "SELECT c.id, e.vector FROM chunks c LEFT JOIN embeddings e ON e.model = ? "
                "AND e.text_hash = c.text_hash WHERE c.id > ? ORDER BY c.id LIMIT 20000", (model_id, last))
            if not rows:
                break
            if any(r[1] is None for r in rows):
                raise ValueError(f"model {model_id} lacks vectors for some chunks of {self.path}")
            vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), index.dimension)
            index.add(np.asarray([r[0] for r in rows], dtype=np.int64), vecs)
            last = int(rows[-1][0])
        if index.newest_on_disk() != head:  # an equal file is this same index, written by an interrupted run
            index.save(head)
        return head

    def model_history(self) -> list[int]:
        """Model ids in the order they were made active (the last is the active one)."""
        row = self._query("SELECT value FROM meta WHERE key = 'model_history'")
        if row:
            return [int(x) for x in json.loads(row[0][0])]
        return [int(r[0]) for r in self._query("SELECT id FROM models WHERE active = 1")]

    def activate_model(self, model_id: int, seq: int, *, rollback: bool = False) -> None:
        """Make `model_id` (its index saved at `seq` by `build_model_index`) the active model in one transaction.

        `rollback` drops the current model from the history instead of pushing `model_id` onto it.
        """
        with self._tx() as conn:
            history = self.model_history()
            if rollback:
                history = history[:-1] or [model_id]
            elif history[-1:] != [model_id]:
                history.append(model_id)
            conn.execute("UPDATE models SET active = (id = ?)", (model_id,))
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", (f"index_seq_m{model_id}", str(seq)))
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('model_history', ?)", (json.dumps(history),))
            _bump_version(conn)
        self.select_model(model_id)

    def select_model(self, model_id: int) -> None:
        """Read (and write) this store's vectors as `model_id`: a view of an inactive model, for evaluation."""
        row = self._query("SELECT name, dimension FROM models WHERE id = ?", (model_id,))
        if not row:
            raise ValueError(f"no model {model_id} in {self.path}")
        with self._lock:
            self.model_id, self.model_name, self.dimension = model_id, str(row[0][0]), int(row[0][1])
            self.index = VectorIndex(self.path, f"dense-m{model_id}", self.dimension, index_type=self.index_type())
            self._index_loaded = False

    # --- retrieval legs

    def _allowed_ids(self, flt: Filter) -> np.ndarray:
        """Chunk ids a filter lets through, cached per filter until the next write or permission change (both
        legs of a search, and every search of the same principals, share one pass over the collection)."""
        key = (flt.source_glob, json.dumps(flt.metadata, sort_keys=True, default=str), flt.doc_ids, flt.readers)
        with self._reader() as conn:
            conn.execute("BEGIN")  # the version and the ids come from one snapshot
            try:
                version = (_head_of(conn), _acl_version(conn))
                cached = self._allowed_cache.get(key)
                if cached is not None and cached[0] == version:
                    return cached[1]
                where, args = _filter_sql(flt)
                rows = conn.execute(f"SELECT c.id FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE {where}",
                                    args).fetchall()
            finally:
                conn.execute("COMMIT")
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        with self._readers_lock:
            self._allowed_cache[key] = (version, ids)
            while len(self._allowed_cache) > ALLOWED_CACHE_FILTERS:
                self._allowed_cache.pop(next(iter(self._allowed_cache)))
        return ids

    def dense_search(self, query: np.ndarray, k: int, flt: Filter | None = None) -> list[tuple[int, float]]:
        self.sync_index()
        allowed = self._allowed_ids(flt) if flt else None
        with self._lock:
            found = self.index.search(query, self.index.candidates(k), allowed)
        if allowed is not None and len(found) < min(k, len(allowed)):
            # an approximate index (IVF probes, HNSW's beam) can miss allowed rows under a narrow filter: score
            # the allowed rows exactly, so a permitted caller still gets k results
            return self._exact_among(query, allowed, k)
        if not self.index.plan.rerank or not found:
            return found
        # compressed (PQ) scores only pick candidates: re-score them exactly from the stored vectors
        ids, vecs = self._vectors_for([cid for cid, _ in found])
        scores = vecs @ np.asarray(query, dtype=np.float32).ravel()
        top = np.argsort(-scores)[:k]
        return [(int(ids[i]), float(scores[i])) for i in top]

    def _exact_among(self, query: np.ndarray, allowed: np.ndarray, k: int) -> list[tuple[int, float]]:
        """Top-k of `allowed` by inner product, from the stored vectors (a filtered search's exact fallback)."""
        ids, vecs = self._vectors_for(allowed.tolist())
        if not len(ids):
            return []
        scores = vecs @ np.asarray(query, dtype=np.float32).ravel()
        top = np.argsort(-scores, kind="stable")[:k]
        return [(int(ids[i]), float(scores[i])) for i in top]

    def lexical_search(self, query: str, k: int, flt: Filter | None = None) -> list[tuple[int, float]]:
        bm25 = self._memory_bm25()
        if bm25 is not None:
            return bm25.search(query, k, self._allowed_ids(flt) if flt else None)
        return self._fts5_search(query, k, flt)

    def _fts5_search(self, query: str, k: int, flt: Filter | None = None) -> list[tuple[int, float]]:
        if self.lexical_analyzer is None:
            match = fts_query(query)
        else:  # the query's terms under its own language's rules, quoted (they are letters and digits only)
            match = " OR ".join(f'"{t}"' for t in dict.fromkeys(self.lexical_analyzer.query(query)))
        if not match:
            return []
        where, args = _filter_sql(flt)
        if where:
            sql = (
                "SELECT f.rowid, bm25(chunks_fts) FROM chunks_fts f JOIN chunks c ON c.id = f.rowid "
                f"JOIN documents d ON d.id = c.doc_id WHERE chunks_fts MATCH ? AND {where} ORDER BY rank LIMIT ?"
            )
            rows = self._read(sql, [match, *args, k])
        else:
            rows = self._read(
                "SELECT rowid, bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY rank LIMIT ?",
                (match, k),
            )
        return [(int(r[0]), -float(r[1])) for r in rows]

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
        with self._lock:
            self._conn.close()
        with self._readers_lock:
            self._closed = True
            idle, self._readers = self._readers, []
        for conn in idle:  # a reader in use is closed when it is handed back
            conn.close()

    # --- the in-memory BM25 leg

    def configure_lexical(self, backend: LexicalBackend, memory_max_chunks: int = LEXICAL_MEMORY_MAX_CHUNKS) -> None:
        """Choose the BM25 leg: FTS5, the in-memory index, or "auto" (in memory up to `memory_max_chunks`)."""
        self.lexical_backend = backend
        self.lexical_memory_max_chunks = memory_max_chunks

    def _memory_bm25(self) -> SegmentedBM25 | None:
        """The in-memory BM25, brought up to the last committed write; None means "use FTS5" for this search."""
        if self.lexical_backend == "fts5":
            return None
        bm25, head = self._bm25, self._read_head()
        if bm25 is not None and self._bm25_seq == head:
            return bm25
        if bm25 is None and self._bm25_skip_head == head:
            return None  # too big for memory when last counted, and nothing written since
        with self._bm25_lock:
            if self._bm25_building is not None:
                return None  # a background build is under way: FTS5 answers meanwhile
            if self._bm25 is not None and self._replay_bm25(self._bm25):
                return self._bm25
            n = int(self._read("SELECT count(*) FROM chunks")[0][0])
            if self.lexical_backend == "auto" and n > self.lexical_memory_max_chunks:
                self._bm25, self._bm25_skip_head = None, head
                return None
            if n <= LEXICAL_SYNC_BUILD_CHUNKS:
                self._build_bm25()
                return self._bm25
            self._bm25_building = threading.Thread(target=self._build_bm25_background, daemon=True,
                                                   name="ragworks-bm25-build")
            self._bm25_building.start()
            return None

    def _build_bm25(self) -> None:
        """Index every chunk body as of one snapshot (and remember that snapshot's log position)."""
        bm25 = SegmentedBM25(analyzer=self._bm25_analyzer())
        with self._reader() as conn:
            conn.execute("BEGIN")
            try:
                seq = _head_of(conn)
                rows = conn.execute("SELECT id, body FROM chunk_bodies ORDER BY id").fetchall()
            finally:
                conn.execute("COMMIT")
        bm25.build([r[0] for r in rows], (r[1] for r in rows))
        self._bm25, self._bm25_seq = bm25, seq

    def _build_bm25_background(self) -> None:
        try:
            self._build_bm25()
        except Exception:  # FTS5 keeps answering; the next search tries again
            logging.getLogger("ragworks.store").exception("building the in-memory BM25 index failed")
        finally:
            with self._bm25_lock:
                self._bm25_building = None

    def _replay_bm25(self, bm25: SegmentedBM25) -> bool:
        """Apply the vector log after `_bm25_seq` to `bm25`; False if compaction removed entries it needs."""
        with self._reader() as conn:
            conn.execute("BEGIN")
            try:
                head = _head_of(conn)
                if head == self._bm25_seq:
                    return True
                # AUTOINCREMENT numbers committed entries without gaps (a rollback restores sqlite_sequence), so
                # a missing next entry means a flush compacted it away: rebuild instead of replaying
                first = conn.execute("SELECT min(seq) FROM vector_log WHERE seq > ?", (self._bm25_seq,)).fetchone()[0]
                if first is None or first > self._bm25_seq + 1:
                    return False
                last_op: dict[int, int] = {}
                for cid, op in conn.execute("SELECT chunk_id, op FROM vector_log WHERE seq > ? AND seq <= ? "
                                            "ORDER BY seq", (self._bm25_seq, head)):
                    last_op[int(cid)] = int(op)
                added = [cid for cid, op in last_op.items() if op == _ADD]
                bodies: list[tuple[int, str]] = []
                for i in range(0, len(added), 900):
                    part = added[i : i + 900]
                    marks = ",".join("?" * len(part))
                    bodies += conn.execute(f"SELECT id, body FROM chunk_bodies WHERE id IN ({marks})", part).fetchall()
            finally:
                conn.execute("COMMIT")
        bm25.remove(cid for cid, op in last_op.items() if op != _ADD)
        bm25.add([b[0] for b in bodies], [b[1] for b in bodies])
        self._bm25_seq = head
        return True


def _bump_version(conn: sqlite3.Connection) -> None:
    """Advance the collection's write version inside the caller's transaction (see `write_version`)."""
    conn.execute("INSERT INTO meta(key, value) VALUES('write_version', '1') ON CONFLICT(key) DO UPDATE "
                 "SET value = CAST(value AS INTEGER) + 1")


def _acl_version(conn: sqlite3.Connection) -> int:
    """Bumped by every `set_readers`: the chunks a readers filter lets through change without a vector log entry."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'acl_version'").fetchone()
    return int(row[0]) if row else 0


def _head_of(conn: sqlite3.Connection) -> int:
    """The last `vector_log` entry ever committed (compaction deletes entries, not this number)."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'vector_log'").fetchone()
    return int(row[0]) if row else 0


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


def _split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
