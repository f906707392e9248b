"""Job leases carry an owner token: after a takeover, only the current owner's renewals, progress and outcome land
(real SQLite and PostgreSQL job tables; a real JobRunner with the real model for the stopped-run case)."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.jobs.base import JobKind, JobProgress, JobState
from ragworks.jobs.distributed import JobTableLike
from ragworks.jobs.table import JobTable
from ragworks.tenancy import LOCAL_TENANT, tenant_for
from ragworks.worker.runner import LEASE_LOST, JobRunner

_PG_SCHEMA = "lease_tests"


@pytest.fixture(params=["sqlite", "postgres"])
def two_tables(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[JobTableLike, JobTableLike]]:
    """Two handles on one tenant's job table, as two worker processes would hold them."""
    if request.param == "sqlite":
        first, second = JobTable(tmp_path / "jobs.sqlite3"), JobTable(tmp_path / "jobs.sqlite3")
        yield first, second
        first.close()
        second.close()
        return
    import psycopg

    from ragworks.jobs.pgtable import PostgresJobTable
    from ragworks.store.postgres import shared_pool

    dsn = request.getfixturevalue("pg_dsn")
    with psycopg.connect(dsn, autocommit=True) as conn:  # the API tests' schema never sees these unfinished jobs
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_PG_SCHEMA}")
    pool = shared_pool(dsn)
    tenant = f"t{uuid.uuid4().hex[:10]}"  # one database for every test
    yield PostgresJobTable(pool, tenant, _PG_SCHEMA), PostgresJobTable(pool, tenant, _PG_SCHEMA)


def _progress(documents: int) -> JobProgress:
    return JobProgress(files_total=4, files_done=documents, documents=documents, chunks_written=documents)


def test_after_a_takeover_only_the_new_owner_renews_reports_progress_and_finishes(
        two_tables: tuple[JobTableLike, JobTableLike]) -> None:
    first, second = two_tables
    job = first.insert("notes", JobKind.DOCUMENTS, {"documents": []}, JobProgress(files_total=4))
    old = first.claim(job.id, 0.05)
    assert old is not None
    assert first.set_progress(job.id, _progress(1), owner=old)
    time.sleep(0.1)  # the first worker is cut off from the database longer than its lease
    new = second.claim(job.id, 30.0)
    assert new is not None and new != old

    assert not first.renew(job.id, 30.0, old), "a lapsed, taken-over lease is not renewed"
    assert not first.set_progress(job.id, _progress(3), owner=old)
    assert second.set_progress(job.id, _progress(2), owner=new)
    assert not first.finish(job.id, JobState.FAILED, error="stale worker", report={"by": "old"}, owner=old)
    assert second.renew(job.id, 30.0, new)
    assert second.finish(job.id, JobState.COMPLETED, report={"by": "new"}, owner=new)
    assert not first.finish(job.id, JobState.FAILED, error="stale worker", owner=old), "nor after it finished"

    done = first.get(job.id)
    assert done.state is JobState.COMPLETED and done.report == {"by": "new"} and done.error == ""
    assert done.progress.documents == 2 and done.attempts == 2


def test_a_live_lease_cannot_be_claimed_and_its_owner_keeps_renewing(
        two_tables: tuple[JobTableLike, JobTableLike]) -> None:
    first, second = two_tables
    job = first.insert("notes", JobKind.DOCUMENTS, {"documents": []}, JobProgress())
    owner = first.claim(job.id, 30.0)
    assert owner is not None
    assert second.claim(job.id, 30.0) is None
    assert first.renew(job.id, 30.0, owner)
    assert not second.renew(job.id, 30.0, uuid.uuid4().hex), "a stranger's token renews nothing"
    assert first.get(job.id).attempts == 1


def test_unowned_writes_still_work_for_the_api_and_the_embedded_queue(
        two_tables: tuple[JobTableLike, JobTableLike]) -> None:
    table, _ = two_tables
    job = table.insert("notes", JobKind.DOCUMENTS, {"documents": []}, JobProgress())
    assert table.set_progress(job.id, _progress(1))
    assert table.finish(job.id, JobState.FAILED, error="could not enqueue")
    assert table.get(job.id).state is JobState.FAILED


def test_orphans_are_unfinished_jobs_that_no_worker_holds(two_tables: tuple[JobTableLike, JobTableLike]) -> None:
    table, _ = two_tables
    queued, lapsed, held, finished, young = (
        table.insert("notes", JobKind.DOCUMENTS, {"documents": []}, JobProgress()) for _ in range(5))
    assert table.claim(lapsed.id, 0.01) and table.claim(held.id, 60.0)
    finished_owner = table.claim(finished.id, 60.0)
    assert finished_owner is not None and table.finish(finished.id, JobState.COMPLETED, owner=finished_owner)
    time.sleep(0.05)
    assert set(table.orphans(time.time())) == {queued.id, lapsed.id, young.id}
    assert set(table.orphans(young.created)) == {queued.id, lapsed.id}, "jobs younger than the cutoff wait"


def test_a_job_table_made_before_owner_tokens_gains_the_column(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE jobs(id TEXT PRIMARY KEY, collection TEXT NOT NULL, kind TEXT NOT NULL, "
                "payload TEXT NOT NULL, state TEXT NOT NULL, cancel_requested INTEGER NOT NULL DEFAULT 0, "
                "attempts INTEGER NOT NULL DEFAULT 0, progress TEXT NOT NULL DEFAULT '{}', report TEXT, "
                "error TEXT NOT NULL DEFAULT '', created REAL NOT NULL, started REAL, finished REAL)")
    old.execute("INSERT INTO jobs(id, collection, kind, payload, state, created) "
                "VALUES('j1', 'notes', 'documents', '{\"documents\": []}', 'queued', 1.0)")
    old.commit()
    old.close()
    table = JobTable(path)
    owner = table.claim("j1", 30.0)
    assert owner is not None and table.renew("j1", 30.0, owner)
    table.close()


def test_a_postgres_job_table_made_before_owner_tokens_gains_the_column(pg_dsn: str) -> None:
    import psycopg

    from ragworks.jobs.pgtable import PostgresJobTable
    from ragworks.store.postgres import shared_pool

    schema = f"old_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"CREATE TABLE {schema}.jobs(tenant TEXT NOT NULL, id TEXT NOT NULL, collection TEXT NOT NULL, "
                     "kind TEXT NOT NULL, payload JSONB NOT NULL, state TEXT NOT NULL, cancel_requested BOOLEAN NOT "
                     "NULL DEFAULT false, attempts INTEGER NOT NULL DEFAULT 0, progress JSONB NOT NULL DEFAULT '{}', "
                     "report JSONB, error TEXT NOT NULL DEFAULT '', created DOUBLE PRECISION NOT NULL, started "
                     "DOUBLE PRECISION, finished DOUBLE PRECISION, lease_until DOUBLE PRECISION, "
                     "PRIMARY KEY (tenant, id))")
        conn.execute(f"INSERT INTO {schema}.jobs(tenant, id, collection, kind, payload, state, created) "
                     "VALUES('acme', 'j1', 'notes', 'documents', '{\"documents\": []}', 'queued', 1.0)")
    table = PostgresJobTable(shared_pool(pg_dsn), "acme", schema)
    owner = table.claim("j1", 30.0)
    assert owner is not None and table.renew("j1", 30.0, owner)
    assert table.finish("j1", JobState.COMPLETED, owner=owner)


class _GatedEmbedder:
    """The real embedder; its first call waits until the test has taken the job over from the runner."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name, self.dimension, self.max_tokens = inner.name, inner.dimension, inner.max_tokens
        self.embedding = threading.Event()
        self.release = threading.Event()

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.embedding.set()
        assert self.release.wait(60), "the test never released the embedder"
        return self.inner.embed_documents(texts)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.embed_queries(texts)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.inner.count_tokens(texts)


@pytest.mark.slow
def test_a_worker_whose_lease_was_taken_over_stops_and_leaves_the_outcome_to_the_new_owner(
        tmp_path: Path, embedder: Any) -> None:
    settings = Settings(data_dir=tmp_path / "data", queue_backend="celery", celery_visibility_timeout_s=60,
                        llm="extractive")
    tenant = tenant_for(settings, LOCAL_TENANT)
    col = Collection.open(str(tenant.collection_dir("notes")), settings=settings, embedder=embedder, llm=None)
    col.store  # noqa: B018 - creates the collection's directory and database, as the API's create does
    col.close()
    docs = [{"source": f"log-{i}.md", "text": f"Entry {i}: the ferry left pier {i} at dawn.", "title": "",
             "metadata": {}} for i in range(100)]  # two groups of documents: the run is stopped after the first
    table = JobTable(tenant.jobs_db)
    job = table.insert("notes", JobKind.DOCUMENTS, {"documents": docs}, JobProgress(files_total=len(docs)))

    gated = _GatedEmbedder(embedder)
    runner = JobRunner(settings, embedder=gated)
    outcome: list[Any] = []
    worker = threading.Thread(target=lambda: outcome.append(runner.run(LOCAL_TENANT, job.id)))
    worker.start()
    try:
        assert gated.embedding.wait(60), f"the runner never started embedding: {outcome}"
        # its lease lapses (the runner's database connection was cut) and another worker claims the job
        with sqlite3.connect(tenant.jobs_db) as db:
            db.execute("UPDATE jobs SET lease_until = 0 WHERE id = ?", (job.id,))
        thief = table.claim(job.id, 60.0)
        assert thief is not None
    finally:
        gated.release.set()
        worker.join(60)
    assert outcome and outcome[0].state == LEASE_LOST, outcome

    taken = table.get(job.id)
    assert taken.state is JobState.RUNNING and taken.attempts == 2
    assert taken.progress.documents == 0, "the stale run's progress did not land"
    assert table.finish(job.id, JobState.COMPLETED, report={"by": "new owner"}, owner=thief)
    assert table.get(job.id).report == {"by": "new owner"}
    table.close()


def test_ingest_totals_and_live_leases_are_read_from_the_table(two_tables: tuple[JobTableLike, JobTableLike]) -> None:
    table, _ = two_tables
    done, running, lapsed = (table.insert("notes", JobKind.DOCUMENTS, {"documents": []}, JobProgress())
                             for _ in range(3))
    owner = table.claim(done.id, 60.0)
    assert owner is not None and table.finish(done.id, JobState.COMPLETED, progress=_progress(3), owner=owner)
    owner = table.claim(running.id, 60.0)
    assert owner is not None and table.set_progress(running.id, _progress(2), owner=owner)
    assert table.claim(lapsed.id, 0.01)
    time.sleep(0.05)
    totals = table.ingest_totals()
    assert (totals.files, totals.documents, totals.chunks) == (5, 5, 5)
    assert totals.finished == {"completed": 1}
    assert table.count_leased() == 1, "only the running job whose lease is live"
