"""Probes, Prometheus metrics, OpenAPI, the web page's files, and the shared embedder's batching."""

from __future__ import annotations

import threading
import time

import numpy as np
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from ragworks.server import create_app
from ragworks.server.models import SharedEmbedder


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_health_readiness_and_openapi(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"embedder": True, "jobs": True, "data_dir": True}
    spec = client.get("/openapi.json").json()
    for path in ("/v1/collections", "/v1/collections/{name}/files", "/v1/collections/{name}/ask", "/v1/jobs/{job_id}",
                 "/v1/chat/completions", "/v1/embeddings"):
        assert path in spec["paths"], path
    assert client.get("/docs").status_code == 200


def test_readiness_waits_for_the_model_loading_in_the_background(tmp_path, kit, embedder):
    release = threading.Event()

    def slow_load():
        release.wait(10)
        return embedder

    shared = SharedEmbedder(name=embedder.name)
    shared.load_in_background(slow_load)
    with TestClient(create_app(kit.make_settings(tmp_path / "data"), embedder=shared, llm=None)) as client:
        r = client.get("/readyz")
        assert r.status_code == 503 and r.json()["checks"]["embedder"] is False
        assert client.get("/healthz").status_code == 200, "alive while loading"
        release.set()
        deadline = time.monotonic() + 5
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_metrics_count_requests_per_route_and_ingestion(client, kit):
    client.post("/v1/collections", json={"name": "team"})
    kit.add_text(client, "team", "a.md", kit.KEY_ROTATION)
    for _ in range(3):
        client.post("/v1/collections/team/search", json={"query": "keys"})
    client.get("/v1/collections/missing")
    r = client.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    m = _samples(r.text)
    route = (("method", "POST"), ("route", "/v1/collections/{name}/search"), ("status", "200"))
    assert m[("ragworks_http_request_duration_seconds_count", route)] == 3
    assert m[("ragworks_http_request_duration_seconds_bucket", (("le", "+Inf"), *route))] == 3
    missing = (("method", "GET"), ("route", "/v1/collections/{name}"), ("status", "404"))
    assert m[("ragworks_http_request_duration_seconds_count", missing)] == 1
    assert m[("ragworks_ingest_documents_total", ())] == 1 and m[("ragworks_ingest_chunks_total", ())] >= 1
    assert m[("ragworks_jobs_finished_total", (("state", "completed"),))] == 1
    assert m[("ragworks_job_queue_depth", ())] == 0


def test_metrics_count_result_cache_hits_and_misses(client, kit):
    client.post("/v1/collections", json={"name": "team"})
    kit.add_text(client, "team", "a.md", kit.KEY_ROTATION)
    before = _samples(client.get("/metrics").text)
    for _ in range(3):
        assert client.post("/v1/collections/team/search", json={"query": "keys"}).json()["hits"]
    kit.add_text(client, "team", "b.md", kit.LIGHTHOUSE)  # a write: the next identical search is a miss again
    client.post("/v1/collections/team/search", json={"query": "keys"})
    m = _samples(client.get("/metrics").text)
    hit, miss = (("result", "hit"),), (("result", "miss"),)
    assert m[("ragworks_cache_lookups_total", hit)] - before[("ragworks_cache_lookups_total", hit)] == 2
    assert m[("ragworks_cache_lookups_total", miss)] - before[("ragworks_cache_lookups_total", miss)] == 2


def test_queue_depth_gauge_counts_waiting_jobs(tmp_path, app_factory, kit):
    with app_factory(kit.make_settings(tmp_path / "data"), start_jobs=False) as client:
        client.post("/v1/collections", json={"name": "team"})
        for i in range(2):
            client.post("/v1/collections/team/documents", json={"source": f"d{i}", "text": kit.LIGHTHOUSE})
        assert _samples(client.get("/metrics").text)[("ragworks_job_queue_depth", ())] == 2


def test_the_web_page_and_its_assets_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '<script src="/static/app.js"' in page.text
    assert "getReader" in client.get("/static/app.js").text, "the answer streams through fetch"
    assert client.get("/static/app.css").status_code == 200


def test_concurrent_queries_share_forward_passes_and_get_their_own_vectors(embedder):
    shared = SharedEmbedder(embedder)
    texts = [f"question number {i} about lighthouses" for i in range(16)]
    results: dict[int, np.ndarray] = {}

    def ask(i: int) -> None:
        results[i] = shared.embed_queries([texts[i]])[0]

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = embedder.embed_queries(texts)
    assert all(np.allclose(results[i], expected[i], atol=1e-5) for i in range(16))
    assert shared.query_batches < 16, "waiting queries were embedded together"
    batches = shared.query_batches
    assert np.allclose(shared.embed_queries([texts[3]])[0], expected[3], atol=1e-5)
    assert shared.query_batches == batches, "a repeated query comes from the cache"
    docs = [f"passage {i}" for i in range(70)]
    assert np.allclose(shared.embed_documents(docs), embedder.embed_documents(docs), atol=1e-5)
