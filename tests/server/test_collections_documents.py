"""Collections and documents through the API: create, list, add (JSON and multipart), get with chunks, delete."""

from __future__ import annotations

import hashlib


def test_collection_lifecycle_create_list_stats_delete(client):
    r = client.post("/v1/collections", json={"name": "team"})
    assert r.status_code == 201 and r.json()["name"] == "team" and r.json()["created"] is True
    assert "path" not in r.json(), "the server's directory layout is not shown to clients"
    assert client.post("/v1/collections", json={"name": "team"}).status_code == 200  # idempotent
    assert [c["name"] for c in client.get("/v1/collections").json()["collections"]] == ["team"]
    stats = client.get("/v1/collections/team").json()
    assert stats["documents"] == 0 and stats["embedding_model"] == "st:all-MiniLM-L6-v2"
    assert client.delete("/v1/collections/team").status_code == 204
    assert client.get("/v1/collections/team").status_code == 404
    assert client.get("/v1/collections").json()["collections"] == []


def test_text_documents_are_ingested_by_a_job_and_listed_with_chunks_and_offsets(client, kit):
    client.post("/v1/collections", json={"name": "team"})
    job = kit.add_text(client, "team", "ops/keys.md", kit.KEY_ROTATION, title="Keys", metadata={"team": "infra"})
    assert job["kind"] == "documents" and job["report"]["new"] == 1 and job["progress"]["chunks_written"] >= 1

    docs = client.get("/v1/collections/team/documents").json()["documents"]
    assert [(d["source"], d["title"], d["metadata"]) for d in docs] == [("ops/keys.md", "Keys", {"team": "infra"})]

    got = client.get(f"/v1/collections/team/documents/{docs[0]['id']}").json()
    assert got["text"] == kit.KEY_ROTATION
    assert got["chunk_list"] and all(got["text"][c["start"]:c["end"]] == c["text"] for c in got["chunk_list"])
    assert {tuple(c["heading_path"]) for c in got["chunk_list"]} >= {("Key rotation",), ("Backups",)}
    by_source = client.get("/v1/collections/team/documents/ops/keys.md").json()  # a source works as the ref too
    assert by_source["id"] == docs[0]["id"]


def test_a_batch_of_documents_and_replacing_one_by_its_source(client, kit):
    client.post("/v1/collections", json={"name": "team"})
    r = client.post("/v1/collections/team/documents?wait=true", json={"documents": [
        {"source": "a", "text": kit.KEY_ROTATION}, {"source": "b", "text": kit.LIGHTHOUSE}]})
    assert r.status_code == 200 and r.json()["report"]["new"] == 2
    again = kit.add_text(client, "team", "b", kit.LIGHTHOUSE + " It was automated in 1990.")
    assert again["report"]["updated"] == 1
    unchanged = kit.add_text(client, "team", "a", kit.KEY_ROTATION)
    assert unchanged["report"]["unchanged"] == 1 and unchanged["report"]["chunks_embedded"] == 0
    docs = client.get("/v1/collections/team/documents").json()["documents"]
    assert sorted(d["source"] for d in docs) == ["a", "b"]


def test_listing_documents_pages_by_source_with_the_next_after_cursor(client, kit):
    client.post("/v1/collections", json={"name": "team"})
    sources = [f"doc-{i:02d}" for i in range(7)]
    client.post("/v1/collections/team/documents?wait=true",
                json={"documents": [{"source": s, "text": f"{kit.LIGHTHOUSE} Copy {s}."} for s in sources]})
    seen, after = [], None
    while True:
        page = client.get("/v1/collections/team/documents", params={"limit": 3, **({"after": after} if after
                                                                                    else {})}).json()
        seen += [d["source"] for d in page["documents"]]
        after = page["next_after"]
        if after is None:
            break
    assert seen == sources  # every document once, in source order


def test_uploaded_files_are_stored_content_addressed_and_named_by_their_file_name(client, tmp_path):
    client.post("/v1/collections", json={"name": "team"})
    body = b"# Fog signals\n\nA diaphone fog signal sounds two blasts every minute in thick weather."
    r = client.post("/v1/collections/team/files?wait=true", data={"metadata": '{"kind": "manual"}'},
                    files=[("files", ("manuals/fog.md", body, "text/markdown"))])
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["state"] == "completed" and job["report"]["new"] == 1
    sha = hashlib.sha256(body).hexdigest()
    assert job["files"] == [{"source": "manuals/fog.md", "size": len(body), "sha256": sha}]
    assert (tmp_path / "data" / "team" / "uploads" / sha / "fog.md").read_bytes() == body
    docs = client.get("/v1/collections/team/documents").json()["documents"]
    assert [(d["source"], d["metadata"]) for d in docs] == [("manuals/fog.md", {"kind": "manual"})]


def test_an_upload_is_deleted_with_the_last_document_from_it(client, tmp_path):
    client.post("/v1/collections", json={"name": "team"})
    fog, tide = b"# Fog\n\nA diaphone sounds two blasts a minute.", b"# Tides\n\nSpring tides follow full moons."
    r = client.post("/v1/collections/team/files?wait=true",
                    files=[("files", ("fog.md", fog, "text/markdown")), ("files", ("tide.md", tide, "text/markdown"))])
    assert r.json()["state"] == "completed", r.text
    uploads = tmp_path / "data" / "team" / "uploads"
    fog_file = uploads / hashlib.sha256(fog).hexdigest() / "fog.md"
    tide_file = uploads / hashlib.sha256(tide).hexdigest() / "tide.md"
    assert fog_file.exists() and tide_file.exists()
    assert client.delete("/v1/collections/team/documents/fog.md").json() == {"deleted": 1}
    assert not fog_file.exists() and not fog_file.parent.exists()
    assert tide_file.read_bytes() == tide, "the other document's upload stays"


def test_an_upload_returns_202_with_the_job_location_then_the_job_completes(client, kit):
    client.post("/v1/collections", json={"name": "team"})
    r = client.post("/v1/collections/team/files", files=[
        ("files", ("one.txt", b"The first file talks about tides and harbours at length.", "text/plain")),
        ("files", ("two.md", b"# Two\n\nThe second file talks about buoys and their colours.", "text/markdown"))])
    assert r.status_code == 202
    assert r.headers["location"] == f"/v1/jobs/{r.json()['id']}"
    assert r.json()["state"] in ("queued", "running", "completed")
    job = kit.wait_for_job(client, r.json()["id"])
    assert job["state"] == "completed"
    assert job["progress"]["files_done"] == job["progress"]["files_total"] == 2
    assert job["report"]["new"] == 2 and job["progress"]["chunks_written"] == job["report"]["chunks_written"] >= 2


def test_a_file_that_does_not_load_fails_alone_and_is_reported(client):
    client.post("/v1/collections", json={"name": "team"})
    r = client.post("/v1/collections/team/files?wait=true", files=[
        ("files", ("good.txt", b"Good text about the harbour master and the pilot boats.", "text/plain")),
        ("files", ("broken.pdf", b"%PDF-1.4 this is not really a pdf", "application/pdf"))])
    job = r.json()
    assert job["state"] == "completed" and job["report"]["new"] == 1 and job["report"]["failed"] == 1
    assert job["report"]["failures"][0]["reason"] == "corrupt"


def test_deleting_documents_by_id_and_by_glob(client, kit):
    client.post("/v1/collections", json={"name": "team"})
    client.post("/v1/collections/team/documents?wait=true", json={"documents": [
        {"source": "notes/a.md", "text": kit.KEY_ROTATION}, {"source": "notes/b.md", "text": kit.LIGHTHOUSE},
        {"source": "other.md", "text": "Other text about charts and compasses for navigation."}]})
    docs = {d["source"]: d["id"] for d in client.get("/v1/collections/team/documents").json()["documents"]}
    assert client.delete(f"/v1/collections/team/documents/{docs['other.md']}").json() == {"deleted": 1}
    assert client.delete("/v1/collections/team/documents/notes/*").json() == {"deleted": 2}
    assert client.get("/v1/collections/team/documents").json()["documents"] == []
    r = client.delete("/v1/collections/team/documents/notes/*")
    assert r.status_code == 404 and r.json()["error"]["type"] == "document_not_found"


def test_missing_things_are_404_with_a_json_error(client):
    r = client.get("/v1/collections/nope/documents")
    assert r.status_code == 404 and r.json() == {"error": {"type": "collection_not_found",
                                                           "message": "no collection 'nope'"}}
    client.post("/v1/collections", json={"name": "team"})
    r = client.get("/v1/collections/team/documents/no-such-doc")
    assert r.status_code == 404 and r.json()["error"]["type"] == "document_not_found"
    assert client.post("/v1/collections/nope/documents", json={"source": "a", "text": "b"}).status_code == 404
    assert client.get("/v1/jobs/0123456789abcdef").status_code == 404
    assert client.get("/v1/no-such-route").json()["error"]["type"] == "not_found"
