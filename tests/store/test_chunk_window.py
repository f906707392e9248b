"""EmbeddedStore.chunk_window / document_text: a document's neighbouring chunks and exact slices of its text."""

from __future__ import annotations

from tests.store.chunk_windows import add_long_document, check_chunk_window

from ragworks.ingest.chunker import Chunker
from ragworks.store.embedded import EmbeddedStore


def test_embedded_store_reads_a_documents_chunks_by_ordinal_and_exact_text_slices(tmp_path, embedder):
    store = EmbeddedStore(tmp_path / "c", model_name=embedder.name, dimension=embedder.dimension, create=True)
    chunker = Chunker(embedder.count_tokens, chunk_tokens=40, overlap=0, model_max_tokens=embedder.max_tokens)
    try:
        check_chunk_window(store, add_long_document(store, embedder, chunker))
    finally:
        store.close()
