"""Embedded-mode jobs: the persistent table, cancel, and resuming after a restart (before and during a run)."""

from __future__ import annotations

import sqlite3
import time

from ragworks.jobs.table import JobTable


def _files(n: int) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (f"part-{i}.txt", f"Part {i} of the harbour log records ship {i} arriving at dawn on day {i}."
                       .encode(), "text/plain")) for i in range(n)]


def test_a_job_queued_by_a_stopped_server_completes_when_the_next_one_starts(tmp_path, app_factory, kit):
    settings = kit.make_settings(tmp_path / "data")
    with app_factory(settings, start_jobs=False) as first:
        first.post("/v1/collections", json={"name": "team"})
        job = first.post("/v1/collections/team/files", files=_files(2)).json()
        time.sleep(0.3)
        assert first.get(f"/v1/jobs/{job['id']}").json()["state"] == "queued"
    with app_factory(settings) as second:
        done = kit.wait_for_job(second, job["id"])
        assert done["state"] == "completed" and done["report"]["new"] == 2 and done["attempts"] == 1
        assert len(second.get("/v1/collections/team/documents").json()["documents"]) == 2


def test_a_server_stopped_mid_job_leaves_it_queued_and_the_next_one_finishes_it(tmp_path, app_factory, kit, embedder):
    settings = kit.make_settings(tmp_path / "data")
    slow = kit.SlowEmbedder(embedder, passage_delay_s=0.4)
    with app_factory(settings, embedder_override=slow) as first:
        first.post("/v1/collections", json={"name": "team"})
        job = first.post("/v1/collections/team/files", files=_files(6)).json()
        deadline = time.monotonic() + 30
        while first.get(f"/v1/jobs/{job['id']}").json()["progress"]["files_done"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    # the app's shutdown stopped the worker between two files
    table = JobTable(tmp_path / "data" / "jobs.sqlite3")
    stopped = table.get(job["id"])
    table.close()
    assert stopped.state.value == "queued" and 1 <= stopped.progress.files_done < 6
    assert stopped.attempts == 0, "a graceful stop is not a failed attempt"

    with app_factory(settings) as second:
        done = kit.wait_for_job(second, job["id"])
        assert done["state"] == "completed"
        assert done["report"]["unchanged"] >= 1, "files finished before the stop are not embedded again"
        assert done["report"]["new"] + done["report"]["unchanged"] == 6
        docs = second.get("/v1/collections/team/documents?limit=100").json()["documents"]
        assert len(docs) == 6 and all(d["chunks"] == 1 for d in docs)
        stats = second.get("/v1/collections/team").json()
        assert stats["chunks"] == 6 and stats["vectors"] == 6, "no duplicated chunks"


def test_a_job_left_running_by_a_crashed_server_is_resumed_and_counts_the_attempt(tmp_path, app_factory, kit):
    settings = kit.make_settings(tmp_path / "data")
    with app_factory(settings, start_jobs=False) as first:
        first.post("/v1/collections", json={"name": "team"})
        job = first.post("/v1/collections/team/files", files=_files(1)).json()
    db = sqlite3.connect(tmp_path / "data" / "jobs.sqlite3")  # what a kill -9 mid-run leaves behind
    db.execute("UPDATE jobs SET state = 'running', attempts = 1 WHERE id = ?", (job["id"],))
    db.commit()
    db.close()
    with app_factory(settings) as second:
        done = kit.wait_for_job(second, job["id"])
        assert done["state"] == "completed" and done["attempts"] == 2


def test_a_job_that_keeps_dying_with_the_server_is_given_up(tmp_path, app_factory, kit):
    settings = kit.make_settings(tmp_path / "data", job_max_attempts=2)
    with app_factory(settings, start_jobs=False) as first:
        first.post("/v1/collections", json={"name": "team"})
        job = first.post("/v1/collections/team/files", files=_files(1)).json()
    db = sqlite3.connect(tmp_path / "data" / "jobs.sqlite3")
    db.execute("UPDATE jobs SET state = 'running', attempts = 2 WHERE id = ?", (job["id"],))
    db.commit()
    db.close()
    with app_factory(settings) as second:
        done = kit.wait_for_job(second, job["id"])
        assert done["state"] == "failed" and "gave up after 2 attempts" in done["error"]


def test_cancelling_a_queued_job_means_it_never_runs(tmp_path, app_factory, kit):
    settings = kit.make_settings(tmp_path / "data")
    with app_factory(settings, start_jobs=False) as first:
        first.post("/v1/collections", json={"name": "team"})
        job = first.post("/v1/collections/team/files", files=_files(1)).json()
        r = first.post(f"/v1/jobs/{job['id']}/cancel")
        assert r.status_code == 200 and r.json()["state"] == "cancelled"
    with app_factory(settings) as second:
        time.sleep(0.5)
        assert second.get(f"/v1/jobs/{job['id']}").json()["state"] == "cancelled"
        assert second.get("/v1/collections/team/documents").json()["documents"] == []


def test_cancelling_a_running_job_stops_it_at_the_next_file(tmp_path, app_factory, kit, embedder):
    slow = kit.SlowEmbedder(embedder, passage_delay_s=0.3)
    with app_factory(kit.make_settings(tmp_path / "data"), embedder_override=slow) as client:
        client.post("/v1/collections", json={"name": "team"})
        job = client.post("/v1/collections/team/files", files=_files(8)).json()
        while client.get(f"/v1/jobs/{job['id']}").json()["state"] != "running":
            time.sleep(0.02)
        assert client.post(f"/v1/jobs/{job['id']}/cancel").json()["cancel_requested"] is True
        done = kit.wait_for_job(client, job["id"])
        assert done["state"] == "cancelled" and done["progress"]["files_done"] < 8
        finished = client.post(f"/v1/jobs/{job['id']}/cancel").json()
        assert finished["state"] == "cancelled", "cancelling a finished job changes nothing"


def test_jobs_are_listed_newest_first_per_collection(client, kit):
    for name in ("a", "b"):
        client.post("/v1/collections", json={"name": name})
    kit.add_text(client, "a", "x", kit.LIGHTHOUSE)
    kit.add_text(client, "b", "y", kit.KEY_ROTATION)
    kit.add_text(client, "a", "z", kit.KEY_ROTATION)
    assert [j["collection"] for j in client.get("/v1/jobs").json()["jobs"]] == ["a", "b", "a"]
    listed = client.get("/v1/collections/a/jobs").json()["jobs"]
    assert [j["progress"]["documents"] for j in listed] == [1, 1] and all(j["collection"] == "a" for j in listed)


def test_deleting_a_collection_cancels_its_queued_jobs(tmp_path, app_factory, kit):
    with app_factory(kit.make_settings(tmp_path / "data"), start_jobs=False) as client:
        client.post("/v1/collections", json={"name": "team"})
        job = client.post("/v1/collections/team/files", files=_files(1)).json()
        assert client.delete("/v1/collections/team").status_code == 204
        gone = client.get(f"/v1/jobs/{job['id']}").json()
        assert gone["state"] == "cancelled" and gone["error"] == "collection deleted"
