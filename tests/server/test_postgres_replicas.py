"""Two API replicas on one PostgreSQL database (the docker-compose / k8s layout): both see the same collections,
documents and deletions, with the tenant of each request enforced by the database rows."""

from __future__ import annotations

import time
import uuid

import pytest
from fastapi.testclient import TestClient

from ragworks.server import create_app


@pytest.mark.slow
def test_two_replicas_share_collections_and_see_each_others_deletes(tmp_path, pg_dsn, embedder, kit, monkeypatch):
    from ragworks.server import tenants

    monkeypatch.setattr(tenants, "POSTGRES_RECHECK_S", 0.2)
    settings = kit.make_settings(tmp_path / "data", store_backend="postgres", postgres_dsn=pg_dsn,
                                 postgres_schema=f"replicas_{uuid.uuid4().hex[:8]}")
    with TestClient(create_app(settings, embedder=embedder, llm=None)) as a, \
            TestClient(create_app(settings, embedder=embedder, llm=None)) as b:
        assert a.post("/v1/collections", json={"name": "shared"}).status_code == 201
        assert b.post("/v1/collections", json={"name": "shared"}).status_code == 200, "already exists"
        kit.add_text(a, "shared", "keeper.md", kit.LIGHTHOUSE)
        assert [c["name"] for c in b.get("/v1/collections").json()["collections"]] == ["shared"]
        hits = b.post("/v1/collections/shared/search", json={"query": "Fresnel lens beam"}).json()["hits"]
        assert hits and hits[0]["source"] == "keeper.md"
        assert a.delete("/v1/collections/shared").status_code == 204
        time.sleep(0.3)
        assert b.get("/v1/collections/shared/documents").status_code == 404
        assert b.get("/v1/collections").json()["collections"] == []
