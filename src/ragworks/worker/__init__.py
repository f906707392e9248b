"""Celery workers for `queue_backend = "celery"`: ingestion jobs run in worker processes fed through Redis.

`ragworks.worker.app` holds the Celery application (configured from Settings / RAGWORKS_* variables);
`ragworks.worker.tasks` holds the ingestion task. Start a worker with `ragworks worker` or
`celery -A ragworks.worker.app worker`.
"""
