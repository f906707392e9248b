"""Sync through the HTTP server: a job with progress in /v1/jobs, counts in /metrics, the schedule, an outage."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.jobs import JobKind
from ragworks.jobs.sync import SyncScheduler
from ragworks.server import create_app
from ragworks.sources.config import SourceList, SourceSpec


def metric(client: TestClient, name: str, **labels: str) -> float:
    want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    return 0.0


def sync(client: TestClient, name: str) -> dict[str, Any]:
    r = client.post(f"/v1/collections/{name}/sync?wait=true")
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["kind"] == "sync" and job["state"] == "completed", job
    return job


def test_sync_job_progress_metrics_schedule_and_outage(tmp_path: Path, embedder: Any) -> None:
    data, folder = tmp_path / "data", tmp_path / "share"
    folder.mkdir()
    (folder / "a.md").write_text("# A\n\nThe ferry leaves at seven.\n")
    (folder / "b.md").write_text("# B\n\nThe lighthouse is painted red and white.\n")
    settings = Settings(data_dir=data, llm="extractive", auth="off", sync_schedule=False, request_timeout_s=60)
    with Collection.open("notes", settings=settings, embedder=embedder, llm=None) as col:
        col.store  # noqa: B018 - creates the empty collection
    SourceList(data / "notes").add(SourceSpec(name="share", kind="folder", location=str(folder), interval_s=60))

    with TestClient(create_app(settings, embedder=embedder, llm=None)) as client:
        assert client.get("/v1/collections/notes/sources").json()["sources"][0]["name"] == "share"
        job = sync(client, "notes")
        counts = job["report"]["sync"]
        assert (counts["seen"], counts["changed"], counts["deleted"], counts["failed"]) == (2, 2, 0, 0)
        assert counts["embedded"] > 0
        assert job["progress"]["files_total"] == 2 and job["progress"]["files_done"] == 2
        assert metric(client, "ragworks_sync_items_total", outcome="changed") == 2

        (folder / "b.md").unlink()
        (folder / "c.md").write_text("# C\n\nThe canal locks open at high water.\n")
        job = sync(client, "notes")
        counts = job["report"]["sync"]
        assert (counts["changed"], counts["deleted"], counts["unchanged"]) == (1, 1, 1)
        listed = client.get("/v1/jobs").json()["jobs"]
        assert [j["kind"] for j in listed[:2]] == ["sync", "sync"]
        assert metric(client, "ragworks_sync_items_total", outcome="deleted") == 1
        docs = {d["source"] for d in client.get("/v1/collections/notes/documents").json()["documents"]}
        assert docs == {str(folder / "a.md"), str(folder / "c.md")}

        folder.rename(tmp_path / "unmounted")  # outage: the job completes, the source is reported, nothing deleted
        started = time.monotonic()
        job = sync(client, "notes")
        assert job["report"]["sources_failed"] == 1 and "not a directory" in job["report"]["sources"][0]["error"]
        assert time.monotonic() - started >= 3.0  # retried with backoff (1 s, 2 s) before giving up
        docs = {d["source"] for d in client.get("/v1/collections/notes/documents").json()["documents"]}
        assert docs == {str(folder / "a.md"), str(folder / "c.md")}

        assert client.post("/v1/collections/notes/sync", json={"sources": ["nope"]}).status_code == 400
        assert client.post("/v1/collections/missing/sync").status_code == 404

        ctx = client.app.state.ctx  # type: ignore[attr-defined]
        schedule = SyncScheduler(ctx.jobs, lambda: [ctx.local_tenant()], ctx.collections.names, watch_folders=False)
        first = schedule.tick(now=1000.0)
        assert [(j.collection, j.kind, j.payload["sources"]) for j in first] == [("notes", JobKind.SYNC, ["share"])]
        ctx.jobs.wait(ctx.local_tenant(), first[0].id, 30)
        assert schedule.tick(now=1030.0) == []  # not due before its 60 s interval
        assert len(schedule.tick(now=1061.0)) == 1


def test_server_keeps_a_folder_current(tmp_path: Path, embedder: Any) -> None:
    """With the schedule on, the server watches folder sources: a change is searchable without anyone syncing."""
    data, folder = tmp_path / "data", tmp_path / "share"
    folder.mkdir()
    (folder / "a.md").write_text("# A\n\nThe ferry leaves at seven.\n")
    settings = Settings(data_dir=data, llm="extractive", auth="off", sync_schedule=True, request_timeout_s=60)
    with Collection.open("notes", settings=settings, embedder=embedder, llm=None) as col:
        col.store  # noqa: B018 - creates the empty collection
    SourceList(data / "notes").add(SourceSpec(name="share", kind="folder", location=str(folder), interval_s=3600))

    def sources_held() -> set[str]:
        return {d["source"] for d in client.get("/v1/collections/notes/documents").json()["documents"]}

    def wait(check: Any, what: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            assert time.monotonic() < deadline, f"{what}: not picked up in {timeout_s} s"
            time.sleep(0.1)

    with TestClient(create_app(settings, embedder=embedder, llm=None)) as client:
        wait(lambda: sources_held() == {str(folder / "a.md")}, "the first scheduled sync")
        (folder / "b.md").write_text("# B\n\nThe canal locks open at high water.\n")
        wait(lambda: str(folder / "b.md") in sources_held(), "a new file")  # the interval is an hour: events did it
        (folder / "a.md").unlink()
        wait(lambda: sources_held() == {str(folder / "b.md")}, "a deleted file")
        jobs = client.get("/v1/collections/notes/jobs").json()["jobs"]
        assert len(jobs) >= 3 and all(j["kind"] == "sync" and j["state"] == "completed" for j in jobs)


def test_a_users_sync_job_is_listed_for_that_user(tmp_path: Path, embedder: Any) -> None:
    from ragworks.server.keys import make_key_store

    data, folder = tmp_path / "data", tmp_path / "share"
    folder.mkdir()
    (folder / "a.md").write_text("# A\n\nThe ferry leaves at seven.\n")
    settings = Settings(data_dir=data, llm="extractive", auth="on", admin_key="sync-admin-key-0123456789",
                        sync_schedule=False, request_timeout_s=60)
    keys = make_key_store(settings)
    keys.create_tenant("acme")
    heads = {who: {"Authorization": f"Bearer {keys.create_key('acme', who, user=who, groups=('staff',))[0]}"}
             for who in ("ann", "bob")}
    keys.close()
    with TestClient(create_app(settings, embedder=embedder, llm=None)) as client:
        assert client.post("/v1/collections", json={"name": "notes"}, headers=heads["ann"]).status_code == 201
        SourceList(data / "tenants" / "acme" / "notes").add(SourceSpec(name="share", kind="folder",
                                                                       location=str(folder)))
        r = client.post("/v1/collections/notes/sync?wait=true", headers=heads["ann"])
        assert r.status_code == 200 and r.json()["state"] == "completed", r.text
        job = r.json()["id"]
        assert [j["id"] for j in client.get("/v1/jobs", headers=heads["ann"]).json()["jobs"]] == [job]
        assert client.get(f"/v1/jobs/{job}", headers=heads["ann"]).status_code == 200
        assert client.get("/v1/jobs", headers=heads["bob"]).json()["jobs"] == []  # another user's job stays theirs
