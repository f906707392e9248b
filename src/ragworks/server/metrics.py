"""Prometheus metrics (`GET /metrics`): request latency per route, ingest rates, job queue depth.

Each app has its own registry, so several apps in one process (tests) do not collide. Under `ragworks serve
--workers N` the balancer sets PROMETHEUS_MULTIPROC_DIR: request histograms and counters then live in files every
worker writes, and any worker's `/metrics` reports the sum over all of them (prometheus_client's multiprocess
mode); values computed at scrape time (queue depth, the shared job table's counters) come from the answering one.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ragworks.jobs.base import IngestTotals, JobState
from ragworks.jobs.embedded import JobObserver

log = logging.getLogger("ragworks.server")
_FILES_HELP = "Files (or JSON documents) ingested by jobs"
_DOCUMENTS_HELP = "Documents ingested by jobs"
_CHUNKS_HELP = "Chunks written by jobs"
_FINISHED_HELP = "Jobs finished, by final state"


class _JobTableCounters(Collector):
    """The ingest counters read from the shared job table at each scrape (jobs run in worker processes)."""

    def __init__(self, totals: Callable[[], IngestTotals]) -> None:
        self._totals = totals
        self._last = IngestTotals()

    def describe(self) -> list[Metric]:
        return list(self._families(IngestTotals()))  # names only: no database query at registration

    def collect(self) -> Iterator[Metric]:
        try:
            self._last = self._totals()
        except Exception:  # the job table is unreachable: the last values stand, the scrape still answers
            log.warning("could not read the job table for /metrics", exc_info=True)
        return self._families(self._last)

    @staticmethod
    def _families(t: IngestTotals) -> Iterator[Metric]:
        yield CounterMetricFamily("ragworks_ingest_files_total", _FILES_HELP, value=t.files)
        yield CounterMetricFamily("ragworks_ingest_documents_total", _DOCUMENTS_HELP, value=t.documents)
        yield CounterMetricFamily("ragworks_ingest_chunks_total", _CHUNKS_HELP, value=t.chunks)
        finished = CounterMetricFamily("ragworks_jobs_finished_total", _FINISHED_HELP, labels=["state"])
        for state, n in sorted(t.finished.items()):
            finished.add_metric([state], n)
        yield finished

class _QueueDepth(Collector):
    """Jobs queued or running, read at each scrape (a collector, not a Gauge: the same in multiprocess mode)."""

    def __init__(self, depth: Callable[[], int]) -> None:
        self._depth = depth

    def describe(self) -> list[Metric]:
        return [GaugeMetricFamily("ragworks_job_queue_depth", "Jobs queued or running")]

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("ragworks_job_queue_depth", "Jobs queued or running", value=self._depth())


def _computed(registry: CollectorRegistry) -> list[Collector]:
    """The collectors that compute their values at scrape time (job table, queue depth), not from samples."""
    return [c for c in list(registry._collector_to_names) if not isinstance(c, (Histogram, Counter, Gauge))]


class _AllProcesses(Collector):
    """Every worker's metrics files summed (multiprocess mode), less what this process computes itself."""

    def __init__(self, path: str, local: CollectorRegistry) -> None:
        self._files = MultiProcessCollector(None, path=path)
        self._local = local

    def collect(self) -> Iterator[Metric]:
        mine = {m.name for c in _computed(self._local) for m in c.describe()}  # type: ignore[attr-defined]
        return (m for m in self._files.collect() if m.name not in mine)


LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ServerMetrics(JobObserver):
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.request_seconds = Histogram(
            "ragworks_http_request_duration_seconds", "HTTP request latency (streams: until the last byte)",
            ["method", "route", "status"], buckets=LATENCY_BUCKETS, registry=r)
        self.ingest_files = Counter("ragworks_ingest_files_total", _FILES_HELP, registry=r)
        self.ingest_documents = Counter("ragworks_ingest_documents_total", _DOCUMENTS_HELP, registry=r)
        self.ingest_chunks = Counter("ragworks_ingest_chunks_total", _CHUNKS_HELP, registry=r)
        self.jobs_finished = Counter("ragworks_jobs_finished_total", _FINISHED_HELP, ["state"], registry=r)
        self.sync_items = Counter("ragworks_sync_items_total", "Source items handled by sync jobs, by outcome "
                                  "(seen, changed, deleted, failed)", ["outcome"], registry=r)
        self.rate_limited = Counter("ragworks_rate_limited_total", "Requests refused by the rate limit",
                                    registry=r)
        self.cache_lookups = Counter("ragworks_cache_lookups_total", "Result cache lookups (search results and "
                                     "answers), by result", ["result"], registry=r)
        for result in ("hit", "miss"):
            self.cache_lookups.labels(result)  # both series exist from the start

    def cache_lookup(self, result: str) -> None:
        """A result-cache lookup (ragworks.cache.observe calls this)."""
        self.cache_lookups.labels(result).inc()

    def watch_queue(self, depth: Callable[[], int]) -> None:
        self.registry.register(_QueueDepth(depth))

    # JobObserver
    def progressed(self, files: int, documents: int, chunks: int) -> None:
        self.ingest_files.inc(files)
        self.ingest_documents.inc(documents)
        self.ingest_chunks.inc(chunks)

    def finished(self, state: JobState) -> None:
        self.jobs_finished.labels(state.value).inc()

    def synced(self, counts: dict[str, int]) -> None:
        for outcome in ("seen", "changed", "deleted", "failed"):
            self.sync_items.labels(outcome).inc(counts.get(outcome, 0))

    def count_from(self, totals: Callable[[], IngestTotals]) -> None:
        for counter in (self.ingest_files, self.ingest_documents, self.ingest_chunks, self.jobs_finished):
            self.registry.unregister(counter)
        self.registry.register(_JobTableCounters(totals))

    def render(self) -> bytes:
        path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not path:
            return generate_latest(self.registry)
        combined = CollectorRegistry()
        combined.register(_AllProcesses(path, self.registry))
        for collector in _computed(self.registry):
            combined.register(collector)
        return generate_latest(combined)


class MetricsMiddleware:
    """Times every HTTP request, labelled by its route template (`/v1/collections/{name}/search`)."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.request_seconds.labels(scope["method"], path, str(status)).observe(
                time.perf_counter() - started)
