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


@pytest.mark.slow
def test_api_keys_live_in_postgres_shared_by_replicas_without_a_shared_volume(tmp_path, pg_dsn, embedder, kit):
    from ragworks.server.keys import AUTH_DB, KeyStore, PostgresKeyStore, make_key_store

    schema = f"keys_{uuid.uuid4().hex[:8]}"
    backend = {"store_backend": "postgres", "postgres_dsn": pg_dsn, "postgres_schema": schema, "auth": "on",
               "admin_key": kit.ADMIN_KEY, "rate_limit_per_minute": 0}
    # keys issued while the deployment kept them in SQLite are carried over once, when PostgreSQL has none
    legacy = KeyStore(tmp_path / "a")
    legacy.create_tenant("alpha")
    old_key, _ = legacy.create_key("alpha", "before the move")
    legacy.close()
    settings_a = kit.make_settings(tmp_path / "a", **backend)
    settings_b = kit.make_settings(tmp_path / "b", **backend)  # another replica: nothing on disk in common
    assert isinstance(make_key_store(settings_a), PostgresKeyStore)
    admin = {"Authorization": f"Bearer {kit.ADMIN_KEY}"}
    with TestClient(create_app(settings_a, embedder=embedder, llm=None)) as a, \
            TestClient(create_app(settings_b, embedder=embedder, llm=None)) as b:
        assert b.get("/v1/collections", headers={"Authorization": f"Bearer {old_key}"}).status_code == 200
        assert a.post("/v1/admin/tenants", json={"name": "beta"}, headers=admin).status_code in (200, 201)
        made = a.post("/v1/admin/tenants/beta/keys", json={"label": "ci"}, headers=admin)
        assert made.status_code in (200, 201), made.text
        key, key_id = made.json()["key"], made.json()["id"]
        beta = {"Authorization": f"Bearer {key}"}
        assert b.post("/v1/collections", json={"name": "notes"}, headers=beta).status_code == 201
        assert [c["name"] for c in a.get("/v1/collections", headers=beta).json()["collections"]] == ["notes"]
        assert b.delete(f"/v1/admin/keys/{key_id}", headers=admin).status_code in (200, 204)
        assert a.get("/v1/collections", headers=beta).status_code == 401  # revoked on one replica: refused on all
    assert not (tmp_path / "b" / AUTH_DB).exists()


@pytest.mark.slow
def test_the_cli_and_a_server_without_auth_see_the_same_collections(tmp_path, pg_dsn, embedder, kit):
    from ragworks.collection import Collection
    from ragworks.tenancy import LOCAL_TENANT

    settings = kit.make_settings(tmp_path / "data", store_backend="postgres", postgres_dsn=pg_dsn,
                                 postgres_schema=f"onetenant_{uuid.uuid4().hex[:8]}")
    assert settings.tenant == LOCAL_TENANT  # one name for the tenant of the CLI and of the server with auth off
    (tmp_path / "keeper.md").write_text(kit.LIGHTHOUSE)
    # what `ragworks ingest` does:
    with Collection.open("fromcli", settings=settings, embedder=embedder, llm=None) as col:
        col.ingest(tmp_path / "keeper.md")
    with TestClient(create_app(settings, embedder=embedder, llm=None)) as api:
        assert [c["name"] for c in api.get("/v1/collections").json()["collections"]] == ["fromcli"]
        hits = api.post("/v1/collections/fromcli/search", json={"query": "Fresnel lens beam"}).json()["hits"]
        assert hits and hits[0]["source"].endswith("keeper.md")
        assert api.post("/v1/collections", json={"name": "fromapi"}).status_code == 201
    with Collection.open("fromapi", settings=settings, create=False, embedder=embedder, llm=None) as col:
        assert col.stats()["documents"] == 0
