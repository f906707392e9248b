"""The embedded store with the real model: consistency of SQLite, FTS5 and FAISS through writes and deletes."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from ragworks.collection import Collection
from ragworks.errors import EmbedderMismatch
from ragworks.store.base import Filter
from ragworks.store.embedded import DB_NAME, EmbeddedStore, fts_query


def _counts(path):
    db = sqlite3.connect(path / DB_NAME)
    try:
        chunks = db.execute("SELECT count(*) FROM chunks").fetchone()[0]
        fts = db.execute("SELECT count(*) FROM chunks_fts").fetchone()[0]
        doc_chunks = db.execute("SELECT coalesce(sum(chunks), 0) FROM documents").fetchone()[0]
        orphans = db.execute(
            "SELECT count(*) FROM chunks c LEFT JOIN embeddings e ON e.text_hash = c.text_hash "
            "WHERE e.text_hash IS NULL"
        ).fetchone()[0]
    finally:
        db.close()
    return chunks, fts, doc_chunks, orphans


def _write(col: Collection, name: str, text: str, **meta):
    return col.add_text(text, source=name, title=name, metadata=meta)


def test_deleting_a_document_removes_its_chunks_vectors_and_bm25_rows(collection):
    _write(collection, "keep.md", "# Keep\n\nThe lighthouse keeper trimmed the wick every night.")
    _write(collection, "gone.md", "# Gone\n\nZanzibar clove plantations export spice worldwide.")
    assert collection.search("zanzibar cloves", mode="bm25")[0].source == "gone.md"
    before = collection.stats()
    assert collection.delete("gone.md") == 1
    after = collection.stats()
    assert after["documents"] == before["documents"] - 1
    assert after["chunks"] == after["vectors"] == before["chunks"] - 1
    assert collection.search("zanzibar cloves", mode="bm25") == []
    assert all(h.source == "keep.md" for h in collection.search("zanzibar cloves", mode="dense"))
    chunks, _, doc_chunks, orphans = _counts(collection.path)
    assert chunks == doc_chunks == 1 and orphans == 0


def test_replacing_a_document_leaves_no_stale_chunks_or_vectors(collection):
    _write(collection, "a.md", "# A\n\nOriginal statement about quartz crystals.")
    _write(collection, "a.md", "# A\n\nRevised statement about granite quarries.")
    assert collection.stats()["documents"] == 1
    assert collection.search("quartz crystals", mode="bm25") == []
    hits = collection.search("granite quarries", mode="dense", k=5)
    assert len(hits) == 1 and "granite" in hits[0].chunk.text
    assert collection.stats()["vectors"] == 1


def test_a_second_process_view_sees_committed_writes_without_reopening(collection, embedder):
    _write(collection, "one.md", "# One\n\nTelescopes gather starlight with mirrors.")
    other = Collection.open(collection.path, settings=collection.settings, embedder=embedder, llm=None)
    try:
        assert other.search("telescopes mirrors", mode="dense")[0].source == "one.md"
        _write(collection, "two.md", "# Two\n\nBeekeepers harvest honey in late summer.")
        assert other.search("honey harvest", mode="dense")[0].source == "two.md"  # replayed from the log
        collection.delete("one.md")
        assert all(h.source != "one.md" for h in other.search("telescopes mirrors", mode="dense"))
    finally:
        other.close()


def test_lost_index_file_is_rebuilt_from_sqlite(collection, embedder):
    for i, topic in enumerate(["volcanic basalt", "arctic whales", "desert cacti"]):
        _write(collection, f"d{i}.md", f"# D{i}\n\nA note about {topic}.")
    collection.store.flush()
    collection.close()
    files = list(collection.path.glob("dense-*.faiss"))
    assert files, "flush writes the index file"
    for f in files:
        f.write_bytes(b"garbage")  # unreadable: must fall back to a rebuild from the vectors in SQLite
    reopened = Collection.open(collection.path, settings=collection.settings, embedder=embedder, llm=None)
    try:
        assert reopened.search("whales in the arctic", mode="dense")[0].source == "d1.md"
        assert reopened.stats()["vectors"] == 3
    finally:
        reopened.close()


def test_filters_restrict_both_legs_by_source_glob_and_metadata(collection):
    _write(collection, "docs/a.md", "# A\n\nCopper wiring conducts electricity.", team="red", year=2024)
    _write(collection, "docs/b.md", "# B\n\nCopper pipes carry water.", team="blue", year=2023)
    _write(collection, "notes/c.md", "# C\n\nCopper roofs turn green.", team="red", year=2023)
    for mode in ("dense", "bm25", "hybrid"):
        assert {h.source for h in collection.search("copper", mode=mode, source="docs/*")} == {"docs/a.md", "docs/b.md"}
        assert {h.source for h in collection.search("copper", mode=mode, filters={"team": "red"})} == {
            "docs/a.md", "notes/c.md"}
        both = Filter(source_glob="docs/*", metadata={"team": "red", "year": 2024})
        assert [h.source for h in collection.search("copper", mode=mode, filters=both)] == ["docs/a.md"]
        assert collection.search("copper", mode=mode, filters={"team": "green"}) == []


def test_opening_with_another_embedding_model_is_refused(collection, embedder):
    _write(collection, "x.md", "# X\n\nSome text.")

    class Other:
        name, dimension, max_tokens = "st:other-model", 384, 256

    with pytest.raises(EmbedderMismatch, match="all-MiniLM-L6-v2"):
        Collection.open(collection.path, settings=collection.settings, embedder=Other())  # type: ignore[arg-type]


def test_a_process_that_opened_before_a_model_switch_cannot_write_the_old_models_vectors(collection, embedder):
    _write(collection, "x.md", "# X\n\nSome text about glaciers.")
    stale = collection.store
    other = EmbeddedStore(collection.path, create=False)
    new_id = other.add_model("st:tuned-test", embedder.dimension)
    vectors = {h: np.ones(embedder.dimension, dtype=np.float32) / np.sqrt(embedder.dimension)
               for (_, h, _) in other.missing_model_vectors(new_id)}
    other.write_model_vectors(new_id, vectors)
    other.activate_model(new_id, other.build_model_index(new_id))
    other.close()
    with pytest.raises(EmbedderMismatch, match="reopen the collection"):
        _write(collection, "y.md", "# Y\n\nMore text about fjords.")
    assert stale.resolve_documents("y.md") == []  # nothing half-written
    reopened = Collection.open(collection.path, settings=collection.settings)
    assert reopened.store.model_name == "st:tuned-test"


def test_documents_page_by_source_after_a_cursor(collection):
    for name in ("c.md", "a.md", "b.md", "d.md"):
        _write(collection, name, f"# {name}\n\nText of {name}.")
    first = collection.documents(limit=2)
    rest = collection.documents(limit=10, after=first[-1].source)
    assert [d.source for d in first + rest] == ["a.md", "b.md", "c.md", "d.md"]
    assert collection.documents(limit=10, after="d.md") == []


def test_fts_query_ors_quoted_terms_without_stopwords():
    assert fts_query('What is the "Fresnel" lens?') == '"fresnel" OR "lens"'
    assert fts_query("the of") == '"the" OR "of"'  # only stopwords: keep them rather than match nothing
    assert fts_query("   ") == ""


def test_store_rejects_nothing_and_loses_nothing_when_written_concurrently_with_reads(collection):
    _write(collection, "base.md", "# Base\n\nA base document about harbours.")
    store: EmbeddedStore = collection.store
    q = collection.embedder.embed_queries(["harbours"])[0]
    for i in range(5):
        _write(collection, f"n{i}.md", f"# N{i}\n\nHarbour number {i} has {i + 2} piers.")
        assert len(store.dense_search(q, 100)) == i + 2
    assert np.isfinite([s for _, s in store.dense_search(q, 10)]).all()
