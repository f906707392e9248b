"""What the guard stage shares: its policies, a finding, and rewriting a document's text with offsets kept true.

The guard sits beside ingest/ and generate/ (both import it); it imports only documents, config and errors.
"""

from __future__ import annotations

import dataclasses
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ragworks.documents import Document, Span

PiiPolicy = Literal["off", "flag", "redact-ingest", "redact-answers"]
InjectionPolicy = Literal["off", "flag", "fence", "quarantine"]

PII_KEY = "pii"  # document metadata: [{"type", "start", "end", "score"}] in the stored text (never the value)
INJECTION_KEY = "injection"  # document metadata: [{"start", "end", "rule"}] of instruction-like passages
HIDDEN_KEY = "hidden_removed"  # document metadata: characters of invisible text dropped at ingest


@dataclass(frozen=True, slots=True)
class Finding:
    """One detected identifier: its type (EMAIL_ADDRESS, PERSON, ...), [start, end) in the text, and a score."""

    type: str
    start: int
    end: int
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "start": self.start, "end": self.end, "score": round(self.score, 3)}


@dataclass(frozen=True, slots=True)
class Edit:
    """Replace text[start:end] with `replacement`."""

    start: int
    end: int
    replacement: str = ""


class OffsetMap:
    """Maps offsets of the text before a set of edits to offsets after them (edits sorted, not overlapping)."""

    def __init__(self, edits: Sequence[Edit]) -> None:
        self._starts = [e.start for e in edits]
        self._edits = list(edits)
        self._shift: list[int] = []  # cumulative length change after edit i
        total = 0
        for e in edits:
            total += len(e.replacement) - (e.end - e.start)
            self._shift.append(total)

    def __call__(self, offset: int) -> int:
        i = bisect_right(self._starts, offset) - 1
        if i < 0:
            return offset
        e = self._edits[i]
        before = self._shift[i - 1] if i else 0
        if offset < e.end:  # inside a replaced stretch: its start (a span starting in it begins at the replacement)
            return e.start + before
        return offset + self._shift[i]

    def end(self, offset: int) -> int:
        """An end offset mapped: one inside a replaced stretch ends after the replacement (a cut keeps it whole)."""
        i = bisect_right(self._starts, offset - 1) - 1
        if i >= 0 and offset < self._edits[i].end:
            e = self._edits[i]
            return e.start + (self._shift[i - 1] if i else 0) + len(e.replacement)
        return self(offset)


def apply_edits(text: str, edits: Sequence[Edit]) -> tuple[str, OffsetMap]:
    """`text` with `edits` applied (overlaps resolved by keeping the earlier, longer one) and the offset map."""
    kept: list[Edit] = []
    for e in sorted(edits, key=lambda e: (e.start, -(e.end - e.start))):
        if kept and e.start < kept[-1].end:
            continue
        kept.append(e)
    out: list[str] = []
    pos = 0
    for e in kept:
        out.append(text[pos:e.start])
        out.append(e.replacement)
        pos = e.end
    out.append(text[pos:])
    return "".join(out), OffsetMap(kept)


def rewrite_document(doc: Document, edits: Sequence[Edit]) -> Document:
    """A copy of `doc` with `edits` applied to its text and every offset (spans, pages, anchors) mapped along.

    The id stays (it hashes the source); the content hash is that of the new text, so callers that need change
    detection against the original set it themselves.
    """
    if not edits:
        return doc
    text, at = apply_edits(doc.text, edits)
    spans = [Span(at(s.start), at(s.end), s.kind, s.level) for s in doc.spans]
    spans = [s for s in spans if s.end > s.start]
    anchors = [dataclasses.replace(a, start=at(a.start), end=at(a.end)) for a in doc.anchors]
    anchors = [a for a in anchors if a.end > a.start]
    return Document(source=doc.source, text=text, title=doc.title, metadata=dict(doc.metadata), spans=spans,
                    page_starts=[at(p) for p in doc.page_starts], source_path=doc.source_path, anchors=anchors)


def overlapping(records: Any, start: int, end: int) -> list[dict[str, Any]]:
    """The metadata records (dicts with start/end) that overlap [start, end): a chunk's share of its document's."""
    if not isinstance(records, list):
        return []
    return [r for r in records if isinstance(r, dict) and isinstance(r.get("start"), int)
            and isinstance(r.get("end"), int) and r["start"] < end and r["end"] > start]
