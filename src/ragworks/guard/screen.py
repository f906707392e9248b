"""The ingest side of the guard: every document passes `DocumentGuard.screen` between loading and chunking."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragworks.documents import Document, content_hash
from ragworks.guard.base import HIDDEN_KEY, INJECTION_KEY, PII_KEY, InjectionPolicy, PiiPolicy, rewrite_document
from ragworks.guard.hidden import invisible_edits, strip_invisible
from ragworks.guard.injection import flag_injection
from ragworks.guard.pii import PiiDetector, placeholder_edits, redact

if TYPE_CHECKING:
    from ragworks.config import Settings


class DocumentGuard:
    """Drops invisible characters, records or redacts PII, and flags instruction-like passages, by policy.

    Offsets stay true: the stored document text is the screened text (redacted, when redact-ingest), its spans,
    pages and anchors mapped onto it, so citations point into what is stored.
    """

    def __init__(self, *, pii: PiiPolicy = "off", injection: InjectionPolicy = "off",
                 detector: PiiDetector | None = None) -> None:
        self.pii = pii
        self.injection = injection
        self._detector = detector

    @classmethod
    def from_settings(cls, settings: Settings, detector: PiiDetector | None = None) -> DocumentGuard:
        return cls(pii=settings.pii, injection=settings.injection, detector=detector)

    @property
    def detector(self) -> PiiDetector:
        if self._detector is None:
            self._detector = PiiDetector()
        return self._detector

    @property
    def tag(self) -> str:
        """What about the screening changes stored text or metadata: part of the document's change hash, so a
        policy change re-screens documents on the next ingest."""
        return f"guard:pii={self.pii}:injection={'off' if self.injection == 'off' else 'on'}:v1"

    def change_hash(self, doc: Document) -> str:
        """The content hash stored for `doc` once screened (the loaded text's hash and the policy's)."""
        return content_hash(doc.content_hash + "\x00" + self.tag)

    def screen(self, doc: Document) -> Document:
        """`doc` as it is stored: screened by the policies, carrying the findings in its metadata."""
        change = self.change_hash(doc)
        dropped = invisible_edits(doc.text)
        hidden = sum(e.end - e.start for e in dropped) + int(doc.metadata.get(HIDDEN_KEY, 0) or 0)
        out = rewrite_document(doc, dropped)
        out.title = strip_invisible(out.title)
        for key in (PII_KEY, INJECTION_KEY):
            out.metadata.pop(key, None)  # only this stage writes them (a JSONL record's own field is not a finding)
        if hidden:
            out.metadata[HIDDEN_KEY] = hidden
        if self.pii != "off":
            findings = self.detector.find(out.text)
            if self.pii == "redact-ingest":
                edits, findings = placeholder_edits(out.text, findings)
                out = rewrite_document(out, edits)
                out.title = redact(out.title, self.detector.find(out.title)) if out.title else out.title
            if findings:  # keys only when there is something to say: a clean document's metadata stays as given
                out.metadata[PII_KEY] = [f.to_dict() for f in findings]
        if self.injection != "off":
            flags = flag_injection(out.text)
            if flags:
                out.metadata[INJECTION_KEY] = [f.to_dict() for f in flags]
        out.content_hash = change
        return out
