"""What an ingestion job does, whichever queue runs it: hand the uploaded files (or JSON documents) to the
collection's ingest pipeline, which reports progress and calls `check()` between files and before each commit.

Re-running a job is harmless: documents whose content is already stored are skipped by content hash, so a job
interrupted half-way (server stopped, process killed) is simply run again from the start.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ragworks.collection import Collection
from ragworks.documents import Document
from ragworks.ingest.loaders import markdown_spans
from ragworks.ingest.source import Upload
from ragworks.jobs.base import Job, JobKind, JobProgress

DOCUMENTS_PER_COMMIT = 64  # JSON documents: committed (and the index saved) at least this often; files one by one


class JobInterrupted(Exception):
    """Raised between files (or groups of documents) when the job was cancelled or the server is stopping."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # "cancelled" | "stopping"


def upload_path(collection_dir: Path, sha256: str, filename: str) -> Path:
    """Where an uploaded file is kept: content-addressed, under its collection."""
    return collection_dir / "uploads" / sha256 / filename


def run_ingest_job(
    job: Job,
    collection: Collection,
    *,
    on_progress: Callable[[JobProgress], None],
    check: Callable[[], None],
) -> dict[str, Any]:
    """Run `job` into `collection`; returns its report. `check()` raises JobInterrupted to stop it."""
    if job.kind is JobKind.SYNC:
        from ragworks.jobs.sync import run_sync_job

        return run_sync_job(job, collection, on_progress=on_progress, check=check)
    last = JobProgress()

    def progress(p: JobProgress) -> None:
        nonlocal last
        if p.event != "units":  # pages and seconds read inside a file are not part of a job's progress
            last = p
            on_progress(p)

    if job.kind is JobKind.FILES:
        metadata = dict(job.payload.get("metadata") or {})
        uploads = [Upload(f["source"], upload_path(collection.path, f["sha256"], f["filename"]), f["sha256"], metadata)
                   for f in job.payload["files"]]
        report = collection.add_uploads(uploads, progress=progress, check=check)
    else:
        docs = [Document(source=d["source"], text=d["text"], title=d.get("title") or "",
                         metadata={**(d.get("metadata") or {}),
                                   **({"readers": d["readers"]} if d.get("readers") is not None else {})},
                         spans=markdown_spans(d["text"]))
                for d in job.payload["documents"]]
        report = collection.add_documents(docs, progress=progress, check=check, per_commit=DOCUMENTS_PER_COMMIT)
    last.current = ""
    on_progress(last)
    out = report.to_dict()
    out["documents"] = last.documents
    return out
