"""Sync: run a collection's sources once (`ragworks sync`), each retried with backoff when it is unavailable.

A source that stays unavailable is reported as failed and its documents are left exactly as they were.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ragworks.collection import Collection
from ragworks.errors import SourceUnavailable
from ragworks.ingest.pipeline import IngestReport, ProgressCallback
from ragworks.ingest.source import Source
from ragworks.sources.config import SourceList, SourceSpec, make_source


@dataclass(slots=True)
class SyncOutcome:
    """What one source's sync did: counts from its ingest report, or the error that kept it from running."""

    name: str
    uri: str
    report: IngestReport | None
    error: str = ""
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.report is not None

    def counts(self) -> dict[str, int]:
        """Items seen, changed, deleted, failed (the figures jobs and /metrics show), and chunks embedded."""
        r = self.report
        if r is None:
            return {"seen": 0, "changed": 0, "unchanged": 0, "deleted": 0, "failed": 0, "embedded": 0}
        seen = len(r.files) - r.count("removed")
        return {"seen": seen, "changed": r.count("new") + r.count("updated"), "unchanged": r.count("unchanged"),
                "deleted": r.count("removed"), "failed": r.count("failed"), "embedded": r.chunks_embedded}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "uri": self.uri, "ok": self.ok, "error": self.error, "attempts": self.attempts,
                **self.counts(), "report": self.report.to_dict() if self.report else None}


def sync_source(collection: Collection, source: Source, *, name: str = "", retries: int = 2,
                backoff_s: float = 1.0, progress: ProgressCallback | None = None,
                sleep: Callable[[float], None] = time.sleep) -> SyncOutcome:
    """Sync one source into `collection`, retrying an unavailable source `retries` times (backoff doubling)."""
    error = ""
    for attempt in range(retries + 1):
        try:
            report = collection.sync(source, progress=progress)
            return SyncOutcome(name or source.uri, source.uri, report, attempts=attempt + 1)
        except SourceUnavailable as exc:
            error = str(exc)
            if attempt < retries:
                sleep(backoff_s * 2**attempt)
    return SyncOutcome(name or source.uri, source.uri, None, error, attempts=retries + 1)


def sync_collection(collection: Collection, specs: Sequence[SourceSpec] | None = None, *, retries: int = 2,
                    backoff_s: float = 1.0, progress: ProgressCallback | None = None,
                    on_outcome: Callable[[SyncOutcome], None] | None = None) -> list[SyncOutcome]:
    """Run every configured source of `collection` once (or the `specs` given); one failing does not stop the rest."""
    sources = SourceList(collection.path)
    outcomes = []
    for spec in sources.load() if specs is None else specs:
        source = make_source(spec, cache_dir=sources.cache_dir)
        try:
            outcome = sync_source(collection, source, name=spec.name, retries=retries, backoff_s=backoff_s,
                                  progress=progress)
        finally:
            source.close()
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)
    return outcomes
