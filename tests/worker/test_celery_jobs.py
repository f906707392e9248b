"""Ingestion jobs through the API on Celery workers: real redis-server, real worker processes, real PostgreSQL."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.realservers import CeleryWorker

from ragworks.config import Settings
from ragworks.server import create_app
from ragworks.tenancy import LOCAL_TENANT

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sample-corpus"
VISIBILITY_S = 3  # a killed worker's message comes back after this (production default: minutes)


def _files(n: int = 6) -> list[Path]:
    return sorted([*SAMPLE.glob("*.md"), *SAMPLE.glob("*.txt")])[:n]


def _worker_env(settings: Settings) -> dict[str, str]:
    """The environment a worker container would get: the same settings as the API, by RAGWORKS_* variables."""
    env = {
        "RAGWORKS_DATA_DIR": str(settings.data_dir),
        "RAGWORKS_STORE_BACKEND": settings.store_backend,
        "RAGWORKS_QUEUE_BACKEND": settings.queue_backend,
        "RAGWORKS_REDIS_URL": settings.redis_url,
        "RAGWORKS_CELERY_VISIBILITY_TIMEOUT_S": str(settings.celery_visibility_timeout_s),
        "RAGWORKS_CHUNK_TOKENS": str(settings.chunk_tokens),
        "RAGWORKS_EMBED_BATCH_SIZE": str(settings.embed_batch_size),
    }
    if settings.postgres_dsn is not None:
        env["RAGWORKS_POSTGRES_DSN"] = settings.postgres_dsn.get_secret_value()
    return env


def _upload(client: TestClient, collection: str, files: list[Path]) -> dict[str, Any]:
    assert client.post("/v1/collections", json={"name": collection}).status_code in (200, 201)
    handles = [("files", (f.name, f.read_bytes(), "application/octet-stream")) for f in files]
    r = client.post(f"/v1/collections/{collection}/files", files=handles)
    assert r.status_code == 202, r.text
    return r.json()


def _job(client: TestClient, job_id: str) -> dict[str, Any]:
    r = client.get(f"/v1/jobs/{job_id}")
    assert r.status_code == 200, r.text
    return r.json()


def _wait(client: TestClient, job_id: str, done: Any, timeout_s: float, worker: CeleryWorker) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = _job(client, job_id)
        if done(job):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} stuck: {_job(client, job_id)}\n--- worker log:\n{worker.log_text()}")


def _chunk_rows(dsn: str, tenant: str, collection: str) -> tuple[int, int, int]:
    """(chunks, documents, duplicated (doc, chunk index) pairs) straight from the database."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        chunks = conn.execute("SELECT count(*) FROM ragworks.chunks WHERE tenant = %s AND collection = %s",
                              (tenant, collection)).fetchone()
        docs = conn.execute("SELECT count(*) FROM ragworks.documents WHERE tenant = %s AND collection = %s",
                            (tenant, collection)).fetchone()
        dups = conn.execute("SELECT count(*) FROM (SELECT doc_id, ordinal FROM ragworks.chunks WHERE tenant = %s "
                            "AND collection = %s GROUP BY doc_id, ordinal HAVING count(*) > 1) d",
                            (tenant, collection)).fetchone()
    assert chunks and docs and dups
    return int(chunks[0]), int(docs[0]), int(dups[0])


@pytest.fixture
def celery_settings(tmp_path: Path, redis_url: str, pg_dsn: str) -> Settings:
    return Settings(data_dir=tmp_path / "data", store_backend="postgres", postgres_dsn=pg_dsn,
                    queue_backend="celery", redis_url=redis_url, celery_visibility_timeout_s=VISIBILITY_S,
                    llm="extractive", auth="off", request_timeout_s=60.0, chunk_tokens=192, embed_batch_size=8)


@pytest.fixture
def api(celery_settings: Settings, embedder: Any) -> Iterator[TestClient]:
    with TestClient(create_app(celery_settings, embedder=embedder, llm=None), raise_server_exceptions=False) as c:
        yield c


@pytest.mark.slow
def test_killed_worker_job_finishes_once(api: TestClient, celery_settings: Settings, pg_dsn: str,
                                         tmp_path: Path) -> None:
    files = _files()
    docs, clean_name = f"docs-{uuid.uuid4().hex[:8]}", f"clean-{uuid.uuid4().hex[:8]}"  # one database for all tests
    env = _worker_env(celery_settings)
    first = CeleryWorker(env, pool="solo", log_dir=tmp_path / "logs").start()
    try:
        job = _upload(api, docs, files)
        assert job["state"] == "queued" and job["progress"]["files_total"] == len(files)
        running = _wait(api, job["id"], lambda j: j["state"] != "queued" and j["progress"]["files_done"] >= 2,
                        180, first)
        assert running["state"] == "running", running
        first.kill()  # SIGKILL mid-job: no warm shutdown, the message is never acknowledged
    finally:
        first.kill()
    partial = _job(api, job["id"])
    assert partial["state"] == "running" and partial["progress"]["files_done"] < len(files), partial

    with CeleryWorker(env, pool="solo", log_dir=tmp_path / "logs") as second:
        second.wait_ready()
        done = _wait(api, job["id"], lambda j: j["state"] in ("completed", "failed", "cancelled"), 240, second)
        assert done["state"] == "completed", (done, second.log_text())
        assert done["attempts"] == 2, done
        # a clean run of the same files into another collection, by the surviving worker
        clean_job = _upload(api, clean_name, files)
        clean = _wait(api, clean_job["id"], lambda j: j["state"] in ("completed", "failed"), 240, second)
        assert clean["state"] == "completed" and clean["attempts"] == 1, clean

    chunks, n_docs, dups = _chunk_rows(pg_dsn, LOCAL_TENANT, docs)
    clean_chunks, clean_docs, _ = _chunk_rows(pg_dsn, LOCAL_TENANT, clean_name)
    assert dups == 0
    assert (chunks, n_docs) == (clean_chunks, clean_docs) and n_docs == len(files)
    assert api.get(f"/v1/collections/{docs}").json()["chunks"] == chunks
    hits = api.post(f"/v1/collections/{docs}/search", json={"query": "Fresnel lens", "k": 3}).json()
    assert hits["hits"], hits


@pytest.mark.slow
def test_cancelled_queued_job_is_not_run_by_a_worker(api: TestClient, celery_settings: Settings,
                                                     tmp_path: Path) -> None:
    name = f"docs-{uuid.uuid4().hex[:8]}"
    job = _upload(api, name, _files(2))
    cancelled = api.post(f"/v1/jobs/{job['id']}/cancel").json()
    assert cancelled["state"] == "cancelled"
    with CeleryWorker(_worker_env(celery_settings), pool="solo", log_dir=tmp_path / "logs") as worker:
        worker.wait_ready()
        assert worker.wait_for_log("succeeded", 60), worker.log_text()
    assert _job(api, job["id"])["state"] == "cancelled"
    assert api.get(f"/v1/collections/{name}").json()["chunks"] == 0


def test_submitting_without_redis_is_a_clear_503(tmp_path: Path, pg_dsn: str, embedder: Any) -> None:
    from tests.realservers import free_port

    settings = Settings(data_dir=tmp_path / "data", store_backend="postgres", postgres_dsn=pg_dsn,
                        queue_backend="celery", redis_url=f"redis://127.0.0.1:{free_port()}/0", llm="extractive",
                        auth="off")
    with TestClient(create_app(settings, embedder=embedder, llm=None), raise_server_exceptions=False) as client:
        name = f"docs-{uuid.uuid4().hex[:8]}"
        assert client.post("/v1/collections", json={"name": name}).status_code == 201
        r = client.post(f"/v1/collections/{name}/documents", json={"source": "a.md", "text": "hello there"})
        assert r.status_code == 503 and "RAGWORKS_REDIS_URL" in r.json()["error"]["message"], r.text
        assert client.get("/readyz").status_code == 503
        jobs = client.get(f"/v1/collections/{name}/jobs").json()["jobs"]
        assert [j["state"] for j in jobs] == ["failed"]


@pytest.mark.slow
def test_embedded_backend_jobs_run_in_a_worker_and_the_api_serves_what_it_wrote(tmp_path: Path, redis_url: str,
                                                                                 embedder: Any) -> None:
    """One machine: the SQLite job table and collection directory are shared through the filesystem."""
    settings = Settings(data_dir=tmp_path / "data", queue_backend="celery", redis_url=redis_url,
                        celery_visibility_timeout_s=VISIBILITY_S, llm="extractive", auth="off", request_timeout_s=60.0)
    with TestClient(create_app(settings, embedder=embedder, llm=None), raise_server_exceptions=False) as api, \
            CeleryWorker(_worker_env(settings), pool="prefork", log_dir=tmp_path / "logs") as worker:
        worker.wait_ready()
        assert api.post("/v1/collections", json={"name": "notes"}).status_code == 201
        r = api.post("/v1/collections/notes/documents?wait=true", json={"documents": [
            {"source": "fog.md", "text": "A diaphone fog signal sounds two blasts every minute in thick weather."},
            {"source": "tide.md", "text": "Spring tides follow the full and the new moon."}]})
        assert r.status_code == 200 and r.json()["state"] == "completed", (r.text, worker.log_text())
        assert (settings.data_dir / "jobs.sqlite3").exists()
        hits = api.post("/v1/collections/notes/search", json={"query": "fog signal blasts", "k": 1}).json()["hits"]
        assert [h["source"] for h in hits] == ["fog.md"]
        assert api.get("/readyz").json()["checks"]["jobs"] is True
