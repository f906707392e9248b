"""Celery tasks of ragworks: ingestion jobs recorded by the API (ragworks.jobs.distributed)."""

from __future__ import annotations

import threading
from typing import Any

from ragworks.config import Settings
from ragworks.jobs.distributed import INGEST_TASK
from ragworks.worker.app import app
from ragworks.worker.runner import JobRunner

_runner: JobRunner | None = None
_runner_lock = threading.Lock()


def runner() -> JobRunner:
    """This process's JobRunner (built on first use, so a forked pool child loads its own model)."""
    global _runner
    with _runner_lock:
        if _runner is None:
            _runner = JobRunner(Settings())
        return _runner


@app.task(name="ragworks.ping")
def ping() -> str:
    """Liveness check: returns "pong" from a worker."""
    return "pong"


@app.task(name=INGEST_TASK, bind=True, max_retries=None, acks_late=True, reject_on_worker_lost=True)
def ingest_job(self: Any, tenant: str, job_id: str) -> str:
    """Run ingestion job `job_id` of `tenant`; idempotent (safe to deliver twice). Returns the final state."""
    outcome = runner().run(tenant, job_id)
    if outcome.retry_in_s is not None:
        raise self.retry(countdown=outcome.retry_in_s)
    return outcome.state
