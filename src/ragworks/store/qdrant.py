"""The Qdrant store: chunks, documents and files of one tenant's collection in Qdrant, through `qdrant-client`.

One Qdrant collection per ragworks collection (`<prefix>_<hash of tenant and collection>`), so BM25 statistics,
deletion of a whole collection and Qdrant's own sharding all follow the ragworks collection. Every point still
carries `tenant` and `collection` in its payload and every read is filtered by both (`_scope`), as in
`PostgresStore`: a store object for tenant A cannot express a query over tenant B.

Points, by payload `kind`:
- `chunk`: named dense vector `dense` (dot product; vectors are L2-normalized, so the score is the cosine, equal to
  the other stores'), optional sparse vector `bm25`, and the chunk with its document's source, title, metadata
  and `readers` (document permissions). Point id: 63 bits of SHA-256 over (tenant, collection, doc id, ordinal,
  text hash), so re-writing a batch upserts the same points and a changed chunk gets a new id.
- `document`, `file`: the rows the ingest pipeline reads back (no vector).
- `vec`: the embedding cache, a vector by chunk text hash (payload only), so unchanged chunks are never re-embedded.
- `meta`: the collection's model and dimension (checked: EmbedderMismatch), BM25 average length and `write_version`.

Qdrant has no multi-point transaction. `write` orders its steps so that a crash leaves the previous state or one
that re-applying the batch repairs: vectors first, then the new chunk points, then the deletion of the document's
stale points, and the document record (with its content hash) last, so an interrupted document looks changed
and is re-ingested. Searches in that window may see a document's old and new chunks together.

The lexical leg: `lexical = "memory"` (default) keeps the project's BM25 (lexical/bm25.py, the embedded store's
scorer) in process, built from the chunk payloads and rebuilt when `write_version` moves; `"sparse"` stores
BM25-weighted sparse vectors (term frequency part, with Qdrant's IDF modifier) and searches them in Qdrant.
bench/qdrant.py measures both on SciFact (README).

Layout: this module is the store (`QdrantStore`) and the public entry point; point ids, names, the sparse BM25
encoding and payload conversions live in `qdrant_payload`, the process's clients in `qdrant_clients`. Their
public names are importable from here too.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np

from ragworks.access import READERS_KEY, may_read, normalize_readers
from ragworks.documents import COUNTS_KEY, PRIMARY_KINDS, Chunk, SearchHit, kind_totals
from ragworks.errors import CollectionLocked, CollectionNotFound, ConfigError, DocumentNotFound, EmbedderMismatch
from ragworks.lexical.bm25 import SegmentedBM25
from ragworks.lexical.languages import LanguageAnalyzer
from ragworks.store.base import FileRecord, Filter, StoredDocument, WriteBatch
from ragworks.store.qdrant_clients import (
    _CLIENTS_LOCK,
    _WRITE_LOCKS,
    _is_local,
    client_for,
    close_client,
    list_collections,
    shared_client,
)
from ragworks.store.qdrant_payload import (
    _DOC_FIELDS,
    _FILE_FIELDS,
    DENSE,
    K1,
    SPARSE,
    B,
    _chunk,
    _file,
    _match,
    _stored,
    _without_readers,
    bm25_sparse,
    collection_name,
    glob_match,
    point_id,
    term_index,
)

try:  # the `qdrant` extra
    from qdrant_client import QdrantClient
    from qdrant_client import models as qm
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("the Qdrant store needs the `qdrant` extra: pip install 'ragworks[qdrant]'") from exc

__all__ = [  # with the names of qdrant_clients and qdrant_payload that importers reach through this module
    "DENSE", "K1", "SPARSE", "B", "LexicalLeg", "QdrantStore", "bm25_sparse", "client_for", "close_client",
    "collection_name", "glob_match", "list_collections", "point_id", "shared_client", "term_index",
]

LexicalLeg = Literal["memory", "sparse"]
_PAGE = 1024  # points per scroll page


class QdrantStore:
    """One collection of one tenant in Qdrant (a server by URL, or qdrant-client's local mode by path)."""

    backend = "qdrant"

    def __init__(
        self,
        client: QdrantClient,
        *,
        collection: str,
        tenant: str,
        model_name: str | None = None,
        dimension: int | None = None,
        create: bool = True,
        prefix: str = "ragworks",
        lexical: LexicalLeg = "memory",
        scope_unfiltered: bool | None = None,
    ) -> None:
        if not tenant or not collection:
            raise ConfigError("a QdrantStore needs a non-empty tenant and collection name")
        self.client = client
        self._tenant, self._collection = tenant, collection
        self.qname = collection_name(prefix, tenant, collection)
        self.lexical = lexical
        # scope unfiltered searches by payload too: on a server (indexed); not in local mode (see _search_filter)
        self.scope_unfiltered = not _is_local(client) if scope_unfiltered is None else scope_unfiltered
        self.analyzer = LanguageAnalyzer()
        self._bm25: SegmentedBM25 | None = None
        self._bm25_version = -1
        self._bm25_lock = threading.Lock()
        self._deleted_since_gc = False
        self.path = f"qdrant:{self.qname}"
        meta = self._meta()
        if meta is None:
            if not create:
                raise CollectionNotFound(
                    f"no collection {collection!r} for tenant {tenant!r} (ingest something to create it)")
            if model_name is None or dimension is None:
                raise CollectionNotFound(f"collection {collection!r} is empty (ingest something first)")
            meta = self._create(model_name, dimension)
        self.model_name, self.dimension = str(meta["model_name"]), int(meta["dimension"])
        self.avgdl = float(meta.get("avgdl") or 0.0)
        if model_name is not None and dimension is not None:
            self.check_model(model_name, dimension)

    # --- plumbing

    @property
    def tenant(self) -> str:
        return self._tenant

    @property
    def collection(self) -> str:
        return self._collection

    @property
    def name(self) -> str:
        return self._collection

    def _scope(self, kind: str, *more: qm.Condition) -> qm.Filter:
        """Every read and delete goes through this: this tenant, this collection, one kind of point."""
        return qm.Filter(must=[
            qm.FieldCondition(key="tenant", match=qm.MatchValue(value=self._tenant)),
            qm.FieldCondition(key="collection", match=qm.MatchValue(value=self._collection)),
            qm.FieldCondition(key="kind", match=qm.MatchValue(value=kind)),
            *more,
        ])

    def _pid(self, kind: str, *key: str) -> int:
        return point_id(kind, self._tenant, self._collection, *key)

    def _payload(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {"tenant": self._tenant, "collection": self._collection, "kind": kind, **fields}

    def _meta(self) -> dict[str, Any] | None:
        if not self.client.collection_exists(self.qname):
            return None
        found = self.client.retrieve(self.qname, [self._pid("meta")], with_payload=True)
        return dict(found[0].payload or {}) if found else None

    def _create(self, model_name: str, dimension: int) -> dict[str, Any]:
        if not self.client.collection_exists(self.qname):
            self.client.create_collection(
                self.qname,
                vectors_config={DENSE: qm.VectorParams(size=dimension, distance=qm.Distance.DOT)},
                sparse_vectors_config={SPARSE: qm.SparseVectorParams(modifier=qm.Modifier.IDF)},
            )
            with warnings.catch_warnings():  # local mode has no payload indexes (it says so once per call)
                warnings.simplefilter("ignore", UserWarning)
                self._index_payload()
        meta = self._payload("meta", model_name=model_name, dimension=dimension, avgdl=0.0,
                             write_version=time.time_ns(), created=time.time())
        self.client.upsert(self.qname, [qm.PointStruct(id=self._pid("meta"), vector={}, payload=meta)], wait=True)
        return meta

    def _index_payload(self) -> None:
        """Keyword indexes a server filters by (tenant first: Qdrant's multitenancy hint)."""
        self.client.create_payload_index(self.qname, "tenant", field_schema=qm.KeywordIndexParams(
            type=qm.KeywordIndexType.KEYWORD, is_tenant=True))
        for key in ("collection", "kind", "doc_id", "source", "source_path", "readers", "text_hash"):
            self.client.create_payload_index(self.qname, key, field_schema=qm.PayloadSchemaType.KEYWORD)

    def _scroll(self, flt: qm.Filter, fields: list[str] | bool = True, *, vectors: bool = False
                ) -> Iterator[qm.Record]:
        offset: Any = None
        while True:
            points, offset = self.client.scroll(self.qname, scroll_filter=flt, limit=_PAGE, offset=offset,
                                                with_payload=fields, with_vectors=vectors)
            yield from points
            if offset is None:
                return

    def _records(self, ids: Sequence[int], fields: list[str] | bool = True, *, vectors: bool = False
                 ) -> list[qm.Record]:
        """Points by id, only this tenant's and collection's (the payload is checked, not trusted)."""
        if not ids:
            return []
        out = []
        for i in range(0, len(ids), _PAGE):
            got = self.client.retrieve(self.qname, list(ids[i:i + _PAGE]), with_payload=True, with_vectors=vectors)
            out += [r for r in got if (r.payload or {}).get("tenant") == self._tenant
                    and (r.payload or {}).get("collection") == self._collection]
        return out

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
        """Exclusive writer lock within this process (Qdrant has no locks: writers in several processes on one
        server must be serialized by the job queue, one job per collection at a time)."""
        with _CLIENTS_LOCK:
            lock = _WRITE_LOCKS.setdefault(self.qname, threading.Lock())
        acquired = lock.acquire(timeout=wait_s) if wait_s > 0 else lock.acquire(blocking=False)
        if not acquired:
            raise CollectionLocked(f"collection {self.collection!r} is being written by another process; "
                                   "try again when it finishes")
        try:
            yield
        finally:
            lock.release()

    def write_version(self) -> int:
        """Changes on every committed write or delete (a nanosecond clock written last): result caches key on it."""
        found = self.client.retrieve(self.qname, [self._pid("meta")], with_payload=["write_version"])
        return int((found[0].payload or {}).get("write_version", 0)) if found else 0

    def _bump(self, **more: Any) -> None:
        self.client.set_payload(self.qname, {"write_version": time.time_ns(), **more}, points=[self._pid("meta")],
                                wait=True)

    # --- files and documents

    def file_record(self, path: str) -> FileRecord | None:
        found = self._records([self._pid("file", path)])
        return _file(found[0].payload or {}) if found else None

    def file_records(self) -> list[FileRecord]:
        return sorted((_file(r.payload or {}) for r in self._scroll(self._scope("file"))), key=lambda f: f.path)

    def _docs(self, *more: qm.Condition) -> list[dict[str, Any]]:
        return [dict(r.payload or {}) for r in self._scroll(self._scope("document", *more), _DOC_FIELDS)]

    def documents_from(self, source_path: str) -> dict[str, str]:
        cond = qm.FieldCondition(key="source_path", match=qm.MatchValue(value=source_path))
        return {d["id"]: d["content_hash"] for d in self._docs(cond)}

    def content_hash_of(self, doc_id: str) -> str | None:
        found = self._records([self._pid("document", doc_id)])
        return str((found[0].payload or {})["content_hash"]) if found else None

    def chunk_counts(self, doc_ids: Sequence[str]) -> dict[str, int]:
        found = self._records([self._pid("document", d) for d in doc_ids])
        return {str(p["id"]): int(p["chunks"]) for r in found if (p := r.payload or {})}

    def cached_vectors(self, text_hashes: Sequence[str]) -> set[str]:
        ids = [self._pid("vec", self.model_name, h) for h in dict.fromkeys(text_hashes)]
        return {str((r.payload or {})["text_hash"]) for r in self._records(ids)}

    def _vectors(self, hashes: Sequence[str], fresh: dict[str, np.ndarray]) -> dict[str, list[float]]:
        """text hash → vector for every hash: the batch's new ones, else the cache's."""
        out = {h: np.asarray(v, dtype=np.float32).tolist() for h, v in fresh.items()}
        missing = [h for h in dict.fromkeys(hashes) if h not in out]
        for r in self._records([self._pid("vec", self.model_name, h) for h in missing]):
            p = r.payload or {}
            out[str(p["text_hash"])] = list(p["vector"])
        return out

    def _chunk_point(self, doc: Any, c: Chunk, vector: list[float], readers: list[str]) -> qm.PointStruct:
        vectors: dict[str, Any] = {DENSE: vector}
        if self.lexical == "sparse":
            vectors[SPARSE] = bm25_sparse(self.analyzer(c.index_text), self.avgdl)
        payload = self._payload(
            "chunk", doc_id=c.doc_id, ordinal=c.ordinal, text=c.text, context=c.context, start=c.start, end=c.end,
            heading_path=list(c.heading_path), page_start=c.page_start, page_end=c.page_end, tokens=c.token_count,
            text_hash=c.text_hash, locator=c.locator(), source=doc.source, title=doc.title,
            metadata=json.loads(json.dumps(_without_readers(doc.metadata), default=str)), readers=readers)
        return qm.PointStruct(id=self._pid("chunk", c.doc_id, str(c.ordinal), c.text_hash), vector=vectors,
                              payload=payload)

    def _calibrate(self, batch: WriteBatch) -> None:
        """Fix the sparse leg's average passage length from the first batch (it must stay constant: every stored
        weight used it)."""
        if self.avgdl > 0 or self.lexical != "sparse":
            return
        lengths = [len(self.analyzer(c.index_text)) for dw in batch.documents for c in dw.chunks]
        if lengths:
            self.avgdl = float(np.mean(lengths))
            self.client.set_payload(self.qname, {"avgdl": self.avgdl}, points=[self._pid("meta")], wait=True)

    def write(self, batch: WriteBatch) -> None:
        """Apply a batch; idempotent (re-applying it upserts the same points). Order: see the module docstring."""
        docs = list({dw.document.id: dw for dw in batch.documents}.values())  # a repeated document: last wins
        if batch.vectors:
            self._upsert([qm.PointStruct(id=self._pid("vec", self.model_name, h), vector={}, payload=self._payload(
                "vec", model=self.model_name, text_hash=h, vector=np.asarray(v, dtype=np.float32).tolist()))
                for h, v in batch.vectors.items()])
        if batch.delete_doc_ids:
            self._forget(batch.delete_doc_ids)
        if docs:
            self._calibrate(batch)
            self._write_documents(docs, batch.vectors)
        for path in batch.delete_files:
            self.client.delete(self.qname, [self._pid("file", path)], wait=True)
        if batch.files:
            self._upsert([qm.PointStruct(id=self._pid("file", f.path), vector={}, payload=self._payload(
                "file", **{k: getattr(f, k) for k in _FILE_FIELDS})) for f in batch.files])
        self._bump()

    def _upsert(self, points: list[qm.PointStruct]) -> None:
        for i in range(0, len(points), 256):
            self.client.upsert(self.qname, points[i:i + 256], wait=True)

    def _write_documents(self, docs: list[Any], fresh: dict[str, np.ndarray]) -> None:
        """Documents' chunk points and records. Each record lists its chunk point ids, so stale points are deleted
        by id (no scan); a pending record (empty content hash, old and new ids) goes first, so a crash in between
        leaves the document looking changed, with every point it may have left behind listed."""
        vectors = self._vectors([c.text_hash for dw in docs for c in dw.chunks], fresh)
        lacking = {c.text_hash for dw in docs for c in dw.chunks if c.text_hash not in vectors}
        if lacking:
            raise ValueError(f"no vector for {len(lacking)} chunk text(s) (not in the batch, not cached)")
        old = {str((r.payload or {})["id"]): [int(i) for i in (r.payload or {}).get("chunk_ids") or []]
               for r in self._records([self._pid("document", dw.document.id) for dw in docs])}
        points: list[qm.PointStruct] = []
        records: list[tuple[Any, list[int], dict[str, Any]]] = []
        for dw in docs:
            doc = dw.document
            readers = list(normalize_readers(doc.metadata.get(READERS_KEY)))
            mine = [self._chunk_point(doc, c, vectors[c.text_hash], readers) for c in dw.chunks]
            points += mine
            ids = [int(p.id) for p in mine]
            record = self._payload("document", id=doc.id, source=doc.source, source_path=doc.source_path,
                                   title=doc.title, content_hash="", readers=readers,
                                   metadata=json.loads(json.dumps(_without_readers(doc.metadata), default=str)),
                                   page_starts=list(doc.page_starts), text=doc.text, chunks=len(dw.chunks),
                                   chunk_ids=sorted({*ids, *old.get(doc.id, [])}))
            records.append((doc, ids, record))
        self._upsert([qm.PointStruct(id=self._pid("document", d.id), vector={}, payload=r) for d, _, r in records])
        self._upsert(points)
        new_ids = {int(p.id) for p in points}
        stale: list[qm.ExtendedPointId] = sorted({i for ids in old.values() for i in ids} - new_ids)
        if stale:
            self.client.delete(self.qname, stale, wait=True)
        self._upsert([qm.PointStruct(id=self._pid("document", d.id), vector={},
                                     payload={**r, "content_hash": d.content_hash, "chunk_ids": ids})
                      for d, ids, r in records])

    def _forget(self, doc_ids: Sequence[str]) -> list[str]:
        """Delete documents' chunk points and records; → the source paths of those that existed."""
        found = self._records([self._pid("document", d) for d in doc_ids])
        ids: list[qm.ExtendedPointId] = sorted({int(i) for r in found
                                                for i in (r.payload or {}).get("chunk_ids") or []})
        if ids:
            self.client.delete(self.qname, ids, wait=True)
        self.client.delete(self.qname, [self._pid("document", d) for d in dict.fromkeys(doc_ids)], wait=True)
        if found:
            self._deleted_since_gc = True
        return [str((r.payload or {}).get("source_path", "")) for r in found]

    def delete_documents(self, doc_ids: Sequence[str]) -> int:
        """Delete documents with their chunk points; forget their files so re-ingest restores them."""
        if not doc_ids:
            return 0
        paths = self._forget(doc_ids)
        files = sorted({p for p in paths if p})
        if files:
            self.client.delete(self.qname, [self._pid("file", p) for p in files], wait=True)
        self._bump()
        return len(paths)

    def resolve_documents(self, ref: str) -> list[str]:
        """Doc ids for a document id, an exact source, or a source glob / file path."""
        docs = sorted(self._docs(), key=lambda d: d["source"])
        exact = [d["id"] for d in docs if ref in (d["id"], d["source"])]
        return exact or [d["id"] for d in docs if glob_match(ref, d["source"]) or d["source_path"] == ref]

    def get_document(self, doc_id_or_source: str, readers: tuple[str, ...] | None = None
                     ) -> tuple[StoredDocument, str, list[Chunk]]:
        found = self._records([self._pid("document", doc_id_or_source)])
        if not found:
            ids = [r.id for r in self._scroll(self._scope("document", qm.FieldCondition(
                key="source", match=qm.MatchValue(value=doc_id_or_source))), False)]
            found = self._records([int(i) for i in ids[:1]])
        if not found or not may_read((found[0].payload or {}).get("readers") or (), readers):
            raise DocumentNotFound(f"no document {doc_id_or_source!r} in collection {self.collection!r}")
        p = found[0].payload or {}
        chunks = sorted((r for r in self._records([int(i) for i in p.get("chunk_ids") or []])
                         if (r.payload or {}).get("kind") == "chunk"), key=lambda r: int((r.payload or {})["ordinal"]))
        return _stored(p), str(p["text"]), [_chunk(r.payload or {}) for r in chunks]

    def list_documents(self, *, limit: int = 100, offset: int = 0, after: str | None = None,
                       readers: tuple[str, ...] | None = None) -> list[StoredDocument]:
        """Documents by source (sorted here: Qdrant orders scrolls by numeric payload only)."""
        docs = sorted(self._docs(), key=lambda d: d["source"])
        if after is not None:
            docs = [d for d in docs if d["source"] > after]
        if readers is not None:
            docs = [d for d in docs if may_read(d.get("readers") or (), readers)]
        return [_stored(d) for d in docs[offset:offset + limit]]

    def set_readers(self, doc_ids: Sequence[str], readers: Sequence[str]) -> int:
        """Replace the readers of documents on their records and chunk points (payload only: nothing re-embeds)."""
        value = list(normalize_readers(list(readers)))
        found = self._records([self._pid("document", d) for d in dict.fromkeys(doc_ids)])
        for r in found:
            p = r.payload or {}
            points: list[qm.ExtendedPointId] = [r.id, *(int(i) for i in p.get("chunk_ids") or [])]
            self.client.set_payload(self.qname, {"readers": value}, points=points, wait=True)
        if found:
            self._bump()
        return len(found)

    def readers_of(self, doc_ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
        return {str((r.payload or {})["id"]): tuple((r.payload or {}).get("readers") or ())
                for r in self._records([self._pid("document", d) for d in dict.fromkeys(doc_ids)])}

    # --- retrieval legs

    def _filter(self, flt: Filter | None) -> qm.Filter | None:
        """The chunk scope plus a Filter's conditions; None when the filter can match nothing."""
        conds: list[Any] = []
        doc_ids: set[str] | None = set(flt.doc_ids) if flt is not None and flt.doc_ids is not None else None
        python_meta: dict[str, Any] = {}
        if flt:
            for key, value in flt.metadata.items():
                cond = _match(f"metadata.{key}", value)
                if cond is None:
                    python_meta[key] = value
                else:
                    conds.append(cond)
            if flt.source_glob or python_meta:  # what Qdrant cannot match: resolved to document ids here
                keep = {d["id"] for d in self._docs()
                        if (not flt.source_glob or glob_match(flt.source_glob, d["source"]))
                        and all(d["metadata"].get(k) == v for k, v in python_meta.items())}
                doc_ids = keep if doc_ids is None else doc_ids & keep
            readers = flt.readers
            if readers is not None:  # public within the tenant (no readers), or shared with one of the caller's
                public = qm.IsEmptyCondition(is_empty=qm.PayloadField(key="readers"))
                shared = [qm.FieldCondition(key="readers", match=qm.MatchAny(any=list(readers)))] if readers else []
                conds.append(qm.Filter(should=[public, *shared]))
        if doc_ids is not None:
            if not doc_ids:
                return None
            conds.append(qm.FieldCondition(key="doc_id", match=qm.MatchAny(any=sorted(doc_ids))))
        return self._scope("chunk", *conds)

    def _search_filter(self, flt: Filter | None) -> tuple[bool, qm.Filter | None]:
        """(can anything match, the filter to send). An unfiltered search in local mode sends none: its filters are
        a Python scan of every point (2.8 s a query at SciFact size on a busy machine, against 0.14 s without),
        while the Qdrant collection is this tenant's collection alone and only chunk points hold vectors; `hits`
        still checks every point's tenant and collection. A server always gets the scope (indexed, near free)."""
        if not flt and not self.scope_unfiltered:
            return True, None
        scope = self._filter(flt)
        return scope is not None, scope

    def dense_search(self, query: np.ndarray, k: int, flt: Filter | None = None) -> list[tuple[int, float]]:
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        if q.shape[0] != self.dimension:
            raise ValueError(f"query vector has {q.shape[0]} dimensions, the collection {self.dimension}")
        matchable, scope = self._search_filter(flt)
        if k <= 0 or not matchable:
            return []
        res = self.client.query_points(self.qname, query=q.tolist(), using=DENSE, query_filter=scope, limit=k,
                                       with_payload=False, search_params=qm.SearchParams(exact=False))
        return [(int(p.id), float(p.score)) for p in res.points]

    def lexical_search(self, query: str, k: int, flt: Filter | None = None) -> list[tuple[int, float]]:
        matchable, scope = self._search_filter(flt)
        if k <= 0 or not matchable:
            return []
        if self.lexical == "memory":
            bm25 = self._memory_bm25()
            allowed = None
            if flt and scope is not None:
                allowed = np.fromiter((int(r.id) for r in self._scroll(scope, False)), dtype=np.int64)
            return bm25.search(query, k, allowed)
        terms = sorted({term_index(t) for t in self.analyzer.query(query)})
        if not terms:
            return []
        res = self.client.query_points(self.qname, query=qm.SparseVector(indices=terms, values=[1.0] * len(terms)),
                                       using=SPARSE, query_filter=scope, limit=k, with_payload=False)
        return [(int(p.id), float(p.score)) for p in res.points]

    def _memory_bm25(self) -> SegmentedBM25:
        """The project's BM25 over this collection's chunks, rebuilt when another write committed since."""
        version = self.write_version()
        with self._bm25_lock:
            if self._bm25 is None or self._bm25_version != version:
                bm25 = SegmentedBM25(analyzer=self.analyzer)
                rows = [(int(r.id), r.payload or {}) for r in self._scroll(self._scope("chunk"), ["text", "context"])]
                bm25.build([i for i, _ in rows],
                           (f"{p['context']}\n{p['text']}" if p.get("context") else str(p["text"]) for _, p in rows))
                self._bm25, self._bm25_version = bm25, version
            return self._bm25

    def hits(self, scored: Sequence[tuple[int, float]]) -> list[SearchHit]:
        by_id = {int(r.id): r.payload or {} for r in self._records([int(cid) for cid, _ in scored])}
        out = []
        for cid, score in scored:
            p = by_id.get(int(cid))
            if p is None or p.get("kind") != "chunk":  # deleted between the search and now
                continue
            out.append(SearchHit(chunk=_chunk(p), score=score, source=p["source"], title=p["title"],
                                 metadata=p["metadata"], row_id=int(cid)))
        return out

    def vectors_for(self, chunk_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(ids, float32 vectors) of those of `chunk_ids` that still exist (MMR uses them)."""
        found = [r for r in self._records([int(c) for c in chunk_ids], vectors=True)
                 if (r.payload or {}).get("kind") == "chunk"]
        if not found:
            return np.zeros(0, dtype=np.int64), np.zeros((0, self.dimension), dtype=np.float32)
        vecs = np.asarray([r.vector[DENSE] for r in found if isinstance(r.vector, dict)], dtype=np.float32)
        return np.asarray([int(r.id) for r in found], dtype=np.int64), vecs

    # --- maintenance and reporting

    def flush(self) -> None:
        """Drop cached vectors no chunk uses any more (after deletions; Qdrant persists every write itself)."""
        if not self._deleted_since_gc:
            return
        used = {str((r.payload or {})["text_hash"]) for r in self._scroll(self._scope("chunk"), ["text_hash"])}
        gone: list[qm.ExtendedPointId] = [int(r.id) for r in self._scroll(self._scope("vec"), ["text_hash"])
                if (r.payload or {}).get("text_hash") not in used]
        for i in range(0, len(gone), _PAGE):
            self.client.delete(self.qname, gone[i:i + _PAGE], wait=True)
        self._deleted_since_gc = False

    def _count(self, kind: str) -> int:
        return int(self.client.count(self.qname, count_filter=self._scope(kind), exact=True).count)

    def stats(self) -> dict[str, Any]:
        docs = self._docs()
        files = self.file_records()
        chunks = self._count("chunk")
        counts = [c if isinstance(c := d["metadata"].get(COUNTS_KEY), dict) else {} for d in docs]
        counted = [(k, v) for c in counts for k, v in c.items()
                   if isinstance(v, int | float) and not isinstance(v, bool)]
        text_only = sum(1 for c in counts if not any(k in c for k in PRIMARY_KINDS))
        return {
            "collection": self.collection, "tenant": self.tenant, "backend": self.backend, "path": self.path,
            "documents": len(docs), "chunks": chunks, "files": len(files),
            "failed_files": sum(1 for f in files if f.status != "ok"), "vectors": chunks,
            "embedding_model": self.model_name, "dimension": self.dimension, "disk_bytes": 0,
            "kinds": kind_totals(counted, text_only), "lexical": self.lexical,
        }

    def drop(self) -> None:
        """Delete the whole collection (its Qdrant collection)."""
        if self.client.collection_exists(self.qname):
            self.client.delete_collection(self.qname)

    def close(self) -> None:
        """The client is the process's (shared_client); nothing of this store's to release."""

    def __repr__(self) -> str:
        return f"QdrantStore({self.path!r})"

