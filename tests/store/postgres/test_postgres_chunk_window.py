"""PostgresStore.chunk_window / document_text on a real PostgreSQL: the same contract as the embedded store's,
scoped to the store's tenant."""

from __future__ import annotations

from tests.store.chunk_windows import add_long_document, check_chunk_window

from ragworks.ingest.chunker import Chunker


def test_postgres_store_reads_a_documents_chunks_by_ordinal_and_exact_text_slices(make_store, embedder):
    store = make_store()
    chunker = Chunker(embedder.count_tokens, chunk_tokens=40, overlap=0, model_max_tokens=embedder.max_tokens)
    doc = add_long_document(store, embedder, chunker)
    check_chunk_window(store, doc)
    other = make_store(tenant="tenant-b", collection=store.collection)  # same collection name, another tenant
    assert other.chunk_window(doc.id, 0, 10) == [] and other.document_text(doc.id, 0, 10) == ""
