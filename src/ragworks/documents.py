"""The data that flows through the pipeline: Document → Chunk → SearchHit → Answer (with Citations).

Plain dataclasses. Ids are hashes: a document's id hashes its source key (so a changed file keeps its id and
replaces its old version), a chunk's `text_hash` hashes the text that gets embedded (so unchanged chunks reuse
their cached vectors).
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


def content_hash(text: str) -> str:
    """Hex SHA-256 of `text` (UTF-8), shortened to 32 chars: collision-safe for any realistic corpus."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


# Document metadata the OCR and speech loaders record (what is counted by kind is under COUNTS_KEY, below).
OCR_PAGES = "ocr_pages"  # pages read by OCR
AUDIO_SECONDS = "audio_seconds"  # length of transcribed speech


class SpanKind(StrEnum):
    HEADING = "heading"
    PARAGRAPH = "paragraph"
    LIST_ITEM = "list_item"
    CODE = "code"
    TABLE = "table"


class ContentKind(StrEnum):
    """What the ingest summary and `stats` count, per kind: a loader records them with `Document.count`."""

    TEXT = "text"  # documents whose text was there to read (a text layer, a text file)
    TABLES = "tables"
    OCR_PAGES = "ocr_pages"
    AUDIO_MINUTES = "audio_minutes"


COUNTS_KEY = "counts"  # the metadata key holding a document's {kind: amount}
# A document counts as one TEXT document unless its loader counted one of these for it (an OCR'd scan, a recording).
PRIMARY_KINDS = (ContentKind.TEXT, ContentKind.OCR_PAGES, ContentKind.AUDIO_MINUTES)


def content_counts(metadata: dict[str, Any]) -> Counter[str]:
    """A document's counts per kind, from its metadata (see `ContentKind`)."""
    raw = metadata.get(COUNTS_KEY)
    counts: Counter[str] = Counter()
    if isinstance(raw, dict):
        counts.update({str(k): v for k, v in raw.items() if isinstance(v, int | float) and not isinstance(v, bool)})
    if not any(kind in counts for kind in PRIMARY_KINDS):
        counts[str(ContentKind.TEXT)] += 1
    return counts


def kind_totals(counted: Iterable[tuple[str, float]], uncounted_documents: int) -> dict[str, float]:
    """Per-kind totals for `stats`: summed (kind, amount) rows plus the documents that count as text by default."""
    kinds: dict[str, float] = {}
    for kind, amount in counted:
        kinds[str(kind)] = kinds.get(str(kind), 0.0) + float(amount)
    text = str(ContentKind.TEXT)  # plain str keys: the dict goes out as JSON
    kinds[text] = kinds.get(text, 0.0) + uncounted_documents
    return {k: int(v) if v.is_integer() else round(v, 2) for k, v in sorted(kinds.items()) if v}


@dataclass(frozen=True, slots=True)
class Span:
    """A structural block of a document's text: [start, end) character offsets into `Document.text`."""

    start: int
    end: int
    kind: SpanKind = SpanKind.PARAGRAPH
    level: int = 0  # heading level (1 = top); 0 for non-headings


TimeRange = tuple[float, float]  # seconds from the start of a recording
Box = tuple[float, float, float, float]  # x0, y0, x1, y1 as fractions of a page's width and height


@dataclass(frozen=True, slots=True)
class Anchor:
    """Where [start, end) of a document's text came from in a source that is not text.

    OCR: the page and the box on it (x0, y0, x1, y1 as fractions of the page's width and height). Speech: the
    time range in seconds from the start of the recording.
    """

    start: int
    end: int
    page: int | None = None
    box: tuple[float, float, float, float] | None = None
    time: tuple[float, float] | None = None


def format_clock(seconds: float) -> str:
    """`mm:ss` (or `h:mm:ss` from one hour) for a position in a recording."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def format_time_range(start: float, end: float) -> str:
    """`mm:ss–mm:ss`: how a citation of a recording names its place."""
    return f"{format_clock(start)}–{format_clock(end)}"


@dataclass(slots=True)
class Document:
    """One loaded source document: its plain text, structure and metadata.

    `source` is the key the document is known by: a collection-relative file path, `file.jsonl#id` for a record
    of a JSONL file, or any string an API caller chooses. `page_starts[i]` is the offset where page i+1 begins
    (PDFs only), so every character offset maps to a page. `anchors` (sorted by `start`) tie stretches of OCR text
    to boxes on their pages and transcribed speech to time ranges, so a chunk can say where it came from.
    """

    source: str
    text: str
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    spans: list[Span] = field(default_factory=list)
    page_starts: list[int] = field(default_factory=list)
    source_path: str = ""  # the file it came from (for prune); "" for API-supplied text
    anchors: list[Anchor] = field(default_factory=list)
    id: str = field(init=False)
    content_hash: str = field(init=False)

    def __post_init__(self) -> None:
        self.id = content_hash("doc:" + self.source)
        self.content_hash = content_hash(self.title + "\x00" + self.text)

    def count(self, kind: str, amount: float = 1) -> None:
        """Record that this document holds `amount` of `kind` (tables, OCR pages, audio minutes).

        Kept in `metadata["counts"]`, so it is stored, replaced and deleted with the document in every store.
        """
        counts = self.metadata.get(COUNTS_KEY)
        if not isinstance(counts, dict):  # a JSONL record's own scalar "counts" field is not ours
            counts = self.metadata[COUNTS_KEY] = {}
        counts[str(kind)] = counts.get(str(kind), 0) + amount

    @property
    def counts(self) -> Counter[str]:
        return content_counts(self.metadata)

    def page_at(self, offset: int) -> int | None:
        """1-based page number holding character `offset`, or None for documents without pages."""
        if not self.page_starts:
            return None
        return max(1, bisect_right(self.page_starts, offset))

    def locate(self, start: int, end: int) -> tuple[TimeRange | None, Box | None]:
        """The time range and the box on `start`'s page covered by the anchors overlapping [start, end)."""
        if not self.anchors:
            return None, None
        page = self.page_at(start)
        t0 = t1 = None
        box: list[float] | None = None
        for a in self.anchors:
            if a.start >= end:
                break
            if a.end <= start:
                continue
            if a.time is not None:
                t0 = a.time[0] if t0 is None else min(t0, a.time[0])
                t1 = a.time[1] if t1 is None else max(t1, a.time[1])
            if a.box is not None and a.page == page:
                if box is None:
                    box = list(a.box)
                else:
                    box = [min(box[0], a.box[0]), min(box[1], a.box[1]), max(box[2], a.box[2]),
                           max(box[3], a.box[3])]
        time = (t0, t1) if t0 is not None and t1 is not None else None
        return time, (box[0], box[1], box[2], box[3]) if box is not None else None


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
    # Title and heading path, prepended for embedding and BM25 but not part of `text`; for a chunk that continues a
    # table, the table's header rows follow on the next lines.
    context: str = ""
    time_range: tuple[float, float] | None = None  # speech: seconds into the recording
    region: tuple[float, float, float, float] | None = None  # OCR: box on page `page_start` (page fractions)
    text_hash: str = field(init=False)
    # The index text's token ids when the chunker tokenized it (never stored): the embedder then skips tokenizing.
    token_ids: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.text_hash = content_hash(self.index_text)

    @property
    def index_text(self) -> str:
        """What is embedded and keyword-indexed: the context line(s), then the passage."""
        return f"{self.context}\n{self.text}" if self.context else self.text

    @property
    def readable_text(self) -> str:
        """The passage as a reader needs it: a continued table's header rows (kept on the context's later lines,
        as `text` must stay an exact slice of the document) before its rows. What the LLM is shown."""
        _, _, lead = self.context.partition("\n")
        return f"{lead}\n{self.text}" if lead else self.text

    @property
    def id(self) -> str:
        return f"{self.doc_id}:{self.ordinal}"

    def locator(self) -> dict[str, list[float]] | None:
        """Time range and page region as stored (a JSON object), or None for plain text."""
        out: dict[str, list[float]] = {}
        if self.time_range is not None:
            out["time"] = [round(x, 2) for x in self.time_range]
        if self.region is not None:
            out["region"] = [round(x, 4) for x in self.region]
        return out or None

    def set_locator(self, locator: dict[str, Any] | None) -> None:
        """Restore `time_range` and `region` from what `locator()` stored."""
        if not locator:
            return
        t, r = locator.get("time"), locator.get("region")
        self.time_range = (float(t[0]), float(t[1])) if t else None
        self.region = (float(r[0]), float(r[1]), float(r[2]), float(r[3])) if r else None


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
    # small-to-big retrieval: the chunk ordinals [first, last] this source spans, and the ones the search matched
    window: tuple[int, int] | None = None
    matched: tuple[int, ...] = ()
    step: int = 1  # multi-step retrieval: the step (1-based) whose query found it

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
            "time_start": c.time_range[0] if c.time_range else None,
            "time_end": c.time_range[1] if c.time_range else None,
            "region": list(c.region) if c.region else None,
            "dense_score": self.dense_score,
            "lexical_score": self.lexical_score,
            "dense_rank": self.dense_rank,
            "lexical_rank": self.lexical_rank,
            "window": list(self.window) if self.window else None,
            "matched_ordinals": list(self.matched),
            "step": self.step,
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
    time_range: tuple[float, float] | None = None  # a recording: seconds from its start
    region: tuple[float, float, float, float] | None = None  # an OCR page: the box the passage was read from

    def location(self) -> str:
        where = self.source
        if self.page is not None:
            where += f", p. {self.page}"
        if self.time_range is not None:
            where += ", " + format_time_range(*self.time_range)
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
            "time_start": self.time_range[0] if self.time_range else None,
            "time_end": self.time_range[1] if self.time_range else None,
            "region": list(self.region) if self.region else None,
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
    # the guard stage's verdicts (guard/): passages flagged as instruction-like, what the output check found,
    # whether the answer was replaced for it, whether PII was masked
    guard: dict[str, Any] = field(default_factory=dict)
    # multi-step retrieval: each step's query and what it found ({"step", "query", "reason", "hits": [...]})
    steps: list[dict[str, Any]] = field(default_factory=list)

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
            "guard": self.guard,
            "steps": self.steps,
            "sources": [h.to_dict() for h in self.sources],
        }
