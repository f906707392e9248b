"""Index kinds chosen by size, IVF-PQ with exact re-ranking, memory-mapped files, and the store switching kinds."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest

from ragworks.documents import Chunk, Document
from ragworks.store import ann
from ragworks.store.base import DocumentWrite, WriteBatch
from ragworks.store.embedded import EmbeddedStore
from ragworks.store.synthetic import SyntheticVectors


def _exact(corpus: np.ndarray):
    def search(q: np.ndarray, k: int) -> np.ndarray:
        return np.argsort(-(q @ corpus.T), axis=1)[:, :k]

    return search


def test_index_kind_follows_collection_size_unless_set() -> None:
    assert ann.plan_index(50_000, 384).kind == "flat"
    assert ann.plan_index(200_000, 384).kind == "ivf"
    big = ann.plan_index(1_000_000, 384)
    assert big.kind == "ivfpq" and big.pq_bytes <= 64 and big.rerank > 0
    assert big.factory(384) == f"IVF{big.nlist},PQ48"
    assert ann.plan_index(10, 384, "hnsw").kind == "hnsw"
    assert "set explicitly" in ann.plan_index(10, 384, "ivfpq").reason
    assert ann.plan_index(1_000_000, 384, "ivfpq", opq=True, pca=192).factory(384).startswith("OPQ48_192,PCAR192,")


def test_synthetic_vectors_have_neighbours_unlike_uniform_noise() -> None:
    gen = SyntheticVectors()
    x = gen.rows(0, 3000)
    assert np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)
    assert np.array_equal(gen.rows(1000, 1010), x[1000:1010])  # any range, same rows
    sims = x @ x.T
    np.fill_diagonal(sims, -1)
    uniform = np.random.default_rng(0).standard_normal((3000, 384)).astype(np.float32)
    uniform /= np.linalg.norm(uniform, axis=1, keepdims=True)
    usims = uniform @ uniform.T
    np.fill_diagonal(usims, -1)
    # real MiniLM embeddings of SciFact: nearest neighbour cosine ~0.63, a random pair ~0.13
    assert np.median(sims.max(1)) > 0.5 > np.median(usims.max(1)) + 0.2
    assert 0.05 < np.median(sims) < 0.25


@pytest.mark.slow
def test_ivfpq_with_exact_rerank_recovers_recall_lost_to_compression(tmp_path: Path) -> None:
    gen = SyntheticVectors()
    corpus = gen.rows(0, 20_000)
    queries = gen.queries(100)
    truth = _exact(corpus)(queries, 10)
    plan = ann.with_overrides(ann.plan_index(20_000, 384, "ivfpq"), nprobe=32)
    index = ann.new_index(plan, 384)
    index.train(corpus[: plan.training_size()])
    index.add_with_ids(corpus, np.arange(len(corpus), dtype=np.int64))
    path = tmp_path / "index.faiss"
    ann.write_index(index, path)
    mapped = ann.read_index(path, mmap=True)
    ann.set_nprobe(mapped, plan.nprobe)

    def fetch(ids: np.ndarray) -> np.ndarray:
        return corpus[ids]

    pq_only = ann.search(mapped, queries, 10, plan=ann.with_overrides(plan, rerank_n=0))
    reranked = ann.search(mapped, queries, 10, plan=plan, fetch=fetch)
    assert np.array_equal(pq_only, ann.search(index, queries, 10, plan=ann.with_overrides(plan, rerank_n=0)))
    assert ann.recall_at_k(reranked, truth) >= 0.9 > ann.recall_at_k(pq_only, truth)
    assert path.stat().st_size < len(corpus) * (plan.pq_bytes + 8) + 2_000_000  # codes, not vectors


def _store_with(path: Path, vectors: np.ndarray, *, docs: int = 0) -> EmbeddedStore:
    store = EmbeddedStore(path, model_name="synthetic", dimension=vectors.shape[1])
    per_doc = max(len(vectors) // max(docs, 1), 1)
    batch = WriteBatch()
    for d in range(0, len(vectors), per_doc):
        doc = Document(source=f"doc{d}", text=" ".join(f"passage {i}" for i in range(d, d + per_doc)))
        chunks = [
            Chunk(doc_id=doc.id, ordinal=i - d, text=f"passage {i}", start=0, end=1) for i in range(d, d + per_doc)
        ]
        batch.documents.append(DocumentWrite(doc, chunks))
        batch.vectors.update({c.text_hash: vectors[d + j] for j, c in enumerate(chunks)})
    store.write(batch)
    return store


@pytest.mark.slow
def test_store_rebuilds_as_ivfpq_and_keeps_deletes_and_crash_replay(tmp_path: Path) -> None:
    vectors = SyntheticVectors().rows(0, 4000)
    store = _store_with(tmp_path / "col", vectors, docs=400)
    store.flush()
    assert store.index.kind == "flat"  # 4,000 vectors: exact
    store.set_index_type("ivfpq")
    store.flush()
    assert store.index.kind == "ivfpq" and len(store.index) == 4000
    # a stored vector finds its own chunk first, with its exact (re-ranked) cosine of 1
    top = store.dense_search(vectors[123], 5)
    assert store.hits(top[:1])[0].chunk.text == "passage 123" and top[0][1] == pytest.approx(1.0, abs=1e-5)
    gone = store.resolve_documents("doc120")
    assert store.delete_documents(gone) == 1
    store.flush()
    assert len(store.index) == 3990
    assert all(store.hits([h])[0].chunk.text != "passage 123" for h in store.dense_search(vectors[123], 5))
    # written but never flushed (a crash before the index file): the reopened store replays the log
    late = SyntheticVectors().rows(10_000, 10_010)
    extra = EmbeddedStore(tmp_path / "col")
    doc = Document(source="late", text="late")
    chunks = [Chunk(doc_id=doc.id, ordinal=i, text=f"late {i}", start=0, end=1) for i in range(10)]
    extra.write(WriteBatch(documents=[DocumentWrite(doc, chunks)],
                           vectors={c.text_hash: late[i] for i, c in enumerate(chunks)}))
    extra.close()
    store.close()
    reopened = EmbeddedStore(tmp_path / "col")
    assert reopened.index_type() == "ivfpq"
    hit = reopened.hits(reopened.dense_search(late[3], 1))[0]
    assert hit.chunk.text == "late 3" and reopened.index.kind == "ivfpq" and len(reopened.index) == 4000
    reopened.close()


def test_mapped_index_is_copied_to_ram_before_it_is_modified(tmp_path: Path) -> None:
    from ragworks.store import vector_index
    from ragworks.store.vector_index import VectorIndex

    corpus = SyntheticVectors().rows(0, 3000)
    vi = VectorIndex(tmp_path, "dense-m1", 384, index_type="ivf")
    vi.rebuild(vi.plan_for(3000), corpus)
    vi.add(np.arange(3000, dtype=np.int64), corpus)
    vi.save(5)
    old = vector_index.MMAP_MIN_BYTES
    vector_index.MMAP_MIN_BYTES = 0
    try:
        loaded = VectorIndex(tmp_path, "dense-m1", 384, index_type="ivf")
        assert loaded.load() and loaded.mapped_from is not None and loaded.kind == "ivf"
    finally:
        vector_index.MMAP_MIN_BYTES = old
    loaded.remove([0, 1])  # on a mapped index FAISS would abort the process
    assert loaded.mapped_from is None and len(loaded) == 2998
    assert isinstance(faiss.downcast_index(faiss.extract_index_ivf(loaded.index)), faiss.IndexIVFFlat)


def test_hnsw_index_drops_deleted_chunks_at_the_next_flush(tmp_path: Path) -> None:
    vectors = SyntheticVectors().rows(0, 600)
    store = _store_with(tmp_path / "col", vectors, docs=60)
    store.set_index_type("hnsw")
    store.flush()
    assert store.index.kind == "hnsw" and len(store.index) == 600
    extra = Document(source="extra", text="passage extra")
    chunk = Chunk(doc_id=extra.id, ordinal=0, text="passage extra", start=0, end=13)
    store.write(WriteBatch(documents=[DocumentWrite(extra, [chunk])], vectors={chunk.text_hash: vectors[0]}))
    store.sync_index()
    assert not store.index.stale  # added rows go straight in: only deletions force an HNSW rebuild
    store.delete_documents(store.resolve_documents("doc0"))
    store.sync_index()
    assert store.index.stale  # HNSW can't remove ids: hits() skips the deleted rows until the rebuild
    assert all(h.chunk.text != "passage 3" for h in store.hits(store.dense_search(vectors[3], 5)))
    store.flush()
    assert not store.index.stale and len(store.index) == 591 and store.index.kind == "hnsw"
    store.close()


def test_index_type_setting_is_remembered_by_a_collection_at_ingest(tmp_path: Path, embedder) -> None:
    from ragworks.collection import Collection
    from ragworks.config import Settings

    doc = tmp_path / "note.md"
    doc.write_text("# Keys\n\nRotate the signing keys every ninety days and keep the old ones for a week.\n")
    settings = Settings(data_dir=tmp_path / "data", collection="c", llm="extractive", index_type="hnsw")
    with Collection.open(settings=settings, embedder=embedder, llm=None) as col:
        col.ingest(doc)
        assert col.search("how often are signing keys rotated", k=1, mode="dense")[0].source.endswith("note.md")
    store = EmbeddedStore(tmp_path / "data" / "c", create=False)
    try:
        assert store.index_type() == "hnsw"
    finally:
        store.close()


def test_searches_go_on_from_the_current_index_while_flush_builds_its_replacement(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from ragworks.store.vector_index import VectorIndex

    vectors = SyntheticVectors().rows(0, 2000)
    store = _store_with(tmp_path / "col", vectors, docs=200)
    store.set_index_type("hnsw")
    store.flush()
    store.delete_documents(store.resolve_documents("doc0"))  # HNSW can't remove: the next flush rebuilds it
    store.sync_index()
    assert store.index.stale
    serving = store.index
    building, release = threading.Event(), threading.Event()
    add = VectorIndex.add

    def held_add(self: VectorIndex, ids: np.ndarray, vecs: np.ndarray) -> None:
        if self is not serving:  # the replacement being filled: hold it until the searches below are done
            building.set()
            assert release.wait(30)
        add(self, ids, vecs)

    monkeypatch.setattr(VectorIndex, "add", held_add)
    flusher = threading.Thread(target=store.flush)
    flusher.start()
    try:
        assert building.wait(30)
        # the build is in progress and the store's lock is free: searches answer from the serving index
        for i in (15, 700, 1999):
            done: list[list[tuple[int, float]]] = []
            t = threading.Thread(target=lambda i=i, done=done: done.append(store.dense_search(vectors[i], 3)))
            t.start()
            t.join(10)
            assert done, "a search waited for the index build"
            assert store.hits(done[0][:1])[0].chunk.text == f"passage {i}"
        # a write during the build is replayed into the new index when it is swapped in
        late = Document(source="late", text="passage late")
        chunk = Chunk(doc_id=late.id, ordinal=0, text="passage late", start=0, end=12)
        store.write(WriteBatch(documents=[DocumentWrite(late, [chunk])], vectors={chunk.text_hash: vectors[15]}))
    finally:
        release.set()
        flusher.join(60)
    assert store.index is not serving and store.index.kind == "hnsw" and not store.index.stale
    assert len(store.index) == 1991  # 2,000 - 10 deleted + 1 written during the build
    assert {h.chunk.text for h in store.hits(store.dense_search(vectors[15], 2))} == {"passage 15", "passage late"}
    store.close()
    reopened = EmbeddedStore(tmp_path / "col")  # the saved file is the new index, with the late write
    found = {h.chunk.text for h in reopened.hits(reopened.dense_search(vectors[15], 2))}
    assert found == {"passage 15", "passage late"} and len(reopened.index) == 1991
    reopened.close()
