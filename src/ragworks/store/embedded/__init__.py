"""The zero-server store: one directory with SQLite (WAL) for everything and a FAISS file for fast vector search.

Its parts: sqlite.py (schema, connections, the write lock, filter SQL), vectors.py (the FAISS dense leg, derived
from SQLite by replaying the vector log), lexical.py (the BM25 leg: FTS5 or in memory), models.py (model versions
for `ragworks tune`), store.py (`EmbeddedStore`: files, documents, permissions, the write path).
"""

from ragworks.store.embedded.lexical import (
    LEGACY_FTS_SQL,
    LEXICAL_ANALYZER,
    LEXICAL_MEMORY_MAX_CHUNKS,
    LEXICAL_SYNC_BUILD_CHUNKS,
    LexicalBackend,
    fts_query,
)
from ragworks.store.embedded.sqlite import DB_NAME, READ_POOL_IDLE, SCHEMA_VERSION
from ragworks.store.embedded.store import EmbeddedStore

__all__ = [
    "DB_NAME",
    "LEGACY_FTS_SQL",
    "LEXICAL_ANALYZER",
    "LEXICAL_MEMORY_MAX_CHUNKS",
    "LEXICAL_SYNC_BUILD_CHUNKS",
    "READ_POOL_IDLE",
    "SCHEMA_VERSION",
    "EmbeddedStore",
    "LexicalBackend",
    "fts_query",
]
