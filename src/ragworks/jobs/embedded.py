"""EmbeddedJobQueue: jobs run by a worker thread inside the server, from each tenant's SQLite job table.

The table is the truth; the in-memory queue only orders the work. `start()` re-queues every job a previous
server left queued or running, so a restart (graceful or `kill -9`) resumes them. A graceful `stop()` lets the
current job stop between two groups of documents and puts it back to queued.

Server processes on one data directory (`ragworks serve --workers N`, or two servers started on it) elect the one
that runs jobs by an exclusive `flock` on `runner_lock`: it recovers leftovers when it wins and picks up jobs the
other processes recorded by scanning the tables when they signal one (they touch `<runner_lock>.pending`, whose
mtime the runner checks twice a second; a full scan every 30 s backs that up); the others only record jobs and read
their state. If the runner dies its lock is released and another process takes over (a running job left behind is
re-queued). Without the election a second server would re-queue the first one's running jobs as leftovers.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ragworks.collection import Collection
from ragworks.errors import JobNotFound, RagworksError
from ragworks.jobs.base import IngestTotals, Job, JobKind, JobProgress, JobState
from ragworks.jobs.ingest import JobInterrupted, run_ingest_job
from ragworks.jobs.table import JobTable
from ragworks.tenancy import Tenant

log = logging.getLogger("ragworks.jobs")
ELECTION_INTERVAL_S = 1.0  # how often a non-runner process tries to become the runner
SCAN_INTERVAL_S = 0.5  # how often the runner checks whether other processes recorded jobs
FULL_SCAN_INTERVAL_S = 30.0  # and scans the tables regardless (a missed signal costs at most this)


class JobObserver:
    """Hooks for metrics; the default does nothing."""

    def progressed(self, files: int, documents: int, chunks: int) -> None: ...

    def finished(self, state: JobState) -> None: ...

    def synced(self, counts: dict[str, int]) -> None:
        """A sync job's items seen, changed, deleted and failed."""

    def count_from(self, totals: Callable[[], IngestTotals]) -> None:
        """Jobs run in other processes (Celery workers): read the ingest counters from `totals` when scraped."""


class EmbeddedJobQueue:
    """In-process job runner (one worker thread: embedding is the bottleneck and is serialized anyway).

    Jobs write through the same open `Collection` that serves searches (`open_collection`, which owns it): the
    store holds its lock only for each commit, and readers see new vectors without reloading the index file.
    """

    def __init__(
        self,
        open_collection: Callable[[Tenant, str], Collection],
        tenants: Callable[[], Iterable[Tenant]],
        *,
        max_attempts: int = 3,
        observer: JobObserver | None = None,
        runner_lock: Path | None = None,
    ) -> None:
        self._open_collection = open_collection
        self._runner_lock = runner_lock
        self._is_runner = runner_lock is None
        self._pending = runner_lock.with_name(runner_lock.name + ".pending") if runner_lock is not None else None
        self._seen: set[str] = set()  # job ids put on the in-memory queue (scans skip them)
        self._tenants = tenants
        self.max_attempts = max_attempts
        self.observer = observer or JobObserver()
        self._tables: dict[Path, JobTable] = {}
        self._tables_lock = threading.Lock()
        self._queue: queue.Queue[tuple[Tenant, str]] = queue.Queue()
        self._stopping = threading.Event()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._running: str | None = None

    # --- tables

    def _table(self, tenant: Tenant, *, create: bool = True) -> JobTable | None:
        with self._tables_lock:
            table = self._tables.get(tenant.root)
            if table is None:
                if not create and not tenant.jobs_db.exists():
                    return None
                table = self._tables[tenant.root] = JobTable(tenant.jobs_db)
            return table

    def _existing_table(self, tenant: Tenant, job_id: str) -> JobTable:
        table = self._table(tenant, create=False)
        if table is None:
            raise JobNotFound(f"no job {job_id!r}")
        return table

    # --- the JobQueue protocol

    def submit(self, tenant: Tenant, collection: str, kind: JobKind, payload: dict[str, Any]) -> Job:
        table = self._table(tenant)
        assert table is not None
        total = len(payload.get("files") or payload.get("documents") or [])
        job = table.insert(collection, kind, payload, JobProgress(files_total=total))
        if self._is_runner:
            self._enqueue(tenant, job.id)
        elif self._pending is not None:  # the runner process finds it in the table at its next scan
            self._pending.touch()  # creates it, or sets its mtime to now
        return job

    def status(self, tenant: Tenant, job_id: str) -> Job:
        return self._existing_table(tenant, job_id).get(job_id)

    def cancel(self, tenant: Tenant, job_id: str) -> Job:
        job = self._existing_table(tenant, job_id).request_cancel(job_id)
        if job.state is JobState.CANCELLED:
            self._notify()
        return job

    def cancel_collection(self, tenant: Tenant, collection: str) -> None:
        table = self._table(tenant, create=False)
        if table is not None:
            table.cancel_collection(collection)

    def list_jobs(self, tenant: Tenant, collection: str | None = None, *, limit: int = 50) -> list[Job]:
        table = self._table(tenant, create=False)
        return table.recent(collection, limit=limit) if table is not None else []

    def wait(self, tenant: Tenant, job_id: str, timeout_s: float) -> Job:
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.status(tenant, job_id)
            left = deadline - time.monotonic()
            if job.state.finished or left <= 0:
                return job
            with self._changed:
                self._changed.wait(min(left, 0.25))

    def depth(self) -> int:
        """Jobs queued or running in the tenants' tables (every process's, whichever runs them)."""
        total = 0
        for tenant in self._tenants():
            table = self._table(tenant, create=False)
            if table is not None:
                total += table.count_unfinished()
        return total

    def start(self) -> None:
        """Start the worker: at once, or (with `runner_lock`) once this process wins the runner election."""
        self._stopping.clear()
        target = self._work if self._runner_lock is None else self._elect_then_work
        self._thread = threading.Thread(target=target, name="ragworks-jobs", daemon=True)
        self._thread.start()

    def _elect_then_work(self) -> None:
        assert self._runner_lock is not None
        self._runner_lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._runner_lock, os.O_RDWR | os.O_CREAT, 0o644)
        while not self._stopping.is_set():
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                self._stopping.wait(ELECTION_INTERVAL_S)
        else:
            os.close(fd)
            return
        self._is_runner = True
        log.info("this server process (pid %d) runs the ingestion jobs", os.getpid())
        try:
            self._work()
        finally:
            self._is_runner = False
            os.close(fd)  # releases the lock: another process takes over

    def _enqueue(self, tenant: Tenant, job_id: str) -> None:
        self._seen.add(job_id)
        self._queue.put((tenant, job_id))

    def _recover(self) -> None:
        """Re-queue what a previous run left unfinished (oldest first)."""
        leftovers: list[tuple[float, Tenant, str]] = []
        for tenant in self._tenants():
            table = self._table(tenant, create=False)
            if table is None:
                continue
            for job in table.unfinished():
                if job.state is JobState.RUNNING:  # its server died mid-run
                    table.requeue(job.id)
                leftovers.append((job.created, tenant, job.id))
        for _, tenant, job_id in sorted(leftovers, key=lambda x: x[0]):
            self._enqueue(tenant, job_id)
        if leftovers:
            log.info("resuming %d unfinished job(s)", len(leftovers))

    def _scan(self) -> None:
        """Queue jobs other server processes recorded (only the runner of several does this)."""
        found: list[tuple[float, Tenant, str]] = []
        for tenant in self._tenants():
            table = self._table(tenant, create=False)
            if table is not None:
                found += [(j.created, tenant, j.id) for j in table.unfinished()
                          if j.state is JobState.QUEUED and j.id not in self._seen]
        for _, tenant, job_id in sorted(found, key=lambda x: x[0]):
            self._enqueue(tenant, job_id)

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("job worker still busy after %.0f s; its job resumes at the next start", timeout_s)
        with self._tables_lock:
            if self._thread is None or not self._thread.is_alive():
                for table in self._tables.values():
                    table.close()
                self._tables.clear()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def workers(self) -> bool | None:
        return None  # the worker is this process's thread: `alive` covers it

    # --- the worker

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def _pending_mark(self) -> int:
        try:
            return os.stat(self._pending).st_mtime_ns if self._pending is not None else 0
        except FileNotFoundError:
            return 0

    def _work(self) -> None:
        mark = self._pending_mark()
        self._recover()
        last_check = last_scan = time.monotonic()
        while not self._stopping.is_set():
            now = time.monotonic()
            if self._runner_lock is not None and now - last_check >= SCAN_INTERVAL_S:
                last_check = now
                seen, mark = mark, self._pending_mark()
                if mark != seen or now - last_scan >= FULL_SCAN_INTERVAL_S:
                    last_scan = now
                    with contextlib.suppress(Exception):  # a scan failing now is retried at the next one
                        self._scan()
            try:
                tenant, job_id = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._run(tenant, job_id)
            except Exception:  # the worker must survive anything one job does
                log.exception("job %s crashed the worker loop", job_id)
            finally:
                self._running = None
                self._seen.discard(job_id)
                self._notify()

    def _run(self, tenant: Tenant, job_id: str) -> None:
        table = self._table(tenant)
        assert table is not None
        if not table.mark_running(job_id):
            return  # cancelled while queued, or already handled
        self._running = job_id
        job = table.get(job_id)
        if job.attempts > self.max_attempts:
            self._finish(table, job, JobState.FAILED,
                         error=f"gave up after {self.max_attempts} attempts: the server stopped during each")
            return
        try:
            col = self._open_collection(tenant, job.collection)
        except RagworksError as exc:
            self._finish(table, job, JobState.FAILED, error=str(exc))
            return
        last = JobProgress()

        def on_progress(p: JobProgress) -> None:
            self.observer.progressed(max(p.files_done - last.files_done, 0), max(p.documents - last.documents, 0),
                                     max(p.chunks_written - last.chunks_written, 0))
            last.files_done, last.documents, last.chunks_written = p.files_done, p.documents, p.chunks_written
            table.set_progress(job_id, p)
            self._notify()

        def check() -> None:
            if self._stopping.is_set():
                raise JobInterrupted("stopping")
            if table.cancel_requested(job_id):
                raise JobInterrupted("cancelled")

        try:
            report = run_ingest_job(job, col, on_progress=on_progress, check=check)
            self._finish(table, job, JobState.COMPLETED, report=report)
        except JobInterrupted as exc:
            if exc.reason == "cancelled":
                self._finish(table, job, JobState.CANCELLED)
            else:
                table.requeue(job_id, graceful=True)
                log.info("job %s interrupted by shutdown; it resumes at the next start", job_id)
        except RagworksError as exc:
            self._finish(table, job, JobState.FAILED, error=str(exc))
        except Exception as exc:
            log.exception("job %s failed", job_id)
            self._finish(table, job, JobState.FAILED, error=f"internal error: {exc.__class__.__name__}: {exc}")

    def _finish(self, table: JobTable, job: Job, state: JobState, *, report: dict[str, Any] | None = None,
                error: str = "") -> None:
        table.finish(job.id, state, report=report, error=error)
        self.observer.finished(state)
        if report and isinstance(report.get("sync"), dict):
            self.observer.synced(report["sync"])
