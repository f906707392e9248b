"""Lost Celery messages are re-sent by the API: a job recorded but never sent (the API died in between), and jobs
whose messages vanished in a Redis restart without persistence. Real redis-server, real worker processes, real
PostgreSQL / SQLite job tables; each job runs exactly once."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.realservers import CeleryWorker, free_port, redis_server, wait_until
from tests.worker.test_celery_jobs import VISIBILITY_S, _worker_env

from ragworks.config import Settings
from ragworks.jobs.base import JobKind, JobProgress
from ragworks.jobs.distributed import INGEST_TASK, CeleryJobQueue, JobTables, broker_task_ids
from ragworks.server import create_app
from ragworks.tenancy import LOCAL_TENANT, tenant_for


def _documents(n: int) -> list[dict[str, Any]]:
    return [{"source": f"watch-{i}.md", "text": f"Watch {i}: the keeper trimmed lamp {i} and logged the wind at "
             f"force {i % 9}.", "title": "", "metadata": {}} for i in range(n)]


def _finished(api: TestClient, job_id: str, worker: CeleryWorker, timeout_s: float = 120) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job: dict[str, Any] = api.get(f"/v1/jobs/{job_id}").json()
        return job if job["state"] in ("completed", "failed", "cancelled") else None

    job: dict[str, Any] = wait_until(done, timeout_s,
                                     lambda: f"job {job_id} never finished: {api.get(f'/v1/jobs/{job_id}').json()}\n"
                                             f"--- worker log:\n{worker.log_text()}")
    return job


def _in_broker(queue: CeleryJobQueue) -> set[str]:
    import redis

    client = redis.Redis.from_url(queue.settings.redis_url)
    try:
        return broker_task_ids(client, [queue.celery.conf.task_default_queue])
    finally:
        client.close()


@pytest.mark.slow
def test_a_job_recorded_but_never_sent_is_resent_at_start_and_runs_once(tmp_path: Path, redis_url: str,
                                                                        pg_dsn: str, embedder: Any) -> None:
    settings = Settings(data_dir=tmp_path / "data", store_backend="postgres", postgres_dsn=pg_dsn,
                        queue_backend="celery", redis_url=redis_url, celery_visibility_timeout_s=VISIBILITY_S,
                        llm="extractive", auth="off", request_timeout_s=60.0)
    name = f"lost-{uuid.uuid4().hex[:8]}"
    with TestClient(create_app(settings, embedder=embedder, llm=None, start_jobs=False)) as first:
        assert first.post("/v1/collections", json={"name": name}).status_code == 201
    # what an API killed between recording a job and sending its message leaves behind
    tables = JobTables(settings)
    table = tables.get(tenant_for(settings, LOCAL_TENANT))
    assert table is not None
    docs = _documents(5)
    job = table.insert(name, JobKind.DOCUMENTS, {"documents": docs}, JobProgress(files_total=len(docs)))
    import psycopg

    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # it crashed a minute ago
        conn.execute("UPDATE ragworks.jobs SET created = created - 60 WHERE id = %s", (job.id,))

    with TestClient(create_app(settings, embedder=embedder, llm=None)) as api:
        queue = api.app.state.ctx.jobs  # type: ignore[attr-defined]
        assert isinstance(queue, CeleryJobQueue)
        wait_until(lambda: job.id in _in_broker(queue), 20, lambda: "the API did not re-send the lost message")
        assert job.id not in queue.resend_lost(), "a message waiting in the broker is not sent again"
        with CeleryWorker(_worker_env(settings), pool="solo", log_dir=tmp_path / "logs") as worker:
            worker.wait_ready()
            done = _finished(api, job.id, worker)
            assert done["state"] == "completed" and done["attempts"] == 1, (done, worker.log_text())
            assert done["report"]["chunks_written"] == len(docs)
            # a duplicate message (two API replicas re-sent it) is acknowledged without running the job again
            queue.celery.send_task(INGEST_TASK, args=[LOCAL_TENANT, job.id], task_id=job.id)
            assert wait_until(lambda: worker.log_text().count(f"[{job.id}] succeeded") >= 2, 60, worker.log_text)
        assert job.id not in queue.resend_lost(), "finished jobs are never re-sent"
        again = api.get(f"/v1/jobs/{job.id}").json()
        assert again["attempts"] == 1 and again["report"] == done["report"]
        stats = api.get(f"/v1/collections/{name}").json()
        assert stats["documents"] == len(docs) and stats["chunks"] == len(docs)
    tables.close()


@pytest.mark.slow
def test_jobs_lost_in_a_redis_restart_are_resent_by_the_running_api(tmp_path: Path, embedder: Any) -> None:
    """SQLite job table shared with the worker through the filesystem; Redis runs without persistence."""
    port = free_port()
    settings = Settings(data_dir=tmp_path / "data", queue_backend="celery", redis_url=f"redis://127.0.0.1:{port}/0",
                        celery_visibility_timeout_s=VISIBILITY_S, llm="extractive", auth="off",
                        request_timeout_s=60.0)
    with redis_server(tmp_path / "redis-before", port=port):
        api_client = TestClient(create_app(settings, embedder=embedder, llm=None))
        api = api_client.__enter__()
        try:
            assert api.post("/v1/collections", json={"name": "notes"}).status_code == 201
            r = api.post("/v1/collections/notes/documents", json={"documents": _documents(3)})
            assert r.status_code == 202, r.text
            job_id = r.json()["id"]
            assert job_id in _in_broker(api.app.state.ctx.jobs)  # type: ignore[attr-defined]
        except BaseException:
            api_client.__exit__(None, None, None)
            raise
    try:
        with redis_server(tmp_path / "redis-after", port=port):  # restarted empty: the message is gone
            assert job_id not in _in_broker(api.app.state.ctx.jobs)  # type: ignore[attr-defined]
            with CeleryWorker(_worker_env(settings), pool="solo", log_dir=tmp_path / "logs") as worker:
                worker.wait_ready()
                done = _finished(api, job_id, worker, timeout_s=120)
            assert done["state"] == "completed" and done["attempts"] == 1, (done, worker.log_text())
            stats = api.get("/v1/collections/notes").json()
            assert stats["documents"] == 3 and stats["chunks"] == 3
    finally:
        api_client.__exit__(None, None, None)
