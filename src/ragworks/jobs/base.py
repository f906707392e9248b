"""Ingestion jobs: what a job is, and the JobQueue protocol the routes use.

`EmbeddedJobQueue` (jobs/embedded.py) runs jobs in a worker thread of the server from a SQLite table;
`CeleryJobQueue` (jobs/distributed.py) runs them in Celery workers; `make_job_queue` picks by settings.queue_backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from ragworks.ingest.report import Progress
from ragworks.tenancy import Tenant


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"  # ran to the end; files that failed to load are listed in the report
    FAILED = "failed"  # the job itself failed (its error says why)
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)


class JobKind(StrEnum):
    FILES = "files"  # uploaded files, stored under the collection's uploads/
    DOCUMENTS = "documents"  # JSON text documents, kept in the job's payload
    SYNC = "sync"  # the collection's configured sources, run once (ragworks.jobs.sync)


# A job's progress is the ingest pipeline's: `to_dict` is what the job API shows and the job tables store.
JobProgress = Progress


@dataclass(slots=True)
class Job:
    id: str
    collection: str
    kind: JobKind
    state: JobState
    payload: dict[str, Any]
    created: float
    progress: JobProgress = field(default_factory=JobProgress)
    started: float | None = None
    finished: float | None = None
    attempts: int = 0
    cancel_requested: bool = False
    report: dict[str, Any] | None = None
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The job as the API shows it (the payload's file list, never its document texts)."""
        files = [{"source": f["source"], "size": f["size"], "sha256": f["sha256"]}
                 for f in self.payload.get("files", [])]
        return {
            "id": self.id,
            "collection": self.collection,
            "kind": self.kind.value,
            "state": self.state.value,
            "progress": self.progress.to_dict(),
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "attempts": self.attempts,
            "cancel_requested": self.cancel_requested,
            "report": self.report,
            "error": self.error,
            "files": files,
        }


@dataclass(slots=True)
class IngestTotals:
    """Ingest counters summed over a job table: what workers in other processes did (the /metrics counters).

    A re-run job's progress restarts from zero, so a sum can drop; Prometheus reads that as a counter reset."""

    files: int = 0
    documents: int = 0
    chunks: int = 0
    finished: dict[str, int] = field(default_factory=dict)  # final state -> jobs

    def add(self, other: IngestTotals) -> None:
        self.files += other.files
        self.documents += other.documents
        self.chunks += other.chunks
        for state, n in other.finished.items():
            self.finished[state] = self.finished.get(state, 0) + n


class JobQueue(Protocol):
    """Submits ingestion jobs and reports on them. Every call is scoped to one tenant."""

    def submit(self, tenant: Tenant, collection: str, kind: JobKind, payload: dict[str, Any]) -> Job:
        """Persist a job as queued and schedule it; returns at once."""
        ...

    def status(self, tenant: Tenant, job_id: str) -> Job:
        """The job, or JobNotFound (also when it belongs to another tenant)."""
        ...

    def cancel(self, tenant: Tenant, job_id: str) -> Job:
        """Cancel a queued job now, a running one at its next file; a finished job is returned unchanged."""
        ...

    def cancel_collection(self, tenant: Tenant, collection: str) -> None:
        """The collection is being deleted: cancel its queued jobs, stop its running one."""
        ...

    def list_jobs(self, tenant: Tenant, collection: str | None = None, *, limit: int = 50) -> list[Job]: ...

    def wait(self, tenant: Tenant, job_id: str, timeout_s: float) -> Job:
        """The job once finished, or as it is after `timeout_s`."""
        ...

    def depth(self) -> int:
        """Jobs queued or running (the queue-depth gauge)."""
        ...

    @property
    def alive(self) -> bool:
        """Whether jobs are being worked on (the readiness probe)."""
        ...

    def workers(self) -> bool | None:
        """Whether a worker process is alive to run jobs (may block ~1 s); None when jobs run in this process."""
        ...

    def start(self) -> None:
        """Start working, resuming jobs left unfinished by a previous run."""
        ...

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop after the current file; an interrupted job stays queued and resumes at the next start."""
        ...
