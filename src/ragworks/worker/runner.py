"""JobRunner: what a Celery worker process does with one "run job <id> of tenant <t>" message.

Claim the job with a lease and an owner token (renewed by a heartbeat thread while it runs), open the tenant's
collection, run the same `run_ingest_job` the embedded queue runs, record the outcome. A message for a job another
live worker holds asks to be retried once that lease could have expired; a finished or cancelled job is
acknowledged as is. A worker whose lease lapsed and was taken over (e.g. cut off from the database for longer than
the lease) notices at its next renewal or progress write, stops, and leaves the outcome to the new owner.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.embed.base import Embedder
from ragworks.errors import JobNotFound, RagworksError
from ragworks.jobs.base import JobProgress, JobState
from ragworks.jobs.distributed import JobTableLike, JobTables
from ragworks.jobs.ingest import JobInterrupted, run_ingest_job
from ragworks.tenancy import tenant_for

log = logging.getLogger("ragworks.worker")


LEASE_LOST = "lost"  # Outcome.state of a run that stopped because another worker took the job over
_LEASE_LOST_REASON = "lease lost"


@dataclass(frozen=True, slots=True)
class Outcome:
    state: str  # a JobState value, "missing", or LEASE_LOST
    retry_in_s: float | None = None  # another worker holds the job: look again after this long


class _Heartbeat:
    """Renews a job's lease every third of it until stopped; sets `lost` once the claim no longer holds."""

    def __init__(self, table: JobTableLike, job_id: str, lease_s: float, owner: str) -> None:
        self._table, self._job_id, self._lease_s, self._owner = table, job_id, lease_s, owner
        self._stop = threading.Event()
        self.lost = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id[:8]}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._lease_s / 3):
            try:
                renewed = self._table.renew(self._job_id, self._lease_s, self._owner)
            except Exception:  # a database blip must not kill the job; the next beat retries
                log.warning("could not renew the lease of job %s", self._job_id, exc_info=True)
                continue
            if not renewed:
                log.warning("job %s: lease lost to another worker; stopping at the next group", self._job_id)
                self.lost.set()
                return

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
            owner = table.claim(job_id, self.lease_s)
            job = table.get(job_id)
        except JobNotFound:
            log.warning("job %s of tenant %s is not in the job table; dropping its message", job_id, tenant_name)
            return Outcome("missing")
        if owner is None:
            if job.state.finished:
                return Outcome(job.state.value)
            # under half the visibility timeout, so Redis never redelivers the waiting retry message itself
            wait = min(table.lease_left(job_id) + 1.0, max(self.lease_s / 2, 0.5))
            return Outcome(job.state.value, retry_in_s=wait)
        if job.attempts > self.settings.job_max_attempts:
            table.finish(job_id, JobState.FAILED, error=f"gave up after {self.settings.job_max_attempts} attempts: "
                                                        "the worker died during each", owner=owner)
            return Outcome(JobState.FAILED.value)
        if job.attempts > 1:
            log.info("job %s: attempt %d (a previous worker died)", job_id, job.attempts)
        with _Heartbeat(table, job_id, self.lease_s, owner) as heartbeat:
            result = self._execute(table, tenant_name, job, owner, heartbeat.lost)
        if result is None or not table.finish(job_id, result[0], report=result[1], error=result[2], owner=owner):
            # the new owner runs the job and records its outcome; ours must not overwrite it
            log.warning("job %s: another worker took it over; this run's outcome is dropped", job_id)
            return Outcome(LEASE_LOST)
        return Outcome(result[0].value)

    def _execute(self, table: JobTableLike, tenant_name: str, job: Any, owner: str, lost: threading.Event
                 ) -> tuple[JobState, dict[str, Any] | None, str] | None:
        """Run the job; its (state, report, error), or None when the lease was lost on the way."""
        tenant = tenant_for(self.settings, tenant_name)
        try:
            col = Collection.open(str(tenant.collection_dir(job.collection)), settings=self.settings, create=False,
                                  embedder=self.embedder(), llm=None, tenant=tenant.name)
        except RagworksError as exc:
            return JobState.FAILED, None, str(exc)

        def on_progress(p: JobProgress) -> None:
            try:
                owned = table.set_progress(job.id, p, owner=owner)
            except Exception:  # progress is best effort: a database blip must not fail the job
                log.warning("could not record the progress of job %s", job.id, exc_info=True)
                owned = True
            if lost.is_set() or not owned:
                raise JobInterrupted(_LEASE_LOST_REASON)

        def check() -> None:
            if lost.is_set():
                raise JobInterrupted(_LEASE_LOST_REASON)
            if table.cancel_requested(job.id):
                raise JobInterrupted("cancelled")

        try:
            return JobState.COMPLETED, run_ingest_job(job, col, on_progress=on_progress, check=check), ""
        except JobInterrupted as exc:
            return None if exc.reason == _LEASE_LOST_REASON else (JobState.CANCELLED, None, "")
        except RagworksError as exc:
            return JobState.FAILED, None, str(exc)
        except Exception as exc:
            log.exception("job %s failed", job.id)
            return JobState.FAILED, None, f"internal error: {exc.__class__.__name__}: {exc}"
        finally:
            col.close()
