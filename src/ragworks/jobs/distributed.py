"""CeleryJobQueue: jobs recorded in a shared table and executed by Celery workers over Redis.

The job table is the truth, shared by every API replica and worker: PostgreSQL (`<schema>.jobs`) when
store_backend = "postgres", else each tenant's SQLite `jobs.sqlite3` (API and workers on one machine, or a
shared volume). A Celery message only says "run job <id> of tenant <t>"; its task id is the job id.

Delivery is at-least-once (acks_late + reject_on_worker_lost, see ragworks.jobs.celery_app), so a worker *claims* a
job with a lease it renews while running; a redelivered message for a job whose lease is still fresh waits and
retries, one whose lease expired (its worker was killed) takes the job over and re-runs it. Re-running is
harmless: ingestion skips documents already stored by content hash and writes each batch atomically.

A message can also be lost outright (the API died between recording the job and sending it; Redis restarted
without persistence). The API therefore re-sends, at start and every lease interval, the message of each
unfinished job that no worker holds and that the broker does not have (`CeleryJobQueue.resend_lost`); a
duplicate message is dropped by the claim, so this never runs a job twice at once.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from ragworks.config import Settings
from ragworks.errors import JobNotFound, QueueUnavailable
from ragworks.jobs.base import IngestTotals, Job, JobKind, JobProgress, JobState
from ragworks.jobs.embedded import JobObserver
from ragworks.jobs.table import JobTable
from ragworks.tenancy import Tenant

log = logging.getLogger("ragworks.jobs")

INGEST_TASK = "ragworks.ingest_job"
_BROKER_CHECK_S = 5.0
_WORKERS_CHECK_S = 5.0
# a job younger than this may be between its INSERT and its send (publish retries take up to ~4 s)
RESEND_GRACE_S = 10.0
_RESEND_LOCK_KEY = "ragworks:jobs:resend-sweep"  # one API replica sweeps per interval
_SCAN_PAGE = 1000


class JobTableLike(Protocol):
    """What JobTable (SQLite) and PostgresJobTable have in common."""

    def insert(self, collection: str, kind: JobKind, payload: dict[str, Any], progress: JobProgress) -> Job: ...
    def get(self, job_id: str) -> Job: ...
    def recent(self, collection: str | None = None, *, limit: int = 50) -> list[Job]: ...
    def count_unfinished(self) -> int: ...
    def count_leased(self) -> int: ...
    def ingest_totals(self) -> IngestTotals: ...
    def orphans(self, created_before: float) -> list[str]: ...
    def claim(self, job_id: str, lease_s: float) -> str | None: ...
    def renew(self, job_id: str, lease_s: float, owner: str) -> bool: ...
    def lease_left(self, job_id: str) -> float: ...
    def requeue(self, job_id: str, *, graceful: bool = False) -> None: ...
    def set_progress(self, job_id: str, progress: JobProgress, *, owner: str | None = None) -> bool: ...
    def finish(self, job_id: str, state: JobState, *, progress: JobProgress | None = None,
               report: dict[str, Any] | None = None, error: str = "", owner: str | None = None) -> bool: ...
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
        from ragworks.store.catalog import postgres_pool

        return postgres_pool(self.settings)

    def get(self, tenant: Tenant, *, create: bool = True) -> JobTableLike | None:
        """The tenant's table; None when it has none yet and `create` is False (SQLite only)."""
        with self._lock:
            table = self._tables.get(tenant.name)
            if table is not None:
                return table
            if self.postgres:
                from ragworks.jobs.pgtable import PostgresJobTable

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
            from ragworks.jobs.pgtable import count_unfinished_jobs

            return count_unfinished_jobs(self._pool(), self.settings.postgres_schema)
        total = 0
        for tenant in tenants:
            table = self.get(tenant, create=False)
            total += table.count_unfinished() if table is not None else 0
        return total

    def leased(self, tenants: Iterable[Tenant]) -> int:
        """Running jobs with a live lease, all tenants."""
        if self.postgres:
            from ragworks.jobs.pgtable import count_leased_jobs

            return count_leased_jobs(self._pool(), self.settings.postgres_schema)
        tables = (self.get(tenant, create=False) for tenant in tenants)
        return sum(table.count_leased() for table in tables if table is not None)

    def totals(self, tenants: Iterable[Tenant]) -> IngestTotals:
        """Ingest counters summed over every tenant's jobs."""
        if self.postgres:
            from ragworks.jobs.pgtable import job_totals

            return job_totals(self._pool(), self.settings.postgres_schema)
        total = IngestTotals()
        for tenant in tenants:
            table = self.get(tenant, create=False)
            if table is not None:
                total.add(table.ingest_totals())
        return total

    def orphans(self, tenants: Iterable[Tenant], created_before: float) -> list[tuple[str, str]]:
        """(tenant, job id) of unfinished jobs no worker holds, all tenants (see JobTable.orphans)."""
        if self.postgres:
            from ragworks.jobs.pgtable import orphaned_jobs

            return orphaned_jobs(self._pool(), self.settings.postgres_schema, created_before)
        found: list[tuple[str, str]] = []
        for tenant in tenants:
            table = self.get(tenant, create=False)
            if table is not None:
                found.extend((tenant.name, job_id) for job_id in table.orphans(created_before))
        return found

    def close(self) -> None:
        with self._lock:
            for table in self._tables.values():
                table.close()
            self._tables.clear()


def _message_task_id(raw: bytes | str) -> str | None:
    """The Celery task id of one message as kombu's Redis transport stores it (None when unreadable)."""
    try:
        message = json.loads(raw)
    except ValueError:
        return None
    if isinstance(message, list) and message:  # the unacked hash stores [message, exchange, routing key]
        message = message[0]
    if not isinstance(message, dict):
        return None
    task_id = (message.get("headers") or {}).get("id") or (message.get("properties") or {}).get("correlation_id")
    return str(task_id) if task_id else None


def broker_task_ids(client: Any, queues: Iterable[str], *, prefix: str = "") -> set[str]:
    """Task ids of every message the Redis broker holds: waiting in a queue (any priority) or delivered and not
    yet acknowledged (kombu's `unacked` hash, which also holds countdown retries a worker keeps until due)."""
    from kombu.transport.redis import PRIORITY_STEPS, Channel

    ids: set[str] = set()
    for queue in queues:
        for pri in PRIORITY_STEPS:  # kombu keeps one list per priority step: "<queue>" and "<queue>\x06\x16<n>"
            key = f"{prefix}{queue}{Channel.sep}{pri}" if pri else f"{prefix}{queue}"
            start = 0
            while batch := client.lrange(key, start, start + _SCAN_PAGE - 1):
                ids.update(i for i in map(_message_task_id, batch) if i)
                start += len(batch)
    for _, raw in client.hscan_iter(f"{prefix}{Channel.unacked_key}", count=_SCAN_PAGE):
        task_id = _message_task_id(raw)
        if task_id:
            ids.add(task_id)
    return ids


class CeleryJobQueue:
    """The JobQueue protocol over Celery: the API records and enqueues; `ragworks worker` processes run jobs."""

    def __init__(self, settings: Settings, tenants: Callable[[], Iterable[Tenant]], *,
                 observer: JobObserver | None = None) -> None:
        from ragworks.jobs.celery_app import make_celery

        self.settings = settings
        self._tenants = tenants
        self.tables = JobTables(settings)
        self.celery = make_celery(settings)
        self._broker_ok: tuple[float, bool] = (0.0, False)
        self._workers_ok: tuple[float, bool] = (0.0, False)
        self._workers_lock = threading.Lock()
        if observer is not None:  # workers progress in other processes: the metrics read the shared table
            observer.count_from(self.ingest_totals)
        self._stopping = threading.Event()
        self._sweeper: threading.Thread | None = None

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
            raise QueueUnavailable(f"the job queue (Redis at {self._broker()}) is unreachable: {exc}; "
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

    @property
    def sweep_interval_s(self) -> float:
        """How often lost messages are looked for: once per lease (a held job's lease is renewed within it)."""
        return float(self.settings.celery_visibility_timeout_s)

    def _redis(self) -> Any:
        import redis

        return redis.Redis.from_url(self.settings.redis_url, socket_timeout=5.0, socket_connect_timeout=2.0)

    def resend_lost(self, *, grace_s: float = RESEND_GRACE_S) -> list[str]:
        """Re-send the message of every unfinished job that no worker holds and the broker does not have (older
        than `grace_s`, so a job being submitted right now is left alone); returns their ids."""
        if not self.tables.orphans(self._tenants(), time.time() - grace_s):
            return []  # the usual case: every unfinished job is held by a worker, no broker scan needed
        conf = self.celery.conf
        client = self._redis()
        try:
            held = broker_task_ids(client, [conf.task_default_queue],
                                   prefix=(conf.broker_transport_options or {}).get("global_keyprefix", ""))
        finally:
            client.close()
        # the table again after the scan: a job whose message a worker took meanwhile is leased by now (a rare
        # duplicate, taken but not yet claimed, is dropped by the claim)
        lost = [(t, j) for t, j in self.tables.orphans(self._tenants(), time.time() - grace_s) if j not in held]
        for tenant, job_id in lost:
            self.celery.send_task(INGEST_TASK, args=[tenant, job_id], task_id=job_id)
        if lost:
            log.warning("re-sent %d job message(s) the broker had lost (first: %s)", len(lost),
                        ", ".join(j for _, j in lost[:5]))
        return [j for _, j in lost]

    def _sweep(self, *, exclusive: bool) -> None:
        """One resend_lost pass; `exclusive`: skip it when another API replica swept during this interval."""
        try:
            if exclusive:
                client = self._redis()
                try:
                    ttl = max(1, int(self.sweep_interval_s * 0.9))
                    if not client.set(_RESEND_LOCK_KEY, "1", nx=True, ex=ttl):
                        return
                finally:
                    client.close()
            self.resend_lost()
        except Exception:  # Redis or the database is down: the next interval tries again
            log.warning("could not look for lost job messages; retrying in %.0f s", self.sweep_interval_s,
                        exc_info=True)

    def _sweep_loop(self) -> None:
        self._sweep(exclusive=False)  # at start: whatever a crashed API or a restarted Redis lost
        while not self._stopping.wait(self.sweep_interval_s):
            self._sweep(exclusive=True)

    def ingest_totals(self) -> IngestTotals:
        """What every worker ingested, from the shared job table (the /metrics ingest counters)."""
        return self.tables.totals(self._tenants())

    def workers(self) -> bool | None:
        """Whether a Celery worker is alive: one answers a remote-control ping within a second, or a job has a live
        lease (a solo-pool worker busy with a job cannot answer pings). Checked at most every few seconds."""
        with self._workers_lock:
            checked, ok = self._workers_ok
            if checked and time.monotonic() - checked < _WORKERS_CHECK_S:
                return ok
            ok = False
            if self.alive:  # no broker, no ping (and no waiting for its connection timeout)
                try:
                    ok = bool(self.celery.control.ping(timeout=1.0, limit=1))
                except Exception:  # kombu raises transport-specific errors
                    log.warning("could not ping the Celery workers", exc_info=True)
            if not ok:
                try:
                    ok = self.tables.leased(self._tenants()) > 0
                except Exception:  # the database is down: the jobs check says so elsewhere
                    log.warning("could not read job leases", exc_info=True)
            self._workers_ok = (time.monotonic(), ok)
            return ok

    def start(self) -> None:
        """Re-send lost job messages now and every lease interval, in a background thread. Unacknowledged messages
        need nothing: Redis redelivers them to workers."""
        self._stopping.clear()
        self._sweeper = threading.Thread(target=self._sweep_loop, name="ragworks-job-resend", daemon=True)
        self._sweeper.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stopping.set()
        if self._sweeper is not None:
            self._sweeper.join(min(timeout_s, 10.0))
        self.tables.close()
        self.celery.close()
