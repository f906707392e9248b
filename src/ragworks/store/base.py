"""The Store protocol: where documents, chunks, vectors and the keyword index live.

A store is transactional at the level of a `WriteBatch`: everything in it becomes visible together or not at
all, which is what makes a killed ingest harmless. Retrieval legs return `(chunk_id, score)` pairs; the
retriever fuses them and asks the store for the chunks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

from ragworks.documents import Chunk, Document, SearchHit


@dataclass(slots=True)
class FileRecord:
    """What the store remembers of an ingested file, to skip it next time when it hasn't changed."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    status: str = "ok"  # ok | failed
    error: str = ""
    documents: int = 0
    chunks: int = 0


@dataclass(slots=True)
class DocumentWrite:
    """A document to insert or replace, with its chunks (vectors are looked up by chunk text hash)."""

    document: Document
    chunks: list[Chunk]


@dataclass(slots=True)
class WriteBatch:
    """Applied atomically: document upserts, deletions, new vectors and file records."""

    documents: list[DocumentWrite] = field(default_factory=list)
    delete_doc_ids: list[str] = field(default_factory=list)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # text_hash → vector (only new ones)
    files: list[FileRecord] = field(default_factory=list)
    delete_files: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return sum(len(d.chunks) for d in self.documents)


@dataclass(frozen=True, slots=True)
class Filter:
    """Restricts search to chunks whose document matches every condition given."""

    source_glob: str | None = None  # shell-style glob on the document's source ("docs/*.pdf")
    metadata: dict[str, Any] = field(default_factory=dict)  # equality on metadata keys
    doc_ids: tuple[str, ...] | None = None
    # the caller's principal tokens (ragworks.access): a chunk is returned only if its document's readers are
    # empty (public within the tenant) or share a token with these; None = unrestricted (local CLI, admin)
    readers: tuple[str, ...] | None = None

    def __bool__(self) -> bool:
        return bool(self.source_glob or self.metadata or self.doc_ids is not None or self.readers is not None)


@dataclass(frozen=True, slots=True)
class StoredDocument:
    id: str
    source: str
    source_path: str
    title: str
    metadata: dict[str, Any]
    chunks: int
    content_hash: str
    readers: tuple[str, ...] = ()  # allowed principal tokens; () = public within the tenant


class Store(Protocol):
    """Persistence and the two retrieval legs. Implementations: `EmbeddedStore` (SQLite + FTS5 + FAISS),
    `PostgresStore` (pgvector HNSW + tsvector) and `QdrantStore` (qdrant-client), the last two scoped to a tenant."""

    model_name: str
    dimension: int

    def check_model(self, name: str, dimension: int) -> None:
        """Raise EmbedderMismatch unless `name` is the model this collection's vectors come from."""
        ...

    def write_lock(self, wait_s: float = 0.0) -> contextlib.AbstractContextManager[None]:
        """Exclusive writer lock across processes; raises CollectionLocked when held past `wait_s`."""
        ...

    def file_record(self, path: str) -> FileRecord | None: ...

    def file_records(self) -> list[FileRecord]: ...

    def documents_from(self, source_path: str) -> dict[str, str]:
        """doc id → content hash of the documents that came from one file."""
        ...

    def content_hash_of(self, doc_id: str) -> str | None: ...

    def chunk_counts(self, doc_ids: Sequence[str]) -> dict[str, int]: ...

    def cached_vectors(self, text_hashes: Sequence[str]) -> set[str]:
        """Which of these chunk texts already have a vector (for the active model)."""
        ...

    def write(self, batch: WriteBatch) -> None: ...

    def write_version(self) -> int:
        """A number that changes on every committed write or deletion (seen by every process that shares the
        collection): result caches key on it, so a write invalidates what they hold."""
        ...

    def dense_search(self, query: np.ndarray, k: int, flt: Filter | None = None) -> list[tuple[int, float]]: ...

    def lexical_search(self, query: str, k: int, flt: Filter | None = None) -> list[tuple[int, float]]: ...

    def hits(self, scored: Sequence[tuple[int, float]]) -> list[SearchHit]:
        """Materialize chunk ids into hits with document identity, in the given order."""
        ...

    def resolve_documents(self, ref: str) -> list[str]:
        """Doc ids for a document id, an exact source, or a source glob / file path."""
        ...

    def get_document(self, doc_id_or_source: str, readers: tuple[str, ...] | None = None
                     ) -> tuple[StoredDocument, str, list[Chunk]]:
        """A document, its text and chunks; DocumentNotFound also when `readers` may not read it."""
        ...

    def list_documents(self, *, limit: int = 100, offset: int = 0, after: str | None = None,
                       readers: tuple[str, ...] | None = None) -> list[StoredDocument]:
        """Documents by source; `after` (the last source of the previous page) pages without OFFSET's rescans;
        with `readers`, only the documents those principals may read."""
        ...

    def set_readers(self, doc_ids: Sequence[str], readers: Sequence[str]) -> int:
        """Replace the readers of documents (no chunk or vector is touched); returns how many exist."""
        ...

    def readers_of(self, doc_ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """doc id → its readers, for the documents that exist."""
        ...

    def delete_documents(self, doc_ids: Sequence[str]) -> int: ...

    def stats(self) -> dict[str, Any]: ...

    def flush(self) -> None:
        """Persist derived indexes (the FAISS file) so the next open needs no replay."""
        ...

    def close(self) -> None: ...


# --- capabilities: what some stores can do besides the Store protocol. Callers outside store/ test for these
# (isinstance against the protocol), never for a store's concrete type.


class HybridRow(NamedTuple):
    """One fused result of `FusedHybridSearch.hybrid_search_ranked`, with where each leg ranked it (from 1)."""

    row_id: int
    score: float
    dense_rank: int | None
    dense_score: float | None
    lexical_rank: int | None
    lexical_score: float | None


@runtime_checkable
class FusedHybridSearch(Protocol):
    """A store that fuses its dense and lexical legs itself, in one round trip (PostgreSQL: RRF in SQL)."""

    def hybrid_search_ranked(self, query_vec: np.ndarray, query_text: str, k: int, flt: Filter | None = None,
                             rrf_k: int = 60, candidates: int = 100) -> list[HybridRow]: ...


@runtime_checkable
class StoredVectors(Protocol):
    """A store that returns the exact stored vectors of chunks (MMR diversification uses them, not re-embedding)."""

    def vectors_for(self, chunk_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(the ids found, their vectors) for the active model."""
        ...


@runtime_checkable
class Droppable(Protocol):
    """A store in a shared service that deletes its whole collection itself (PostgreSQL rows, a Qdrant collection);
    an embedded collection is dropped with its directory."""

    def drop(self) -> None: ...


@runtime_checkable
class TunableLexical(Protocol):
    """A store whose BM25 leg can be chosen (embedded: SQLite FTS5 or the in-memory index)."""

    def configure_lexical(self, backend: Any, memory_max_chunks: int = ...) -> None: ...


@runtime_checkable
class SelectableIndex(Protocol):
    """A store whose vector index kind is a per-collection choice (embedded: flat, HNSW, IVF, IVF-PQ or "auto")."""

    def index_type(self) -> Any: ...

    def set_index_type(self, choice: Any) -> None: ...


@runtime_checkable
class SwitchableModel(Protocol):
    """A store whose active embedding model another process can switch (`ragworks tune`)."""

    def active_model_changed(self) -> bool: ...


@runtime_checkable
class ChunkWindows(Protocol):
    """A store that reads a document's chunks by position and slices of its text: hierarchical retrieval hands the
    LLM a matched chunk's neighbours (small-to-big) as one exact slice of the document, so offsets stay true."""

    def chunk_window(self, doc_id: str, ordinal_from: int, ordinal_to: int) -> list[Chunk]:
        """The document's chunks with `ordinal_from <= ordinal <= ordinal_to`, by ordinal ([] for no document)."""
        ...

    def document_text(self, doc_id: str, start: int, end: int) -> str:
        """Characters [start, end) of the stored document's text ("" for no document)."""


@runtime_checkable
class ErasesDeleted(Protocol):
    """A store whose files can keep bytes of deleted rows (index segments, a write-ahead log) until compacted."""

    def purge_deleted(self) -> None:
        """Rewrite whatever still holds deleted text, so no file under the store has a copy."""
        ...
