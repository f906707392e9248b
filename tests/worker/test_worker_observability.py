"""Under Celery, /metrics counts what worker processes ingested (read from the shared job table) and /readyz says
whether any worker is alive, degrading (not failing) without one. Real redis-server and worker process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from tests.realservers import CeleryWorker, wait_until
from tests.worker.test_celery_jobs import VISIBILITY_S, _worker_env

from ragworks.config import Settings
from ragworks.server import create_app


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.mark.slow
def test_metrics_count_worker_ingestion_and_readiness_reports_whether_a_worker_is_alive(
        tmp_path: Path, redis_url: str, embedder: Any) -> None:
    settings = Settings(data_dir=tmp_path / "data", queue_backend="celery", redis_url=redis_url,
                        celery_visibility_timeout_s=VISIBILITY_S, llm="extractive", auth="off",
                        request_timeout_s=60.0)
    with TestClient(create_app(settings, embedder=embedder, llm=None)) as api:
        alone = api.get("/readyz")
        assert alone.status_code == 200, "no worker: degraded, still serving searches"
        assert alone.json()["status"] == "degraded" and alone.json()["checks"]["workers"] is False, alone.json()

        with CeleryWorker(_worker_env(settings), pool="solo", log_dir=tmp_path / "logs") as worker:
            worker.wait_ready()
            wait_until(lambda: api.get("/readyz").json()["status"] == "ready", 20,
                   lambda: f"{api.get('/readyz').json()}\n{worker.log_text()}")
            assert api.post("/v1/collections", json={"name": "notes"}).status_code == 201
            r = api.post("/v1/collections/notes/documents?wait=true", json={"documents": [
                {"source": f"bell-{i}.md", "text": f"Bell {i} rings {i + 2} times for a vessel in fog."}
                for i in range(3)]})
            assert r.status_code == 200 and r.json()["state"] == "completed", (r.text, worker.log_text())
            metrics = _samples(api.get("/metrics").text)
            assert metrics[("ragworks_ingest_files_total", ())] == 3
            assert metrics[("ragworks_ingest_documents_total", ())] == 3
            assert metrics[("ragworks_ingest_chunks_total", ())] == 3
            assert metrics[("ragworks_jobs_finished_total", (("state", "completed"),))] == 1
            assert metrics[("ragworks_job_queue_depth", ())] == 0
        wait_until(lambda: api.get("/readyz").json()["status"] == "degraded", 20,
               lambda: f"a stopped worker still counts as alive: {api.get('/readyz').json()}")
