"""Erasure: deleting a document or a collection leaves no copy of its text in any file of the data directory
(chunks, the FTS5 index, the WAL, uploads, job payloads, the audit log). Embedded backend; every file is read as
bytes and searched for a string planted in the document."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.server import create_app

PLANT = "zqxwvplanted4471"  # one token to every analyzer: lowercase letters and digits, no stemmable ending
PLANT_FILE = "mnbvcuploaded9083"


def _copies(root: Path, *needles: str) -> list[str]:
    """Files under `root` that contain any needle (as UTF-8 bytes)."""
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path.relative_to(root)}: {n}" for n in needles if n.encode() in data]
    return found


def _secret(word: str) -> str:
    return (f"# Vault\n\nThe emergency vault passphrase is {word} and it opens the north door. "
            "Staff rotate it every quarter.")


def test_deleting_a_document_leaves_no_copy_in_any_file(tmp_path: Path, embedder):
    settings = Settings(data_dir=tmp_path / "data", collection="erase", llm="extractive")
    with Collection.open(settings=settings, embedder=embedder, llm=None) as col:
        col.add_text(_secret(PLANT), source="vault.md")
        col.add_text("# Canteen\n\nThe canteen serves soup on Mondays.", source="canteen.md")
        assert col.search("emergency vault passphrase", k=1)[0].source == "vault.md"
        assert _copies(settings.data_dir, PLANT)  # the scan does find the text while it is there
        assert col.delete("vault.md") == 1
        assert _copies(settings.data_dir, PLANT) == []
        assert col.search("canteen soup", k=1)[0].source == "canteen.md"  # the rest still works
        assert col.search(PLANT, k=5, mode="bm25") == []


def test_without_erasure_the_scan_finds_the_deleted_text(tmp_path: Path, embedder):
    """The control: with erase_on_delete off, the deleted text is still in the files (FTS5 segments, WAL)."""
    settings = Settings(data_dir=tmp_path / "data", collection="keep", llm="extractive", erase_on_delete=False)
    with Collection.open(settings=settings, embedder=embedder, llm=None) as col:
        col.add_text(_secret(PLANT), source="vault.md")
        col.add_text("# Canteen\n\nThe canteen serves soup on Mondays.", source="canteen.md")
        col.delete("vault.md")
        assert _copies(settings.data_dir, PLANT)


def _wait(client: TestClient, job_id: str) -> None:
    deadline = time.monotonic() + 60
    while client.get(f"/v1/jobs/{job_id}").json()["state"] not in ("completed", "failed", "cancelled"):
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_api_deletes_leave_no_copy_in_uploads_jobs_audit_or_index(tmp_path: Path, embedder):
    data = tmp_path / "data"
    settings = Settings(data_dir=data, llm="extractive", auth="off", request_timeout_s=60.0)
    with TestClient(create_app(settings, embedder=embedder, llm=None), raise_server_exceptions=False) as c:
        for name in ("docs", "gone"):
            assert c.post("/v1/collections", json={"name": name}).status_code in (200, 201)
        for name in ("docs", "gone"):
            r = c.post(f"/v1/collections/{name}/documents?wait=true",
                       json={"documents": [{"source": "vault.md", "text": _secret(PLANT)},
                                           {"source": "canteen.md", "text": "The canteen serves soup on Mondays."}]})
            assert r.status_code == 200, r.text
            r = c.post(f"/v1/collections/{name}/files?wait=true",
                       files=[("files", ("door.md", _secret(PLANT_FILE).encode(), "text/markdown"))])
            assert r.status_code == 200 and r.json()["state"] == "completed", r.text
            ask = c.post(f"/v1/collections/{name}/ask", json={"question": "What is the emergency vault passphrase?"})
            assert PLANT in ask.text or PLANT_FILE in ask.text
        assert _copies(data, PLANT) and _copies(data, PLANT_FILE)
        for source in ("vault.md", "door.md"):
            assert c.delete(f"/v1/collections/docs/documents/{source}").json()["deleted"] == 1
        assert c.delete("/v1/collections/gone").status_code == 204
        assert _copies(data, PLANT, PLANT_FILE) == []
        assert "soup" in c.post("/v1/collections/docs/search", json={"query": "canteen soup"}).text


def test_postgres_job_table_drops_finished_payload_texts(pg_dsn: str):
    import uuid

    from ragworks.jobs.base import JobKind, JobProgress, JobState
    from ragworks.jobs.pgtable import PostgresJobTable
    from ragworks.store.postgres import make_pool

    pool = make_pool(pg_dsn, max_size=2)
    try:
        table = PostgresJobTable(pool, f"t{uuid.uuid4().hex[:8]}")
        done = table.insert("docs", JobKind.DOCUMENTS, {"documents": [{"source": "v.md", "text": _secret(PLANT)}]},
                            JobProgress())
        queued = table.insert("docs", JobKind.DOCUMENTS, {"documents": [{"source": "w.md", "text": PLANT}]},
                              JobProgress())
        table.finish(done.id, JobState.COMPLETED)
        assert table.get(done.id).payload["documents"] == [{"source": "v.md", "text": ""}]
        assert table.get(queued.id).payload["documents"][0]["text"] == PLANT  # still needed to run
        table.cancel_collection("docs")
        assert table.get(queued.id).payload["documents"][0]["text"] == ""
    finally:
        pool.close()
