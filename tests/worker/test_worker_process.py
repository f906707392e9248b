"""The Celery app runs in a real worker process against a real Redis."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from tests.realservers import CeleryWorker, celery_worker


@pytest.mark.slow
def test_worker_process_answers_a_task_over_redis(redis_url: str, tmp_path: Path) -> None:
    from ragworks.config import Settings
    from ragworks.worker.app import make_celery

    client = make_celery(Settings(redis_url=redis_url))
    with celery_worker({"RAGWORKS_REDIS_URL": redis_url}, log_dir=tmp_path, name="pinged@%h") as worker:
        client.send_task("ragworks.ping")
        assert worker.wait_for_log("succeeded", 30), worker.log_text()
        assert "'pong'" in worker.log_text()
        assert client.control.ping(timeout=5.0), "the worker answers remote control over Redis"


@pytest.mark.slow
def test_killed_worker_process_group_is_gone(redis_url: str, tmp_path: Path) -> None:
    worker = CeleryWorker({"RAGWORKS_REDIS_URL": redis_url}, pool="prefork", concurrency=1, log_dir=tmp_path)
    worker.start().wait_ready()
    assert worker.proc is not None
    pgid = os.getpgid(worker.proc.pid)  # the worker and its prefork pool children share this group
    worker.kill()
    assert not worker.running
    deadline = time.monotonic() + 10
    while True:  # the pool's children must be gone too, not only the parent
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, f"process group {pgid} still has live processes"
        time.sleep(0.1)


@pytest.mark.slow
def test_ragworks_worker_command_runs_a_celery_worker(redis_url: str, tmp_path: Path) -> None:
    from ragworks.config import Settings
    from ragworks.worker.app import make_celery

    client = make_celery(Settings(redis_url=redis_url))
    with celery_worker({"RAGWORKS_REDIS_URL": redis_url}, command="ragworks", pool="solo", log_dir=tmp_path
                       ) as worker:
        client.send_task("ragworks.ping")
        assert worker.wait_for_log("'pong'", 30), worker.log_text()
