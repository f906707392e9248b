"""What `QdrantStore` keeps in Qdrant, as plain functions: deterministic point ids and collection names, the
sparse BM25 encoding of the `"sparse"` lexical leg, payload conditions, and payload → FileRecord /
StoredDocument / Chunk.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Sequence
from typing import Any

from ragworks.access import READERS_KEY
from ragworks.documents import Chunk
from ragworks.store.base import FileRecord, StoredDocument

try:  # the `qdrant` extra
    from qdrant_client import models as qm
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("the Qdrant store needs the `qdrant` extra: pip install 'ragworks[qdrant]'") from exc

DENSE, SPARSE = "dense", "bm25"
K1, B = 1.2, 0.75  # BM25 parameters of the sparse leg (the project's BM25 uses the same)
_DOC_FIELDS = ["id", "source", "source_path", "title", "metadata", "chunks", "content_hash"]
_FILE_FIELDS = ["path", "size", "mtime_ns", "sha256", "status", "error", "documents", "chunks"]
_CHUNK_FIELDS = ["doc_id", "ordinal", "text", "context", "start", "end", "heading_path", "page_start", "page_end",
                 "tokens", "text_hash", "locator", "source", "title", "metadata"]


def point_id(*parts: str) -> int:
    """A deterministic 63-bit point id (Qdrant ids are unsigned 64-bit; 63 keeps them valid SQLite/FAISS ids too)."""
    digest = hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


def term_index(term: str) -> int:
    """A term's sparse-vector dimension: 32 bits of BLAKE2b (stable across processes, unlike `hash`)."""
    return int.from_bytes(hashlib.blake2b(term.encode("utf-8"), digest_size=4).digest(), "big")


def bm25_sparse(terms: Sequence[str], avgdl: float, k1: float = K1, b: float = B) -> qm.SparseVector:
    """A passage's BM25 term weights without idf (Qdrant's IDF modifier multiplies it in at query time)."""
    counts: dict[int, int] = {}
    for t in terms:
        i = term_index(t)
        counts[i] = counts.get(i, 0) + 1
    norm = k1 * (1.0 - b + b * len(terms) / max(avgdl, 1.0))
    idx = sorted(counts)
    return qm.SparseVector(indices=idx, values=[counts[i] * (k1 + 1.0) / (counts[i] + norm) for i in idx])


def glob_match(pattern: str, text: str) -> bool:
    """SQLite GLOB semantics (case-sensitive, `*` crosses `/`, `[^a]` as well as `[!a]`), as EmbeddedStore."""
    return fnmatch.fnmatchcase(text, pattern.replace("[^", "[!"))


def collection_name(prefix: str, tenant: str, collection: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", collection.lower()).strip("-")[:40] or "c"
    return f"{prefix}_{slug}_{point_id('ragworks', tenant, collection):016x}"


def _match(key: str, value: Any) -> qm.Condition | None:
    """An equality condition on a payload key, or None when Qdrant cannot express it (checked in Python)."""
    if isinstance(value, bool | int | str):
        return qm.FieldCondition(key=key, match=qm.MatchValue(value=value))
    if isinstance(value, float):
        return qm.FieldCondition(key=key, range=qm.Range(gte=value, lte=value))
    return None


def _file(p: dict[str, Any]) -> FileRecord:
    return FileRecord(*(p[k] for k in _FILE_FIELDS))


def _stored(p: dict[str, Any]) -> StoredDocument:
    return StoredDocument(p["id"], p["source"], p["source_path"], p["title"], dict(p["metadata"]), int(p["chunks"]),
                          p["content_hash"], tuple(p.get("readers") or ()))


def _without_readers(metadata: dict[str, Any]) -> dict[str, Any]:
    """Readers live in their own payload field (filtered on, changed by set_readers), not in the metadata."""
    return {k: v for k, v in metadata.items() if k != READERS_KEY}


def _chunk(p: dict[str, Any]) -> Chunk:
    chunk = Chunk(doc_id=p["doc_id"], ordinal=int(p["ordinal"]), text=p["text"], context=p["context"],
                  start=int(p["start"]), end=int(p["end"]), heading_path=tuple(p["heading_path"]),
                  page_start=p["page_start"], page_end=p["page_end"], token_count=int(p["tokens"]))
    chunk.set_locator(p.get("locator"))
    return chunk
