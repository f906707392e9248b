"""Time ranges (speech) and page boxes (OCR) survive PostgreSQL like SQLite, and `stats` counts content by kind."""

from __future__ import annotations

from ragworks.documents import Anchor, Document, Span
from ragworks.ingest.pipeline import IngestPipeline
from ragworks.retrieve.hybrid import HybridRetriever


def test_chunks_keep_time_ranges_and_page_boxes_and_stats_count_kinds(make_store, embedder, chunker):
    store = make_store()
    said = "The night ferry leaves the harbour at midnight."
    talk = Document(source="talk.wav", text=said, title="talk", spans=[Span(0, len(said))],
                    anchors=[Anchor(0, len(said), time=(61.5, 66.0))],
                    metadata={"audio_seconds": 90.0, "media": "audio", "counts": {"audio_minutes": 1.5}})
    read = "Keep the storm shutters closed in winter."
    scan = Document(source="scan.png", text=read, title="scan", spans=[Span(0, len(read))], page_starts=[0],
                    anchors=[Anchor(0, len(read), page=1, box=(0.1, 0.2, 0.8, 0.25))],
                    metadata={"pages": 1, "ocr_pages": 1, "counts": {"ocr_pages": 1}})
    plain = Document(source="plain.md", text="Bees make honey in summer.", title="plain")
    IngestPipeline(store, embedder, chunker).add_documents([talk, scan, plain])
    retriever = HybridRetriever(store, embedder)
    ferry = retriever.search("when does the night ferry leave", k=1)[0]
    assert ferry.source == "talk.wav" and ferry.chunk.time_range == (61.5, 66.0) and ferry.chunk.region is None
    shutters = retriever.search("storm shutters in winter", k=1)[0]
    assert shutters.chunk.region == (0.1, 0.2, 0.8, 0.25) and shutters.chunk.page_start == 1
    assert retriever.search("honey bees", k=1)[0].chunk.locator() is None
    kinds = store.stats()["kinds"]
    assert kinds == {"text": 1, "ocr_pages": 1, "audio_minutes": 1.5}
