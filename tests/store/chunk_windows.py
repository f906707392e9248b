"""What every store's ChunkWindows capability must do; run on the embedded store here and on PostgreSQL in
tests/store/postgres/test_postgres_chunk_window.py."""

from __future__ import annotations

from ragworks.documents import Document
from ragworks.ingest.loaders import markdown_spans
from ragworks.ingest.pipeline import IngestPipeline
from ragworks.store.base import ChunkWindows, Store

LONG = "\n\n".join(
    f"# Part {i}\n\nSection {i} of the harbour manual describes pier {i} and its {i * 3} mooring rings. "
    f"Crews check pier {i} every morning before the ferries arrive, and log worn ropes in the yard book."
    for i in range(1, 9))


def add_long_document(store: Store, embedder, chunker) -> Document:
    doc = Document(source="manual.md", text=LONG, title="Harbour manual", spans=markdown_spans(LONG))
    assert IngestPipeline(store, embedder, chunker).add_documents([doc]).ok
    return doc


def check_chunk_window(store: Store, doc: Document) -> None:
    assert isinstance(store, ChunkWindows)
    _, text, chunks = store.get_document(doc.id)
    assert len(chunks) >= 5, "the document must span several chunks for the test to mean anything"
    window = store.chunk_window(doc.id, 1, 3)
    assert [c.ordinal for c in window] == [1, 2, 3]
    assert [(c.start, c.end, c.text) for c in window] == [(c.start, c.end, c.text) for c in chunks[1:4]]
    assert [c.ordinal for c in store.chunk_window(doc.id, len(chunks) - 2, len(chunks) + 5)] == [
        len(chunks) - 2, len(chunks) - 1]  # a window past the end is cut at the last chunk
    assert store.chunk_window(doc.id, 3, 2) == []
    assert store.chunk_window("no-such-document", 0, 3) == []
    # the window's text is one exact slice of the document, gaps between chunks included
    span = store.document_text(doc.id, window[0].start, window[-1].end)
    assert span == text[window[0].start:window[-1].end] and window[1].text in span
    assert store.document_text(doc.id, 5, 5) == "" and store.document_text("no-such-document", 0, 9) == ""
