"""The answer side of the guard: which given passages are flagged, what is trusted, and PII masking of output."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from ragworks.documents import Answer, Chunk, SearchHit
from ragworks.guard.base import INJECTION_KEY, PII_KEY, Edit, OffsetMap, apply_edits, overlapping
from ragworks.guard.injection import flag_injection
from ragworks.guard.pii import PiiDetector, mask_spans, mask_values


def flagged_stretches(hit: SearchHit) -> list[tuple[int, int]]:
    """Document stretches of `hit`'s passage that read as instructions to an assistant.

    From the flags recorded at ingest; a passage without a record (nothing found at ingest, or ingested with
    `injection = "off"` or before the guard existed) is checked now (~2 ms), so every prompt is screened.
    """
    c = hit.chunk
    if INJECTION_KEY in hit.metadata:
        return [(r["start"], r["end"]) for r in overlapping(hit.metadata.get(INJECTION_KEY), c.start, c.end)]
    return [(c.start + f.start, c.start + f.end) for f in flag_injection(c.text)]


def trusted_text(sources: Sequence[SearchHit], flagged: dict[int, list[tuple[int, int]]]) -> str:
    """The given passages' text outside flagged stretches: what an answer's URLs must come from."""
    parts = []
    for n, h in enumerate(sources, 1):
        c = h.chunk
        text = c.text
        for start, end in sorted(flagged.get(n, ()), reverse=True):
            s, e = max(start - c.start, 0), min(end - c.start, len(text))
            if s < e:
                text = text[:s] + " " + text[e:]
        parts.append(text)
    return "\n".join(parts)


Span = tuple[int, int, str]  # (start, end, type) of a PII finding


def _within(spans: Sequence[Span], start: int, end: int, length: int) -> list[Span]:
    """Document spans that overlap [start, end), made relative to `start` and clipped to a text of `length`."""
    return [(max(s - start, 0), min(e - start, length), t) for s, e, t in spans if s < end and e > start]


def _findings(metadata: dict[str, Any], text: str, start: int, end: int, detector: PiiDetector | None) -> list[Span]:
    """PII in `text` (document characters start..end) as spans within it: the findings recorded at ingest in
    the document's metadata, else the detector's now (a document ingested with `pii = "off"`)."""
    recorded = metadata.get(PII_KEY)
    if isinstance(recorded, list):
        return _within([(r["start"], r["end"], str(r.get("type", "PII"))) for r in overlapping(recorded, start, end)],
                       start, end, len(text))
    if detector is None:
        return []
    return [(f.start, f.end, f.type) for f in detector.find(text)]


def _chunk_findings(hit: SearchHit, detector: PiiDetector | None) -> list[Span]:
    """PII in `hit`'s passage as (start, end, type) within the passage text."""
    c = hit.chunk
    return _findings(hit.metadata, c.text, c.start, c.end, detector)


class PiiMasker:
    """Masks PII in what leaves the engine for a caller without the pii:read grant."""

    def __init__(self, detector: PiiDetector | None) -> None:
        self.detector = detector

    def hit(self, hit: SearchHit) -> SearchHit:
        spans = _chunk_findings(hit, self.detector)
        title = self.title(hit.title)
        if not spans and title == hit.title:
            return hit
        chunk = dataclasses.replace(hit.chunk, text=mask_spans(hit.chunk.text, spans))
        return dataclasses.replace(hit, chunk=chunk, title=title)

    def values(self, hits: Sequence[SearchHit]) -> list[tuple[str, str]]:
        """The PII values of the given passages, longest first (an answer quoting them is masked by value)."""
        out = {(h.chunk.text[s:e], t) for h in hits for s, e, t in _chunk_findings(h, self.detector)}
        return sorted(out, key=lambda v: -len(v[0]))

    def text(self, text: str, values: Sequence[tuple[str, str]]) -> str:
        text = mask_values(text, values)
        if self.detector is not None and text.strip():
            text = mask_spans(text, [(f.start, f.end, f.type) for f in self.detector.find(text)])
        return text

    def answer(self, answer: Answer) -> Answer:
        """`answer` with its text, citation quotes, sentence quotes and sources masked."""
        values = self.values(answer.sources)
        citations = [dataclasses.replace(c, quote=self.text(c.quote, values), title=self.title(c.title))
                     for c in answer.citations]
        sentences = [dataclasses.replace(s, text=self.text(s.text, values), quote=self.text(s.quote, values))
                     for s in answer.sentences]
        abstention = dict(answer.abstention)
        if "draft" in abstention:
            abstention["draft"] = self.text(str(abstention["draft"]), values)
        return dataclasses.replace(answer, text=self.text(answer.text, values), citations=citations,
                                   sentences=sentences, sources=[self.hit(h) for h in answer.sources],
                                   abstention=abstention, guard={**answer.guard, "pii_masked": True})

    def document_text(self, metadata: dict[str, Any], text: str) -> tuple[str, list[Span], OffsetMap]:
        """A document's whole text masked, the findings masked and the map of offsets into the masked text."""
        found = [(s, e, t) for s, e, t in _findings(metadata, text, 0, len(text), self.detector)
                 if 0 <= s < e <= len(text)]
        masked, at = apply_edits(text, [Edit(s, e, f"<{t}>") for s, e, t in found])
        return masked, found, at

    def document(self, metadata: dict[str, Any], title: str, text: str, chunks: Sequence[Chunk]
                 ) -> tuple[dict[str, Any], str, str, list[Chunk]]:
        """A whole document as GET /documents returns it: (metadata, title, text, chunks) masked, chunk texts with
        the same findings (as search hits are), and chunk offsets and the recorded findings' offsets mapped into
        the masked text."""
        masked, found, at = self.document_text(metadata, text)
        out = [dataclasses.replace(c, start=at(c.start), end=at(c.end),
                                   text=mask_spans(c.text, _within(found, c.start, c.end, len(c.text))))
               for c in chunks]
        recorded = metadata.get(PII_KEY)
        if isinstance(recorded, list):
            metadata = {**metadata, PII_KEY: [{**r, "start": at(r["start"]), "end": at.end(r["end"])}
                                              for r in overlapping(recorded, 0, len(text))]}
        return metadata, self.title(title), masked, out

    def title(self, title: str) -> str:
        if self.detector is None or not title:
            return title
        return mask_spans(title, [(f.start, f.end, f.type) for f in self.detector.find(title)])
