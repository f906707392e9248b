"""Ingestion jobs behind the JobQueue protocol; `make_job_queue` picks the backend from settings."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.errors import ConfigError
from ragworks.jobs.base import IngestTotals, Job, JobKind, JobProgress, JobQueue, JobState
from ragworks.jobs.embedded import EmbeddedJobQueue, JobObserver
from ragworks.tenancy import Tenant

__all__ = ["EmbeddedJobQueue", "IngestTotals", "Job", "JobKind", "JobObserver", "JobProgress", "JobQueue",
           "JobState", "make_job_queue"]


def make_job_queue(
    settings: Settings,
    open_collection: Callable[[Tenant, str], Collection],
    tenants: Callable[[], Iterable[Tenant]],
    observer: JobObserver | None = None,
) -> JobQueue:
    """The job queue `settings.queue_backend` names."""
    if settings.queue_backend == "celery":
        try:
            from ragworks.jobs.distributed import CeleryJobQueue
        except ImportError as exc:
            raise ConfigError(f"queue_backend 'celery' needs celery and redis ({exc.name} is missing): "
                              "pip install 'ragworks[queue]'") from None
        return CeleryJobQueue(settings, tenants, observer=observer)
    # every server process on a data directory (`--workers N`, or two `ragworks serve` started on it by mistake)
    # shares the tenants' job tables: one of them, elected by a file lock, runs the jobs
    runner_lock = settings.data_dir / "job-runner.lock"
    return EmbeddedJobQueue(open_collection, tenants, max_attempts=settings.job_max_attempts, observer=observer,
                            runner_lock=runner_lock)
