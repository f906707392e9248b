"""The Celery application factory, configured from Settings (RAGWORKS_REDIS_URL, RAGWORKS_CELERY_VISIBILITY_TIMEOUT_S).

Delivery is at-least-once on purpose: `task_acks_late` acknowledges a task only after it returns, and
`task_reject_on_worker_lost` requeues it when the worker process dies, so a SIGKILLed worker's job is redelivered
(by Redis after `visibility_timeout`, or at once when a surviving worker's pool notices the lost child). Tasks
must therefore be idempotent; the ingestion task is (content-hash keyed, batch-atomic writes).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from celery import Celery

from ragworks.config import Settings

TASK_MODULES = ("ragworks.worker.tasks", "ragworks.dumps.distributed")


def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a missing parent package
        return False


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings for `settings` (broker, reliability knobs, serialisation)."""
    vt = settings.celery_visibility_timeout_s
    # kombu's Redis transport scans for expired unacked messages every interval×throttle seconds (default
    # 10×10): scan often enough that a killed worker's job is redelivered about `vt` after it was taken
    transport = {"visibility_timeout": vt, "unacked_restore_interval": max(1, min(10, vt // 3)),
                 "unacked_restore_throttle": 1}
    return {
        "broker_url": settings.redis_url,
        "broker_transport_options": transport,
        # no result backend: the job table holds every outcome, and the API never waits on a Celery result
        "result_backend": None,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_track_started": True,
        "worker_hijack_root_logger": False,
        "broker_connection_retry_on_startup": True,
        # an API request enqueuing a job fails fast (503) when Redis is down instead of hanging in retries
        "broker_connection_timeout": 2.0,
        "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0, "interval_step": 0.5,
                                      "interval_max": 1},
    }


def make_celery(settings: Settings | None = None) -> Celery:
    """A Celery app for `settings` (default: from the environment) including every task module installed."""
    settings = settings or Settings()
    celery_app = Celery("ragworks", include=[m for m in TASK_MODULES if _available(m)])
    celery_app.conf.update(celery_config(settings))
    return celery_app
