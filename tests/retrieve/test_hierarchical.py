"""Hierarchical retrieval: small-to-big windows (exact document slices, adjacent hits merged, citations and
support spans at true offsets) and document-first ranking, on the real embedder and a real SQLite/FAISS store."""

from __future__ import annotations

import pytest

from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.documents import Chunk, SearchHit
from ragworks.retrieve.hierarchical import document_first, document_scores

HARBOUR = "\n\n".join([
    "# Harbour rules",
    "The harbour office opens at six in the morning. Visitors sign the yard book at the gate.",
    "Pier four is reserved for the pilot boats. Its mooring rings were replaced in spring.",
    "The pilot boats refuel at the east jetty. Diesel is delivered by barge every Thursday.",
    "Fishing from the breakwater is allowed after sunset. Nets must be tagged with the owner's name.",
    "The lighthouse on the breakwater is maintained by the coast guard.",
    "Cargo cranes stop when the wind exceeds forty knots. The crane drivers report to the harbour master.",
])
BAKERY = ("# Bakery\n\nThe bakery on Mill Street bakes rye bread every morning. Its sourdough starter is "
          "thirty years old.\n\nThe bakery closes on Sundays.")


@pytest.fixture
def harbour(tmp_path, embedder):
    def make(**kw) -> Collection:
        settings = Settings(data_dir=tmp_path / "data", collection="harbour", llm="extractive", chunk_tokens=24,
                            chunk_overlap=0, **kw)
        col = Collection.open(settings=settings, embedder=embedder, llm=None)
        if not col.exists:
            col.add_text(HARBOUR, source="harbour.md", title="Harbour")
            col.add_text(BAKERY, source="bakery.md", title="Bakery")
        return col

    return make


def test_small_to_big_hands_over_the_matched_chunk_with_its_neighbours_as_an_exact_slice(harbour):
    plain = harbour()
    _, text, chunks = plain.document("harbour.md")
    assert len(chunks) >= 5
    top = plain.search("Where do the pilot boats refuel?", k=1, mode="dense")[0]
    col = harbour(retrieval_unit="small-to-big", retrieval_window=1)
    hit = col.search("Where do the pilot boats refuel?", k=1, mode="dense")[0]
    o = top.chunk.ordinal
    assert o in hit.matched  # (a neighbouring chunk that also matched joins the same window)
    assert hit.window == (max(0, min(hit.matched) - 1), min(len(chunks) - 1, max(hit.matched) + 1))
    assert hit.chunk.text == text[hit.chunk.start:hit.chunk.end]  # one exact slice, gaps included
    assert hit.chunk.start == chunks[hit.window[0]].start and hit.chunk.end == chunks[hit.window[1]].end
    assert top.chunk.text in hit.chunk.text and len(hit.chunk.text) > len(top.chunk.text)
    assert hit.to_dict()["window"] == list(hit.window)


def test_small_to_big_merges_adjacent_hits_of_one_document_into_one_source(harbour):
    col = harbour(retrieval_unit="small-to-big", retrieval_window=1)
    hits = col.search("pilot boats pier refuel jetty", k=3, mode="bm25")
    harbour_hits = [h for h in hits if h.source == "harbour.md"]
    assert len(harbour_hits) == 1, [(h.source, h.window) for h in hits]  # neighbouring matches: one source
    merged = harbour_hits[0]
    assert len(merged.matched) >= 2 and merged.window is not None
    assert merged.window[0] <= min(merged.matched) and max(merged.matched) <= merged.window[1]
    assert "Pier four" in merged.chunk.text and "east jetty" in merged.chunk.text


def test_small_to_big_answers_cite_the_exact_sentence_inside_the_window(harbour):
    col = harbour(retrieval_unit="small-to-big", retrieval_window=1)
    answer = col.ask("When is diesel delivered to the east jetty?")
    _, text, _ = col.document("harbour.md")
    assert "Thursday" in answer.text and answer.citations
    for c in answer.citations:
        assert text[c.start:c.end] == c.quote and len(c.quote) < len(answer.sources[c.number - 1].chunk.text)
    supported = [s for s in answer.sentences if s.status != "neutral"]
    assert supported and all(text[s.span_start:s.span_end] == s.quote for s in supported if s.span_start is not None)


def _hit(doc: str, ordinal: int, score: float) -> SearchHit:
    return SearchHit(Chunk(doc_id=doc, ordinal=ordinal, text=f"{doc} {ordinal}", start=0, end=1), score, doc)


def test_document_first_ranks_a_document_with_several_good_chunks_above_one_lucky_chunk():
    hits = [_hit("lucky", 0, 0.9), _hit("broad", 0, 0.8), _hit("other", 0, 0.7), _hit("broad", 1, 0.6),
            _hit("broad", 2, 0.5), _hit("other", 1, 0.4)]
    scores = document_scores(hits, how="sum")
    assert max(scores, key=scores.__getitem__) == "broad"
    assert max(document_scores(hits, how="max"), key=lambda d: document_scores(hits, how="max")[d]) == "lucky"
    ranked = document_first(hits, k=10, documents=2, how="sum")
    assert [(h.chunk.doc_id, h.chunk.ordinal) for h in ranked] == [
        ("broad", 0), ("broad", 1), ("broad", 2), ("other", 0), ("other", 1)]  # passages of the best documents
    by_best = document_first(hits, k=10, documents=2)  # the default: a document at its best chunk
    assert [(h.chunk.doc_id, h.chunk.ordinal) for h in by_best] == [("lucky", 0), ("broad", 0), ("broad", 1),
                                                                     ("broad", 2)]


def test_document_first_search_returns_passages_of_the_best_documents_only(harbour):
    col = harbour(retrieval_unit="document-first", retrieval_documents=1)
    hits = col.search("harbour pilot boats cranes breakwater", k=4)
    assert hits and {h.source for h in hits} == {"harbour.md"}
    _, text, _ = col.document("harbour.md")
    assert all(h.chunk.text == text[h.chunk.start:h.chunk.end] for h in hits)
