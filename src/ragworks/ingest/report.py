"""What an ingest run reports: per file (`FileResult`), in total (`IngestReport`) and as it goes (`Progress`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class FileResult:
    path: str
    status: str  # new | updated | unchanged | failed | removed
    documents: int = 0
    chunks: int = 0
    embedded: int = 0
    error: str = ""
    reason: str = ""
    warnings: list[str] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)  # what its written documents hold (ContentKind)
    low_confidence_pages: list[tuple[int, float]] = field(default_factory=list)  # OCR: (page, confidence)


@dataclass(slots=True)
class IngestReport:
    files: list[FileResult] = field(default_factory=list)
    chunks_written: int = 0
    chunks_embedded: int = 0
    documents_removed: int = 0
    seconds: float = 0.0

    def merge(self, other: IngestReport) -> None:
        """Add another run's files and counts to this one (one summary for several runs)."""
        self.files.extend(other.files)
        self.chunks_written += other.chunks_written
        self.chunks_embedded += other.chunks_embedded
        self.documents_removed += other.documents_removed
        self.seconds += other.seconds

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def kinds(self) -> Counter[str]:
        """What the documents written in this run hold, per kind: text documents, tables, OCR pages, audio minutes."""
        total: Counter[str] = Counter()
        for f in self.files:
            total.update(f.kinds)
        return total

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": len(self.files),
            "new": self.count("new"),
            "updated": self.count("updated"),
            "unchanged": self.count("unchanged"),
            "failed": self.count("failed"),
            "removed": self.count("removed"),
            "chunks_written": self.chunks_written,
            "chunks_embedded": self.chunks_embedded,
            "documents_removed": self.documents_removed,
            "seconds": round(self.seconds, 3),
            "kinds": {k: round(v, 2) for k, v in sorted(self.kinds.items())},
            "failures": [{"path": f.path, "reason": f.reason, "error": f.error} for f in self.failed],
            "ocr_low_confidence": [
                {"path": f.path, "pages": [{"page": p, "confidence": c} for p, c in f.low_confidence_pages]}
                for f in self.files if f.low_confidence_pages
            ],
        }


@dataclass(slots=True)
class Progress:
    """How far a run is, for a progress display and a job's status (`JobProgress` is this type).

    `event` is 'start', 'file', 'batch' or 'units' (OCR pages, audio seconds read inside a file: `units` more of
    `unit`); `documents` counts the documents read so far, written or unchanged. `to_dict` is what the job API
    shows (and the job tables store)."""

    event: str = ""
    files_total: int = 0
    files_done: int = 0
    chunks_written: int = 0
    chunks_embedded: int = 0
    current: str = ""
    unit: str = ""
    units: float = 0.0
    documents: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"files_total": self.files_total, "files_done": self.files_done, "documents": self.documents,
                "chunks_written": self.chunks_written, "chunks_embedded": self.chunks_embedded,
                "current": self.current}


ProgressCallback = Callable[[Progress], None]
