"""What only the Qdrant store has (the shared contract is tests/store/test_store_contract.py): document readers as
a payload condition, tenant isolation inside one Qdrant, recovery from a write interrupted half-way, and the
Collection / settings wiring — against qdrant-client's local mode, with the real embedding model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("qdrant_client")

from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.documents import Document
from ragworks.errors import CollectionNotFound, EmbedderMismatch
from ragworks.ingest.chunker import Chunker
from ragworks.ingest.pipeline import IngestPipeline
from ragworks.retrieve.hybrid import HybridRetriever
from ragworks.store.base import Filter
from ragworks.store.qdrant import QdrantStore, bm25_sparse, close_client, list_collections, shared_client


@pytest.fixture
def client(tmp_path: Path) -> Iterator:
    c = shared_client(path=tmp_path / "qdrant")
    yield c
    close_client(c)


def make(client, embedder, tenant: str = "tenant-a", collection: str = "docs", **kw) -> QdrantStore:
    return QdrantStore(client, tenant=tenant, collection=collection, model_name=embedder.name,
                       dimension=embedder.dimension, **kw)


def add(store, embedder, source: str, text: str, **meta) -> None:
    chunker = Chunker(embedder.count_tokens, chunk_tokens=48, overlap=8, model_max_tokens=embedder.max_tokens)
    IngestPipeline(store, embedder, chunker).add_documents([Document(source=source, text=text, metadata=meta)])


def sources(store, embedder, query: str, mode: str, flt: Filter | None = None) -> set[str]:
    return {h.source for h in HybridRetriever(store, embedder).search(query, k=10, mode=mode, flt=flt)}  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["dense", "bm25"])
def test_readers_public_or_shared_with_one_of_the_callers_tokens(client, embedder, mode):
    store = make(client, embedder)
    add(store, embedder, "pay.md", "Salary bands for engineers are reviewed every March.", readers=["group:hr"])
    add(store, embedder, "plan.md", "Salary planning for the board happens in March.", readers=["user:ceo"])
    add(store, embedder, "menu.md", "The canteen serves soup in March.")
    query = "salary March"
    assert sources(store, embedder, query, mode) == {"pay.md", "plan.md", "menu.md"}  # no readers: unrestricted
    assert sources(store, embedder, query, mode, Filter(readers=("user:ann", "group:hr"))) == {"pay.md", "menu.md"}
    assert sources(store, embedder, query, mode, Filter(readers=("user:ceo",))) == {"plan.md", "menu.md"}
    assert sources(store, embedder, query, mode, Filter(readers=())) == {"menu.md"}
    both = Filter(readers=("group:hr",), source_glob="p*.md")
    assert sources(store, embedder, query, mode, both) == {"pay.md"}


def test_tenants_sharing_one_qdrant_never_see_each_other(client, embedder):
    a = make(client, embedder, tenant="tenant-a")
    b = make(client, embedder, tenant="tenant-b")
    add(a, embedder, "notes.md", "Alpha tenant keeps its lighthouse logbook here.")
    add(b, embedder, "notes.md", "Beta tenant keeps its harbour invoices here.")
    assert a.qname != b.qname
    for mode in ("dense", "bm25"):
        hits = HybridRetriever(a, embedder).search("harbour invoices logbook", k=10, mode=mode)  # type: ignore[arg-type]
        assert [h.chunk.text for h in hits] == ["Alpha tenant keeps its lighthouse logbook here."]
    b_ids = [r for r, _ in b.dense_search(embedder.embed_queries(["invoices"])[0], 5)]
    assert a.hits([(i, 1.0) for i in b_ids]) == []  # another tenant's point ids resolve to nothing
    assert a.get_document("notes.md")[1].startswith("Alpha") and b.get_document("notes.md")[1].startswith("Beta")
    assert a.stats()["documents"] == b.stats()["documents"] == 1
    assert list_collections(client, "tenant-a") == ["docs"] and list_collections(client, "tenant-b") == ["docs"]
    assert list_collections(client, "tenant-c") == []


def test_a_write_interrupted_half_way_is_repaired_by_writing_again(client, embedder, monkeypatch):
    store = make(client, embedder)
    add(store, embedder, "log.md", "The keeper lit the lamp at dusk. " * 30)
    before = store.stats()["chunks"]
    calls = {"n": 0}
    real = store._upsert

    def crash_on_final_record(points):
        calls["n"] += 1
        if points and (points[0].payload or {}).get("kind") == "document" and points[0].payload["content_hash"]:
            raise RuntimeError("killed")
        real(points)

    monkeypatch.setattr(store, "_upsert", crash_on_final_record)
    with pytest.raises(RuntimeError):
        add(store, embedder, "log.md", "A storm broke the lantern glass.")
    monkeypatch.undo()
    doc_id = store.resolve_documents("log.md")[0]
    assert store.content_hash_of(doc_id) == ""  # looks changed: the next ingest rewrites it
    add(store, embedder, "log.md", "A storm broke the lantern glass.")
    _, text, chunks = store.get_document("log.md")
    assert text == "A storm broke the lantern glass." and len(chunks) == 1
    assert store.stats()["chunks"] == 1 < before
    assert sources(store, embedder, "keeper lit the lamp at dusk", "bm25") <= {"log.md"}
    assert all("storm" in h.chunk.text for h in HybridRetriever(store, embedder).search("keeper lamp dusk", k=10))


def test_sparse_weights_follow_bm25_term_frequency_saturation():
    v = bm25_sparse(["tide", "tide", "moon"], avgdl=3.0)
    weights = dict(zip(v.indices, v.values, strict=True))
    assert len(weights) == 2
    tide, moon = sorted(weights.values(), reverse=True)
    assert tide == pytest.approx(2 * 2.2 / (2 + 1.2)) and moon == pytest.approx(2.2 / (1 + 1.2))


def test_collection_on_the_qdrant_backend(tmp_path, embedder):
    settings = Settings(data_dir=tmp_path / "data", store_backend="qdrant", qdrant_path=tmp_path / "q",
                        llm="extractive")
    with pytest.raises(CollectionNotFound):
        Collection.open("notes", settings=settings, embedder=embedder, llm=None, create=False)
    col = Collection.open("notes", settings=settings, embedder=embedder, llm=None, tenant="acme")
    col.add_text("Fresnel lenses focus a lighthouse beam with concentric prisms.", source="lens.md")
    assert col.search("concentric prisms")[0].source == "lens.md"
    answer = col.ask("What focuses a lighthouse beam?")
    assert answer.citations and answer.citations[0].source == "lens.md"
    assert col.stats()["backend"] == "qdrant" and col.stats()["documents"] == 1
    assert col.delete("lens.md") == 1 and col.search("concentric prisms") == []
    with pytest.raises(EmbedderMismatch):
        QdrantStore(col.store.client, tenant="acme", collection="notes", model_name="other",  # type: ignore[attr-defined]
                    dimension=embedder.dimension)
    close_client(col.store.client)  # type: ignore[attr-defined]
