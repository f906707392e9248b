"""Hierarchical retrieval: match small units, hand the answerer bigger ones (or find documents, then passages).

- `small_to_big`: each matched chunk grows to its neighbours (± `window` chunks of its document); hits of one
  document whose windows touch or overlap become one source. A source's text is one exact slice of the stored
  document (`ChunkWindows.document_text`), so citations and the verifier's support spans keep true offsets.
- `document_first`: documents are scored from the ranks of their chunks in a wide first-stage list (by default
  1/(rrf_k + rank) of a document's best chunk; "sum" adds its next best chunks too), then the passages of the
  best documents are returned, best document first. "sum" favours documents with many chunks: SciFact nDCG@10
  0.430 against 0.730 for "max" (bench/results/hierarchical.md), so "max" is the default.

Both work on the hits the search pipeline already produced; neither embeds anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from ragworks.documents import Chunk, SearchHit
from ragworks.store.base import ChunkWindows

RetrievalUnit = Literal["chunk", "small-to-big", "document-first"]
DocumentScore = Literal["sum", "max"]

DOCUMENT_POOL = 100  # first-stage hits document-first scores documents from
CHUNKS_PER_DOCUMENT = 3  # a document's best chunks that count towards its score ("sum")


@dataclass(slots=True)
class _Group:
    """Hits of one document whose windows touch: one source."""

    best: SearchHit
    lo: int
    hi: int
    matched: list[int] = field(default_factory=list)

    def touches(self, lo: int, hi: int) -> bool:
        return lo <= self.hi + 1 and hi >= self.lo - 1


def _group(hits: Sequence[SearchHit], window: int, k: int) -> list[_Group]:
    """Windows of the hits in rank order, merged per document; at most `k` groups (later hits only merge)."""
    groups: list[_Group] = []
    for hit in hits:
        lo, hi = max(0, hit.chunk.ordinal - window), hit.chunk.ordinal + window
        same = [g for g in groups if g.best.chunk.doc_id == hit.chunk.doc_id and g.touches(lo, hi)]
        if not same:
            if len(groups) < k:
                groups.append(_Group(hit, lo, hi, [hit.chunk.ordinal]))
            continue
        head = same[0]  # the best-ranked group it touches absorbs it and any other group it bridges
        head.lo, head.hi = min(head.lo, lo, *(g.lo for g in same)), max(head.hi, hi, *(g.hi for g in same))
        head.matched = sorted({*head.matched, hit.chunk.ordinal, *(o for g in same[1:] for o in g.matched)})
        groups = [g for g in groups if g is head or g not in same[1:]]
    return groups


def window_chunk(chunks: Sequence[Chunk], text: str, best: Chunk) -> Chunk:
    """One chunk spanning `chunks` (consecutive, by ordinal) whose text is the document's slice `text`."""
    first, last = chunks[0], chunks[-1]
    pages = [p for c in chunks for p in (c.page_start, c.page_end) if p is not None]
    merged = Chunk(doc_id=best.doc_id, ordinal=best.ordinal, text=text, start=first.start, end=last.end,
                   heading_path=first.heading_path, page_start=min(pages) if pages else None,
                   page_end=max(pages) if pages else None, token_count=sum(c.token_count for c in chunks),
                   context=first.context, time_range=_time_union(chunks), region=first.region)
    return merged


def _time_union(chunks: Sequence[Chunk]) -> tuple[float, float] | None:
    times = [c.time_range for c in chunks if c.time_range is not None]
    return (min(t[0] for t in times), max(t[1] for t in times)) if times else None


def small_to_big(hits: Sequence[SearchHit], store: ChunkWindows, *, window: int, k: int) -> list[SearchHit]:
    """Up to `k` sources: each hit with ± `window` neighbouring chunks, adjacent hits of a document merged."""
    out: list[SearchHit] = []
    for g in _group(hits, window, k):
        chunks = store.chunk_window(g.best.chunk.doc_id, g.lo, g.hi)
        if not chunks:  # deleted since the search: keep what was found
            out.append(g.best)
            continue
        text = store.document_text(g.best.chunk.doc_id, chunks[0].start, chunks[-1].end)
        if not text:
            out.append(g.best)
            continue
        merged = window_chunk(chunks, text, g.best.chunk)
        out.append(replace(g.best, chunk=merged, window=(chunks[0].ordinal, chunks[-1].ordinal),
                           matched=tuple(g.matched)))
    return out


def document_scores(hits: Sequence[SearchHit], *, how: DocumentScore = "max", rrf_k: int = 60,
                    per_document: int = CHUNKS_PER_DOCUMENT) -> dict[str, float]:
    """doc id → score from its chunks' ranks in `hits` (rank-based, so any fusion's score scale will do)."""
    scores: dict[str, float] = {}
    seen: dict[str, int] = {}
    for rank, hit in enumerate(hits, 1):
        doc = hit.chunk.doc_id
        seen[doc] = seen.get(doc, 0) + 1
        if seen[doc] > (1 if how == "max" else per_document):
            continue
        scores[doc] = scores.get(doc, 0.0) + 1.0 / (rrf_k + rank)
    return scores


def document_first(hits: Sequence[SearchHit], *, k: int, documents: int | None = None,
                   how: DocumentScore = "max", rrf_k: int = 60) -> list[SearchHit]:
    """The passages of the best-scored documents (at most `documents` of them), best document first, each
    document's passages in their first-stage order; at most `k`."""
    scores = document_scores(hits, how=how, rrf_k=rrf_k)
    ranked_docs = sorted(scores, key=lambda d: -scores[d])[: documents or k]
    position = {d: i for i, d in enumerate(ranked_docs)}
    chosen = [h for h in hits if h.chunk.doc_id in position]
    chosen.sort(key=lambda h: position[h.chunk.doc_id])  # stable: passage order within a document kept
    return chosen[:k]
