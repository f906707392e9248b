"""API keys, the admin key, and tenant isolation: tenant alpha never sees anything of tenant beta's."""

from __future__ import annotations

import json
import uuid

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ragworks.cli import app as cli_app
from ragworks.server import create_app
from ragworks.server.keys import make_key_store

SECRET = "The beta launch code is PELICAN-7 and only beta may ever read it."


@pytest.fixture(scope="module", params=["embedded", "postgres"])
def two_tenants(request, tmp_path_factory, embedder, kit):
    """alpha and beta each own a collection called `docs`; beta also has `secrets` with a job in its table.

    On both store backends: per-tenant directories (embedded), or one PostgreSQL schema where every row carries
    its tenant (postgres; a fresh schema per module run)."""
    data = tmp_path_factory.mktemp("tenancy") / "data"
    backend: dict[str, object] = {}
    if request.param == "postgres":
        backend = {"store_backend": "postgres", "postgres_dsn": request.getfixturevalue("pg_dsn"),
                   "postgres_schema": f"tenancy_{uuid.uuid4().hex[:8]}"}
    settings = kit.make_settings(data, auth="auto", admin_key=kit.ADMIN_KEY, rate_limit_per_minute=0, **backend)
    tenants = kit.make_tenants(data, settings)  # keys in PostgreSQL on that backend
    tenants.backend = request.param  # type: ignore[attr-defined]
    tenants.settings = settings  # type: ignore[attr-defined]
    with TestClient(create_app(settings, embedder=embedder, llm=None)) as client:
        for heads in (tenants.alpha, tenants.beta):
            assert client.post("/v1/collections", json={"name": "docs"}, headers=heads).status_code == 201
        kit.add_text(client, "docs", "alpha.md", kit.LIGHTHOUSE, headers=tenants.alpha)
        kit.add_text(client, "docs", "beta.md", SECRET, headers=tenants.beta)
        client.post("/v1/collections", json={"name": "secrets"}, headers=tenants.beta)
        beta_job = kit.add_text(client, "secrets", "code.md", SECRET, headers=tenants.beta)
        yield client, tenants, beta_job


def test_requests_without_a_valid_key_are_401(two_tenants):
    client, _, _ = two_tenants
    r = client.get("/v1/collections")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json()["error"]["type"] == "unauthorized"
    assert client.get("/v1/collections", headers={"Authorization": "Bearer rwk_nope_nope"}).status_code == 401
    assert client.get("/v1/collections", headers={"Authorization": "Bearer garbage"}).status_code == 401
    assert client.get("/healthz").status_code == 200 and client.get("/v1/info").json()["auth"] is True


def test_x_api_key_header_works_too(two_tenants):
    client, t, _ = two_tenants
    key = t.alpha["Authorization"].removeprefix("Bearer ")
    assert client.get("/v1/collections", headers={"X-API-Key": key}).status_code == 200


def test_the_admin_key_manages_tenants_but_reads_no_data(two_tenants):
    client, t, _ = two_tenants
    r = client.get("/v1/collections", headers=t.admin)
    assert r.status_code == 403 and "admin key" in r.json()["error"]["message"]
    assert client.get("/v1/admin/tenants", headers=t.alpha).status_code == 401
    assert client.post("/v1/admin/tenants", json={"name": "gamma"}, headers=t.admin).status_code == 201
    made = client.post("/v1/admin/tenants/gamma/keys", json={"label": "ci"}, headers=t.admin).json()
    gamma = {"Authorization": f"Bearer {made['key']}"}
    assert client.get("/v1/collections", headers=gamma).json() == {"collections": []}
    listed = client.get("/v1/admin/tenants/gamma/keys", headers=t.admin).json()["keys"]
    assert [k["id"] for k in listed] == [made["id"]] and "key" not in listed[0]
    assert client.delete(f"/v1/admin/keys/{made['id']}", headers=t.admin).json()["revoked"]
    assert client.get("/v1/collections", headers=gamma).status_code == 401, "a revoked key stops working"
    assert client.post("/v1/admin/tenants", json={"name": "../etc"}, headers=t.admin).status_code == 400


def test_each_tenant_sees_only_its_own_collections_documents_and_jobs(two_tenants):
    client, t, beta_job = two_tenants
    assert [c["name"] for c in client.get("/v1/collections", headers=t.alpha).json()["collections"]] == ["docs"]
    alpha_docs = client.get("/v1/collections/docs/documents", headers=t.alpha).json()["documents"]
    assert [d["source"] for d in alpha_docs] == ["alpha.md"]
    beta_docs = client.get("/v1/collections/docs/documents", headers=t.beta).json()["documents"]
    beta_doc_id = beta_docs[0]["id"]
    # beta's document id, beta's source, beta's collection, beta's job: all 404 for alpha
    assert client.get(f"/v1/collections/docs/documents/{beta_doc_id}", headers=t.alpha).status_code == 404
    assert client.get("/v1/collections/docs/documents/beta.md", headers=t.alpha).status_code == 404
    assert client.delete("/v1/collections/docs/documents/beta.md", headers=t.alpha).status_code == 404
    assert client.get("/v1/collections/secrets/documents", headers=t.alpha).status_code == 404
    assert client.delete("/v1/collections/secrets", headers=t.alpha).status_code == 404
    assert client.get(f"/v1/jobs/{beta_job['id']}", headers=t.alpha).status_code == 404
    assert client.post(f"/v1/jobs/{beta_job['id']}/cancel", headers=t.alpha).status_code == 404
    assert all(j["collection"] == "docs" for j in client.get("/v1/jobs", headers=t.alpha).json()["jobs"])
    assert client.get("/v1/collections/docs/documents/beta.md", headers=t.beta).status_code == 200


def test_search_ask_and_citations_never_cross_tenants(two_tenants):
    client, t, _ = two_tenants
    question = {"question": "What is the beta launch code?", "k": 10}
    hits = client.post("/v1/collections/docs/search", json={"query": "beta launch code PELICAN", "k": 10},
                       headers=t.alpha).json()["hits"]
    assert hits and all(h["source"] == "alpha.md" for h in hits)
    answer = client.post("/v1/collections/docs/ask", json=question, headers=t.alpha).json()
    dumped = json.dumps(answer)
    assert "PELICAN" not in dumped and all(c["source"] == "alpha.md" for c in answer["citations"])
    streamed = client.post("/v1/collections/docs/ask", json=question | {"stream": True}, headers=t.alpha).text
    assert "PELICAN" not in streamed and "beta.md" not in streamed
    assert client.post("/v1/collections/secrets/ask", json=question, headers=t.alpha).status_code == 404
    assert "PELICAN" in json.dumps(client.post("/v1/collections/docs/ask", json=question, headers=t.beta).json())


def test_chat_completions_with_another_tenants_collection_is_404(two_tenants):
    client, t, _ = two_tenants
    body = {"model": "secrets", "messages": [{"role": "user", "content": "What is the beta launch code?"}]}
    r = client.post("/v1/chat/completions", json=body, headers=t.alpha)
    assert r.status_code == 404 and "PELICAN" not in r.text
    assert [m["id"] for m in client.get("/v1/models", headers=t.alpha).json()["data"]] == ["docs"]
    own = client.post("/v1/chat/completions", json=body | {"model": "docs"}, headers=t.alpha).json()
    assert "PELICAN" not in json.dumps(own)
    assert "PELICAN" in client.post("/v1/chat/completions", json=body, headers=t.beta).json()["choices"][0][
        "message"]["content"]


def test_tenants_live_in_their_own_directories(two_tenants):
    _, t, _ = two_tenants
    if t.backend == "postgres":
        pytest.skip("postgres keeps tenants apart by a column every statement is bound to (tests/store/postgres)")
    base = t.data_dir / "tenants"
    assert (base / "alpha" / "docs" / "ragworks.sqlite3").exists() and (base / "beta" / "secrets").is_dir()
    assert not (base / "alpha" / "secrets").exists()
    assert (base / "beta" / "jobs.sqlite3").exists() and not (t.data_dir / "docs").exists()


def test_keys_are_stored_only_as_hashes(two_tenants):
    _, t, _ = two_tenants
    key = t.alpha["Authorization"].removeprefix("Bearer ")
    secret = key.split("_", 2)[2]
    store = make_key_store(t.settings)
    try:
        _, rows = store.export_rows()  # (id, tenant, secret_sha256, label, created, revoked)
    finally:
        store.close()
    assert len(rows) >= 2 and all(len(r[2]) == 64 for r in rows)  # alpha, beta (+ keys other tests made)
    assert not any(secret in str(field) for r in rows for field in r)
    if t.backend == "embedded":  # not even in the file's free pages
        raw = (t.data_dir / "auth.sqlite3").read_bytes()
        assert key.encode() not in raw and secret.encode() not in raw
    else:  # the database holds them: nothing on the replica's disk
        assert not (t.data_dir / "auth.sqlite3").exists()


def test_cli_admin_creates_tenants_and_keys_and_a_key_turns_auth_on(tmp_path, app_factory, kit):
    data = tmp_path / "data"
    settings = kit.make_settings(data, auth="auto")
    runner = CliRunner()
    with app_factory(settings) as client:
        assert client.get("/v1/collections").status_code == 200, "no admin key, no API keys: auth is off"
        assert runner.invoke(cli_app, ["admin", "create-tenant", "acme", "--data-dir", str(data)]).exit_code == 0
        made = runner.invoke(cli_app, ["admin", "create-key", "acme", "--label", "laptop", "--data-dir", str(data)])
        assert made.exit_code == 0, made.output
        key = made.stdout.strip().splitlines()[-1]
        assert key.startswith("rwk_")
        import time

        time.sleep(2.1)  # auth=auto re-checks for keys every 2 s
        assert client.get("/v1/collections").status_code == 401, "the first key closes the open server"
        assert client.get("/v1/collections", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    listed = runner.invoke(cli_app, ["admin", "list-keys", "acme", "--json", "--data-dir", str(data)])
    assert json.loads(listed.stdout)[0]["label"] == "laptop"
    bad = runner.invoke(cli_app, ["admin", "create-key", "nobody", "--data-dir", str(data)])
    assert bad.exit_code != 0
