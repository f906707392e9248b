"""Sync as a server job: `POST /v1/collections/{name}/sync` and the schedule submit `JobKind.SYNC` jobs, which the
job queues (embedded thread or Celery workers) run here — progress in `/v1/jobs`, counts in `/metrics`.

Also `SyncScheduler`: a server thread that submits a sync job for each configured source whose interval has passed,
and for a folder source as soon as a change in it settles (unless a sync of that collection is still unfinished).
Sources are configured by the operator with `ragworks source add` (a tenant's collection directory holds its
`sources.json`); the API only triggers and shows syncs, so no API key can make the server read a path or URL the
operator did not choose.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ragworks.collection import Collection
from ragworks.jobs.base import Job, JobKind, JobProgress, JobQueue
from ragworks.sources.config import SourceList, make_source
from ragworks.sources.sync import SyncOutcome, sync_source
from ragworks.sources.watch import DEBOUNCE_S, observe_folder
from ragworks.tenancy import Tenant

log = logging.getLogger("ragworks.jobs.sync")
SYNC_COUNTS = ("seen", "changed", "deleted", "failed")
TICK_S = 1.0  # how often the schedule looks: a changed folder is synced within about a second of settling
_Key = tuple[str, str, str]  # (tenant, collection, source name)


def run_sync_job(job: Job, collection: Collection, *, on_progress: Callable[[JobProgress], None],
                 check: Callable[[], None], sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Sync the sources named in the payload (all configured ones when it names none); returns the job report.

    `check()` runs at every progress step, so a cancelled job stops within a batch; a source that is unavailable is
    retried twice (1 s, 2 s) and then reported — its documents stay as they were."""
    sources = SourceList(collection.path)
    wanted = job.payload.get("sources") or None
    specs = [s for s in sources.load() if wanted is None or s.name in wanted]
    progress = JobProgress()
    base = JobProgress()  # what earlier sources of this job contributed

    def on_step(p: JobProgress) -> None:
        check()
        if p.event == "start":
            base.files_total, base.files_done = progress.files_total, progress.files_done
            base.chunks_written, base.chunks_embedded = progress.chunks_written, progress.chunks_embedded
            progress.files_total = base.files_total + p.files_total
        else:
            progress.files_done = base.files_done + p.files_done
            progress.chunks_written = base.chunks_written + p.chunks_written
            progress.chunks_embedded = base.chunks_embedded + p.chunks_embedded
            progress.current = p.current
        on_progress(progress)

    outcomes: list[SyncOutcome] = []
    for spec in specs:
        check()
        progress.current = spec.name
        on_progress(progress)
        source = make_source(spec, cache_dir=sources.cache_dir)
        try:
            outcomes.append(sync_source(collection, source, name=spec.name, progress=on_step, sleep=sleep))
        finally:
            source.close()
        progress.documents += outcomes[-1].counts()["changed"]
    progress.current = ""
    on_progress(progress)
    totals = {k: sum(o.counts()[k] for o in outcomes) for k in (*SYNC_COUNTS, "unchanged", "embedded")}
    return {"sync": totals, "sources_failed": sum(not o.ok for o in outcomes),
            "sources": [{k: v for k, v in o.to_dict().items() if k != "report"} for o in outcomes],
            "failures": [{"source": o.name, **f} for o in outcomes if o.report
                         for f in o.report.to_dict()["failures"]],
            "chunks_embedded": totals["embedded"], "documents_removed": totals["deleted"]}


class SyncScheduler:
    """Submits due sync jobs every `tick_s`: a source is due `interval_s` after its last submission here, and a folder
    source also once its files settle after a change (watchdog events, as `ragworks watch` does)."""

    def __init__(self, jobs: JobQueue, tenants: Callable[[], Iterable[Tenant]],
                 collections: Callable[[Tenant], list[str]], *, tick_s: float = TICK_S,
                 watch_folders: bool = True) -> None:
        self.jobs, self.tenants, self.collections, self.tick_s = jobs, tenants, collections, tick_s
        self.watch_folders = watch_folders
        self._last: dict[_Key, float] = {}
        self._changed: dict[_Key, float] = {}  # folder sources changed since their last submission
        self._observers: dict[_Key, tuple[str, Any]] = {}  # key → (folder, watchdog observer)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _watch(self, key: _Key, folder: str) -> None:
        current = self._observers.get(key)
        if current is not None and current[0] == folder and Path(folder).is_dir():
            return
        if current is not None:  # moved, or gone and back (a remount): watch it afresh
            self._unwatch(key)
        if not Path(folder).is_dir():
            return  # its sync reports it unavailable; watched once it is back

        def changed() -> None:
            with self._lock:
                self._changed[key] = time.monotonic()

        try:
            self._observers[key] = (folder, observe_folder(folder, changed))
        except Exception:
            log.warning("%s: cannot watch it; synced every interval only", folder, exc_info=True)

    def _unwatch(self, key: _Key) -> None:
        _, observer = self._observers.pop(key)
        observer.stop()
        observer.join(timeout=5)

    def tick(self, now: float | None = None) -> list[Job]:
        """Submit what is due now; returns the jobs submitted."""
        now = time.monotonic() if now is None else now
        submitted = []
        seen: set[_Key] = set()
        for tenant in self.tenants():
            for name in self.collections(tenant):
                try:
                    specs = SourceList(tenant.collection_dir(name)).load()
                except Exception:  # an unreadable sources.json: `ragworks sync` reports it
                    log.warning("%s/%s: cannot read its sources", tenant.name, name, exc_info=True)
                    continue
                due = []
                for s in specs:
                    key = (tenant.name, name, s.name)
                    seen.add(key)
                    if s.kind == "folder" and self.watch_folders:
                        self._watch(key, s.location)
                    with self._lock:
                        changed_at = self._changed.get(key)
                    settled = changed_at is not None and time.monotonic() - changed_at >= DEBOUNCE_S
                    if settled or now - self._last.get(key, -1e18) >= s.interval_s:
                        due.append(s.name)
                if not due:
                    continue
                busy = any(j.kind is JobKind.SYNC and not j.state.finished
                           for j in self.jobs.list_jobs(tenant, name, limit=20))
                if busy:
                    continue  # due again at the next tick, once the running sync is done
                submitted.append(self.jobs.submit(tenant, name, JobKind.SYNC, {"sources": due, "scheduled": True}))
                for source_name in due:
                    done = (tenant.name, name, source_name)
                    self._last[done] = now
                    with self._lock:
                        self._changed.pop(done, None)
        for key in set(self._observers) - seen:  # sources removed, collections deleted
            self._unwatch(key)
        return submitted

    def _loop(self) -> None:
        while not self._stop.wait(self.tick_s):
            try:
                self.tick()
            except Exception:
                log.exception("sync schedule tick failed")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True, name="ragworks-sync-schedule")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for key in list(self._observers):
            self._unwatch(key)
