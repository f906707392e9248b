"""CeleryJobQueue: jobs recorded in a shared table and executed by Celery workers over Redis.

The job table is the truth, shared by every API replica and worker: PostgreSQL (`<schema>.jobs`) when
store_backend = "postgres", else each tenant's SQLite `jobs.sqlite3` (API and workers on one machine, or a
shared volume). A Celery message only says "run job <id> of tenant <t>"; its task id is the job id.

Delivery is at-least-once (acks_late + reject_on_worker_lost, see ragworks.worker.app), so a worker *claims* a
job with a lease it renews while running; a redelivered message for a job whose lease is still fresh waits and
retries, one whose lease expired (its worker was killed) takes the job over and re-runs it. Re-running is
harmless: ingestion skips documents already stored by content hash and writes each batch atomically.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from ragworks.config import Settings
from ragworks.server.errors import JobNotFound, ServiceUnavailable
from ragworks.server.jobs.base import Job, JobKind, JobProgress, JobState
from ragworks.server.jobs.table import JobTable
from ragworks.server.tenants import Tenant

log = logging.getLogger("ragworks.server.jobs")

INGEST_TASK = "ragworks.ingest_job"
_BROKER_CHECK_S = 5.0


class JobTableLike(Protocol):
    """What JobTable (SQLite) and PostgresJobTable have in common."""

    def insert(self, collection: str, kind: JobKind, payload: dict[str, Any], progress: JobProgress) -> Job: ...
    def get(self, job_id: str) -> Job: ...
    def recent(self, collection: str | None = None, *, limit: int = 50) -> list[Job]: ...
    def count_unfinished(self) -> int: ...
    def claim(self, job_id: str, lease_s: float) -> bool: ...
    def renew(self, job_id: str, lease_s: float) -> None: ...
    def lease_left(self, job_id: str) -> float: ...
    def requeue(self, job_id: str, *, graceful: bool = False) -> None: ...
    def set_progress(self, job_id: str, progress: JobProgress) -> None: ...
    def finish(self, job_id: str, state: JobState, *, progress: JobProgress | None = None,
               report: dict[str, Any] | None = None, error: str = "") -> None: ...
    def request_cancel(self, job_id: str) -> Job: ...
    def cancel_requested(self, job_id: str) -> bool: ...
    def cancel_collection(self, collection: str) -> None: ...
    def close(self) -> None: ...


class JobTables:
    """The job table of each tenant, in the backend the settings name (opened on first use, kept open)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.postgres = settings.store_backend == "postgres"
        self._tables: dict[str, JobTableLike] = {}
        self._lock = threading.Lock()

    def _pool(self) -> Any:
        from ragworks.store.postgres import shared_pool

        if self.settings.postgres_dsn is None:
            from ragworks.errors import ConfigError

            raise ConfigError("store_backend = 'postgres' needs postgres_dsn (RAGWORKS_POSTGRES_DSN)")
        return shared_pool(self.settings.postgres_dsn.get_secret_value(), self.settings.postgres_schema)

    def get(self, tenant: Tenant, *, create: bool = True) -> JobTableLike | None:
        """The tenant's table; None when it has none yet and `create` is False (SQLite only)."""
        with self._lock:
            table = self._tables.get(tenant.name)
            if table is not None:
                return table
            if self.postgres:
                from ragworks.server.jobs.pgtable import PostgresJobTable

                table = PostgresJobTable(self._pool(), tenant.name, self.settings.postgres_schema)
            elif not create and not tenant.jobs_db.exists():
                return None
            else:
                table = JobTable(tenant.jobs_db)
            self._tables[tenant.name] = table
            return table

    def existing(self, tenant: Tenant, job_id: str) -> JobTableLike:
        table = self.get(tenant, create=False)
        if table is None:
            raise JobNotFound(f"no job {job_id!r}")
        return table

    def depth(self, tenants: Iterable[Tenant]) -> int:
        """Jobs queued or running, all tenants."""
        if self.postgres:
            from ragworks.server.jobs.pgtable import count_unfinished_jobs

            return count_unfinished_jobs(self._pool(), self.settings.postgres_schema)
        total = 0
        for tenant in tenants:
            table = self.get(tenant, create=False)
            total += table.count_unfinished() if table is not None else 0
        return total

    def close(self) -> None:
        with self._lock:
            for table in self._tables.values():
                table.close()
            self._tables.clear()


class CeleryJobQueue:
    """The JobQueue protocol over Celery: the API records and enqueues; `ragworks worker` processes run jobs."""

    def __init__(self, settings: Settings, tenants: Callable[[], Iterable[Tenant]]) -> None:
        from ragworks.worker.app import make_celery

        self.settings = settings
        self._tenants = tenants
        self.tables = JobTables(settings)
        self.celery = make_celery(settings)
        self._broker_ok: tuple[float, bool] = (0.0, False)

    def _table(self, tenant: Tenant) -> JobTableLike:
        table = self.tables.get(tenant)
        assert table is not None
        return table

    def submit(self, tenant: Tenant, collection: str, kind: JobKind, payload: dict[str, Any]) -> Job:
        total = len(payload.get("files") or payload.get("documents") or [])
        table = self._table(tenant)
        job = table.insert(collection, kind, payload, JobProgress(files_total=total))
        try:
            self.celery.send_task(INGEST_TASK, args=[tenant.name, job.id], task_id=job.id)
        except Exception as exc:  # kombu raises transport-specific errors (redis ConnectionError, OperationalError)
            table.finish(job.id, JobState.FAILED, error=f"could not enqueue: {exc}")
            raise ServiceUnavailable(f"the job queue (Redis at {self._broker()}) is unreachable: {exc}; "
                                     "check that Redis runs and RAGWORKS_REDIS_URL points at it") from exc
        return job

    def _broker(self) -> str:
        url = self.settings.redis_url
        return url.split("@")[-1] if "@" in url else url  # never show a password

    def status(self, tenant: Tenant, job_id: str) -> Job:
        return self.tables.existing(tenant, job_id).get(job_id)

    def cancel(self, tenant: Tenant, job_id: str) -> Job:
        return self.tables.existing(tenant, job_id).request_cancel(job_id)

    def cancel_collection(self, tenant: Tenant, collection: str) -> None:
        table = self.tables.get(tenant, create=False)
        if table is not None:
            table.cancel_collection(collection)

    def list_jobs(self, tenant: Tenant, collection: str | None = None, *, limit: int = 50) -> list[Job]:
        table = self.tables.get(tenant, create=False)
        return table.recent(collection, limit=limit) if table is not None else []

    def wait(self, tenant: Tenant, job_id: str, timeout_s: float) -> Job:
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.status(tenant, job_id)
            left = deadline - time.monotonic()
            if job.state.finished or left <= 0:
                return job
            time.sleep(min(left, 0.2))

    def depth(self) -> int:
        return self.tables.depth(self._tenants())

    @property
    def alive(self) -> bool:
        """Whether the broker answers (checked at most every few seconds); workers are not visible from here."""
        checked, ok = self._broker_ok
        if time.monotonic() - checked < _BROKER_CHECK_S and checked:
            return ok
        import redis

        try:
            client = redis.Redis.from_url(self.settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
            ok = bool(client.ping())
            client.close()
        except redis.RedisError:
            ok = False
        self._broker_ok = (time.monotonic(), ok)
        return ok

    def start(self) -> None:
        """Nothing to resume here: unacknowledged messages stay in Redis and are redelivered to workers."""

    def stop(self, timeout_s: float = 30.0) -> None:
        self.tables.close()
        self.celery.close()
