"""The data that flows through the pipeline: Document → Chunk → SearchHit → Answer (with Citations).

Plain dataclasses. Ids are hashes: a document's id hashes its source key (so a changed file keeps its id and
replaces its old version), a chunk's `text_hash` hashes the text that gets embedded (so unchanged chunks reuse
their cached vectors).
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


def content_hash(text: str) -> str:
    """Hex SHA-256 of `text` (UTF-8), shortened to 32 chars: collision-safe for any realistic corpus."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class SpanKind(StrEnum):
    HEADING = "heading"
    PARAGRAPH = "paragraph"
    LIST_ITEM = "list_item"
    CODE = "code"
    TABLE = "table"


@dataclass(frozen=True, slots=True)
class Span:
    """A structural block of a document's text: [start, end) character offsets into `Document.text`."""

    start: int
    end: int
    kind: SpanKind = SpanKind.PARAGRAPH
    level: int = 0  # heading level (1 = top); 0 for non-headings


@dataclass(slots=True)
class Document:
    """One loaded source document: its plain text, structure and metadata.

    `source` is the key the document is known by: a collection-relative file path, `file.jsonl#id` for a record
    of a JSONL file, or any string an API caller chooses. `page_starts[i]` is the offset where page i+1 begins
    (PDFs only), so every character offset maps to a page.
    """

    source: str
    text: str
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    spans: list[Span] = field(default_factory=list)
    page_starts: list[int] = field(default_factory=list)
    source_path: str = ""  # the file it came from (for prune); "" for API-supplied text
    id: str = field(init=False)
    content_hash: str = field(init=False)

    def __post_init__(self) -> None:
        self.id = content_hash("doc:" + self.source)
        self.content_hash = content_hash(self.title + "\x00" + self.text)

    def page_at(self, offset: int) -> int | None:
        """1-based page number holding character `offset`, or None for documents without pages."""
        if not self.page_starts:
            return None
        return max(1, bisect_right(self.page_starts, offset))


@dataclass(slots=True)
class Chunk:
    """A passage of a document, the unit that is embedded, indexed, retrieved and cited."""

    doc_id: str
    ordinal: int
    text: str
    start: int
    end: int
    heading_path: tuple[str, ...] = ()
    page_start: int | None = None
    page_end: int | None = None
    token_count: int = 0
    context: str = ""  # title and heading path, prepended for embedding and BM25 but not part of `text`
    text_hash: str = field(init=False)

    def __post_init__(self) -> None:
        self.text_hash = content_hash(self.index_text)

    @property
    def index_text(self) -> str:
        """What is embedded and keyword-indexed: the context line(s), then the passage."""
        return f"{self.context}\n{self.text}" if self.context else self.text

    @property
    def id(self) -> str:
        return f"{self.doc_id}:{self.ordinal}"


@dataclass(slots=True)
class SearchHit:
    """A retrieved chunk with its document's identity and how each retrieval leg scored it."""

    chunk: Chunk
    score: float
    source: str
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    dense_score: float | None = None
    lexical_score: float | None = None
    dense_rank: int | None = None
    lexical_rank: int | None = None
    row_id: int = -1  # the store's integer key of the chunk (FAISS id, FTS rowid)

    @property
    def page(self) -> int | None:
        return self.chunk.page_start

    def to_dict(self) -> dict[str, Any]:
        c = self.chunk
        return {
            "chunk_id": c.id,
            "doc_id": c.doc_id,
            "source": self.source,
            "title": self.title,
            "text": c.text,
            "score": self.score,
            "page": c.page_start,
            "page_end": c.page_end,
            "start": c.start,
            "end": c.end,
            "heading_path": list(c.heading_path),
            "dense_score": self.dense_score,
            "lexical_score": self.lexical_score,
            "dense_rank": self.dense_rank,
            "lexical_rank": self.lexical_rank,
            "metadata": self.metadata,
        }


@dataclass(frozen=True, slots=True)
class Citation:
    """Where a claim of an answer comes from: the source numbered `number` in the prompt."""

    number: int
    doc_id: str
    source: str
    title: str
    page: int | None
    start: int
    end: int
    heading_path: tuple[str, ...]
    quote: str  # the cited passage (or, for extractive answers, the sentence used)

    def location(self) -> str:
        where = self.source
        if self.page is not None:
            where += f", p. {self.page}"
        if self.heading_path:
            where += " — " + " › ".join(self.heading_path)
        return where

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "doc_id": self.doc_id,
            "source": self.source,
            "title": self.title,
            "page": self.page,
            "start": self.start,
            "end": self.end,
            "heading_path": list(self.heading_path),
            "quote": self.quote,
        }


@dataclass(frozen=True, slots=True)
class SentenceSupport:
    """How well the given sources support one sentence of an answer (see `generate/verify.py`).

    `status`: supported (a cited source supports it), reattributed (its marker pointed at a source that does not
    support it and now points at one that does), attributed (no marker; one added for the supporting source),
    unsupported (no given source supports it), neutral (nothing to check: the no-answer sentence, a bare "Yes.").
    """

    text: str  # the sentence as it stands in `Answer.text`, markers included
    start: int  # [start, end) in `Answer.text` (-1 when strict grounding dropped it)
    end: int
    score: float  # support by the best source, 0..1
    status: str
    cited: tuple[int, ...]  # source numbers the answerer wrote
    source: int | None = None  # number of the best supporting source
    doc_id: str | None = None
    span_start: int | None = None  # the supporting span: character offsets in that document
    span_end: int | None = None
    quote: str = ""  # the supporting span's text

    @property
    def supported(self) -> bool:
        return self.status != "unsupported"

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "start": self.start, "end": self.end, "score": round(self.score, 4),
                "status": self.status, "supported": self.supported, "cited": list(self.cited),
                "source": self.source, "doc_id": self.doc_id, "span_start": self.span_start,
                "span_end": self.span_end, "quote": self.quote}


@dataclass(slots=True)
class Answer:
    """An LLM (or extractive) answer, its citations, and the sources it was given."""

    question: str
    text: str
    citations: list[Citation]
    sources: list[SearchHit]
    model: str
    dropped_citations: list[int] = field(default_factory=list)  # [n] markers that named no given source
    notice: str = ""  # e.g. "no LLM configured: extractive answer"
    sentences: list[SentenceSupport] = field(default_factory=list)  # claim-level verification, in text order
    abstained: bool = False  # the answer is the no-answer sentence (by the abstention policy or the answerer)
    abstention: dict[str, Any] = field(default_factory=dict)  # the decision's evidence and thresholds
    generated_tokens: int = 0  # tokens the LLM produced (0 for extractive answers)
    generation_s: float = 0.0  # seconds spent producing the text (LLM or extractive)

    @property
    def unsupported(self) -> list[SentenceSupport]:
        return [s for s in self.sentences if s.status == "unsupported"]

    def verification_dict(self) -> dict[str, Any]:
        """What the API's `verification` SSE event and JSON field carry."""
        return {"sentences": [s.to_dict() for s in self.sentences],
                "unsupported": [s.to_dict() for s in self.unsupported],
                "abstained": self.abstained, "abstention": self.abstention}

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.text,
            "model": self.model,
            "citations": [c.to_dict() for c in self.citations],
            "dropped_citations": self.dropped_citations,
            "notice": self.notice,
            **self.verification_dict(),
            "generated_tokens": self.generated_tokens,
            "generation_s": round(self.generation_s, 4),
            "sources": [h.to_dict() for h in self.sources],
        }
