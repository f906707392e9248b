"""The Celery application `celery -A ragworks.worker.app worker` runs (ragworks.jobs.celery_app configures it)."""

from __future__ import annotations

from ragworks.jobs.celery_app import TASK_MODULES, celery_config, make_celery

__all__ = ["TASK_MODULES", "app", "celery_config", "make_celery"]

app = make_celery()
