"""What an ingestion job does, whichever queue runs it: load each uploaded file (or JSON document), then
`Collection.add_documents` in small groups, reporting progress and stopping between groups when asked.

Re-running a job is harmless: documents whose content is already stored are skipped by content hash, so a job
interrupted half-way (server stopped, process killed) is simply run again from the start.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ragworks.collection import Collection
from ragworks.documents import Document
from ragworks.errors import LoadError
from ragworks.ingest.base import LoadOptions, LoadReport
from ragworks.ingest.loaders import loader_for, markdown_spans
from ragworks.ingest.pipeline import FileResult, IngestReport, counted
from ragworks.jobs.base import Job, JobKind, JobProgress

DOCUMENTS_PER_COMMIT = 64  # between two: progress, cancel and stop checks; each commit saves the index


class JobInterrupted(Exception):
    """Raised between groups of documents when the job was cancelled or the server is stopping."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # "cancelled" | "stopping"


def upload_path(collection_dir: Path, sha256: str, filename: str) -> Path:
    """Where an uploaded file is kept: content-addressed, under its collection."""
    return collection_dir / "uploads" / sha256 / filename


def _groups(docs: Iterable[Document], n: int) -> Iterator[list[Document]]:
    it = iter(docs)
    while group := list(itertools.islice(it, n)):
        yield group


def _file_status(statuses: list[str]) -> str:
    if statuses and all(s == "unchanged" for s in statuses):
        return "unchanged"
    return "updated" if "updated" in statuses else "new"


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
    started = time.perf_counter()
    progress = JobProgress()
    report = IngestReport()

    def add(docs: list[Document], result: FileResult, statuses: list[str]) -> None:
        check()
        part = collection.add_documents(docs)
        result.documents += len(docs)
        result.chunks += part.chunks_written
        result.embedded += part.chunks_embedded
        report.chunks_written += part.chunks_written
        report.chunks_embedded += part.chunks_embedded
        statuses.extend(f.status for f in part.files)
        progress.documents += len(docs)
        progress.chunks_written = report.chunks_written
        progress.chunks_embedded = report.chunks_embedded
        on_progress(progress)

    if job.kind is JobKind.FILES:
        s = collection.settings
        options = LoadOptions.from_settings(s)
        extra_metadata = dict(job.payload.get("metadata") or {})
        files = job.payload["files"]
        progress.files_total = len(files)
        for f in files:
            check()
            progress.current = f["source"]
            on_progress(progress)
            result, statuses = FileResult(f["source"], "new"), list[str]()
            path = upload_path(collection.path, f["sha256"], f["filename"])
            try:
                load_report = LoadReport()
                loaded = loader_for(path)(path, f["source"], options, load_report)
                for group in _groups(loaded, DOCUMENTS_PER_COMMIT):
                    for d in group:
                        d.metadata = {**extra_metadata, **d.metadata}
                        if "media" in d.metadata:  # a recording: the web page plays the cited clip from the upload
                            d.metadata["upload_sha256"] = f["sha256"]
                        result.kinds.update(counted(d).counts)
                    add(group, result, statuses)
                result.status = _file_status(statuses)
                result.warnings = load_report.warnings
                result.low_confidence_pages = load_report.low_confidence_pages
            except LoadError as exc:
                result.status, result.reason, result.error = "failed", exc.reason, str(exc)
            except FileNotFoundError:
                result.status, result.reason = "failed", "missing"
                result.error = f"{f['source']}: the uploaded file is gone from the server"
            except (JobInterrupted, KeyboardInterrupt):
                raise
            except Exception as exc:  # a loader bug must not fail the other files
                result.status, result.reason = "failed", "error"
                result.error = f"{f['source']}: {exc.__class__.__name__}: {exc}"
            report.files.append(result)
            progress.files_done += 1
            on_progress(progress)
    else:
        docs_in = job.payload["documents"]
        progress.files_total = len(docs_in)
        built = (Document(source=d["source"], text=d["text"], title=d.get("title") or "",
                          metadata={**(d.get("metadata") or {}),
                                    **({"readers": d["readers"]} if d.get("readers") is not None else {})},
                          spans=markdown_spans(d["text"]))
                 for d in docs_in)
        for docs in _groups(built, DOCUMENTS_PER_COMMIT):
            result, statuses = FileResult(docs[0].source, "new"), list[str]()
            add(docs, result, statuses)
            report.files.extend(FileResult(d.source, st, documents=1) for d, st in zip(docs, statuses, strict=False))
            progress.files_done += len(docs)
            on_progress(progress)
    progress.current = ""
    on_progress(progress)
    report.seconds = time.perf_counter() - started
    out = report.to_dict()
    out["documents"] = progress.documents
    return out
