"""The SQLite side every part of the embedded store shares: the schema, the writer connection and its
transactions, the pool of read-only connections, the cross-process write lock, and the SQL of a Filter.

SQLite is the source of truth, vectors included (`embeddings`, keyed by chunk text hash, doubling as the
embedding cache). Every chunk insert or delete appends to `vector_log` in the same transaction; the FAISS index
(vectors.py) and the in-memory BM25 (lexical.py) are derived state that replay it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragworks.errors import CollectionLocked, CollectionNotFound
from ragworks.store.ann import IndexChoice
from ragworks.store.base import Filter
from ragworks.store.vector_index import VectorIndex

SCHEMA_VERSION = 1
DB_NAME = "ragworks.sqlite3"

SCHEMA = """
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

ADD, DEL = 1, 0  # vector_log ops
READ_CACHE_KIB = 2048  # private page cache per pooled reader; reads go through the shared mmap below instead
READ_MMAP_BYTES = 1 << 30  # readers map the database file: one copy in the OS page cache for all connections
READ_POOL_IDLE = 8  # idle readers kept; more are opened under a burst and closed when handed back
ALLOWED_CACHE_FILTERS = 32  # filters (principal sets) whose allowed chunk ids are kept between searches


def filter_sql(flt: Filter | None) -> tuple[str, list[Any]]:
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
        cond, rargs = readers_sql(flt.readers)
        conds.append(cond)
        args.extend(rargs)
    return " AND ".join(conds), args


def readers_sql(readers: Sequence[str]) -> tuple[str, list[Any]]:
    """The permission rule over `documents d`: public (no readers) or one of the caller's tokens is a reader."""
    if not readers:
        return "d.readers = '[]'", []
    marks = ",".join("?" * len(readers))
    return (f"(d.readers = '[]' OR EXISTS (SELECT 1 FROM json_each(d.readers) r WHERE r.value IN ({marks})))",
            list(readers))


def bump_version(conn: sqlite3.Connection) -> None:
    """Advance the collection's write version inside the caller's transaction (see `write_version`)."""
    conn.execute("INSERT INTO meta(key, value) VALUES('write_version', '1') ON CONFLICT(key) DO UPDATE "
                 "SET value = CAST(value AS INTEGER) + 1")


def acl_version(conn: sqlite3.Connection) -> int:
    """Bumped by every `set_readers`: the chunks a readers filter lets through change without a vector log entry."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'acl_version'").fetchone()
    return int(row[0]) if row else 0


def head_of(conn: sqlite3.Connection) -> int:
    """The last `vector_log` entry ever committed (compaction deletes entries, not this number)."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'vector_log'").fetchone()
    return int(row[0]) if row else 0


def split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


class SqliteBase:
    """The connections and the state the store's parts share (vectors.py, lexical.py, models.py, store.py)."""

    path: Path
    model_id: int
    model_name: str
    dimension: int
    index: VectorIndex
    _index_loaded: bool

    def _open_db(self, path: Path, create: bool) -> None:
        """Open (or create) the database in `path` and its schema; the caller's `_tx` completes the opening."""
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
        self._db = db
        self._readers: list[sqlite3.Connection] = []  # idle pooled read connections
        self._readers_lock = threading.Lock()
        self._allowed_cache: dict[tuple[Any, ...], tuple[tuple[int, int], np.ndarray]] = {}
        self._closed = False
        with self._tx():
            for stmt in split_sql(SCHEMA):
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

    def _log_head(self) -> int:
        with self._lock:
            return head_of(self._conn)

    def _read_head(self) -> int:
        with self._reader() as conn:
            return head_of(conn)

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

    def index_type(self) -> IndexChoice:
        """The collection's index type setting: "auto" (by size) unless `set_index_type` chose one."""
        row = self._query("SELECT value FROM meta WHERE key = 'index_type'")
        return row[0][0] if row else "auto"

    def _allowed_ids(self, flt: Filter) -> np.ndarray:
        """Chunk ids a filter lets through, cached per filter until the next write or permission change (both
        legs of a search, and every search of the same principals, share one pass over the collection)."""
        key = (flt.source_glob, json.dumps(flt.metadata, sort_keys=True, default=str), flt.doc_ids, flt.readers)
        with self._reader() as conn:
            conn.execute("BEGIN")  # the version and the ids come from one snapshot
            try:
                version = (head_of(conn), acl_version(conn))
                cached = self._allowed_cache.get(key)
                if cached is not None and cached[0] == version:
                    return cached[1]
                where, args = filter_sql(flt)
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

    def _log_compacting(self) -> None:
        """Called before a flush deletes the vector log up to the saved index: legs that replay the log catch up."""

    def _close_db(self) -> None:
        with self._lock:
            self._conn.close()
        with self._readers_lock:
            self._closed = True
            idle, self._readers = self._readers, []
        for conn in idle:  # a reader in use is closed when it is handed back
            conn.close()
