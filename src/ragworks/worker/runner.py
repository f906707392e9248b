"""JobRunner: what a Celery worker process does with one "run job <id> of tenant <t>" message.

Claim the job with a lease (renewed by a heartbeat thread while it runs), open the tenant's collection, run the
same `run_ingest_job` the embedded queue runs, record the outcome. A message for a job another live worker holds
asks to be retried once that lease could have expired; a finished or cancelled job is acknowledged as is.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.embed.base import Embedder
from ragworks.errors import RagworksError
from ragworks.server.errors import JobNotFound
from ragworks.server.jobs.base import JobProgress, JobState
from ragworks.server.jobs.distributed import JobTableLike, JobTables
from ragworks.server.jobs.ingest import JobInterrupted, run_ingest_job
from ragworks.server.tenants import tenant_for

log = logging.getLogger("ragworks.worker")


@dataclass(frozen=True, slots=True)
class Outcome:
    state: str  # a JobState value, or "missing"
    retry_in_s: float | None = None  # another worker holds the job: look again after this long


class _Heartbeat:
    """Renews a job's lease every third of it until stopped."""

    def __init__(self, table: JobTableLike, job_id: str, lease_s: float) -> None:
        self._table, self._job_id, self._lease_s = table, job_id, lease_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id[:8]}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._lease_s / 3):
            try:
                self._table.renew(self._job_id, self._lease_s)
            except Exception:  # a database blip must not kill the job; the next beat retries
                log.warning("could not renew the lease of job %s", self._job_id, exc_info=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


class JobRunner:
    """Runs ingestion jobs in a worker process; one per process (the embedder loads on the first job)."""

    def __init__(self, settings: Settings, *, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self.tables = JobTables(settings)
        self._embedder = embedder
        self._lock = threading.Lock()

    @property
    def lease_s(self) -> float:
        # a job is presumed dead once its lease lapses, just as Redis presumes its message lost
        return float(self.settings.celery_visibility_timeout_s)

    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                from ragworks.embed import make_embedder

                self._embedder = make_embedder(self.settings)
            return self._embedder

    def run(self, tenant_name: str, job_id: str) -> Outcome:
        tenant = tenant_for(self.settings, tenant_name)
        table = self.tables.get(tenant)
        assert table is not None
        try:
            claimed = table.claim(job_id, self.lease_s)
            job = table.get(job_id)
        except JobNotFound:
            log.warning("job %s of tenant %s is not in the job table; dropping its message", job_id, tenant_name)
            return Outcome("missing")
        if not claimed:
            if job.state.finished:
                return Outcome(job.state.value)
            # under half the visibility timeout, so Redis never redelivers the waiting retry message itself
            wait = min(table.lease_left(job_id) + 1.0, max(self.lease_s / 2, 0.5))
            return Outcome(job.state.value, retry_in_s=wait)
        if job.attempts > self.settings.job_max_attempts:
            table.finish(job_id, JobState.FAILED, error=f"gave up after {self.settings.job_max_attempts} attempts: "
                                                        "the worker died during each")
            return Outcome(JobState.FAILED.value)
        if job.attempts > 1:
            log.info("job %s: attempt %d (a previous worker died)", job_id, job.attempts)
        with _Heartbeat(table, job_id, self.lease_s):
            state, report, error = self._execute(table, tenant_name, job)
        table.finish(job_id, state, report=report, error=error)
        return Outcome(state.value)

    def _execute(self, table: JobTableLike, tenant_name: str, job: Any
                 ) -> tuple[JobState, dict[str, Any] | None, str]:
        tenant = tenant_for(self.settings, tenant_name)
        try:
            col = Collection.open(str(tenant.collection_dir(job.collection)), settings=self.settings, create=False,
                                  embedder=self.embedder(), llm=None, tenant=tenant.name)
        except RagworksError as exc:
            return JobState.FAILED, None, str(exc)

        def on_progress(p: JobProgress) -> None:
            table.set_progress(job.id, p)

        def check() -> None:
            if table.cancel_requested(job.id):
                raise JobInterrupted("cancelled")

        try:
            return JobState.COMPLETED, run_ingest_job(job, col, on_progress=on_progress, check=check), ""
        except JobInterrupted:
            return JobState.CANCELLED, None, ""
        except RagworksError as exc:
            return JobState.FAILED, None, str(exc)
        except Exception as exc:
            log.exception("job %s failed", job.id)
            return JobState.FAILED, None, f"internal error: {exc.__class__.__name__}: {exc}"
        finally:
            col.close()
