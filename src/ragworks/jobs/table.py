"""The persistent job table: one SQLite file per tenant (`<tenant root>/jobs.sqlite3`).

Per tenant, like the collections, so a job id from one tenant does not even exist in another's table.
A Celery worker claims a job with a lease and a fresh owner token; its renewals, progress and outcome only land
while it is still the owner, so a worker whose lease lapsed (and was taken over) cannot overwrite the new run.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from ragworks.errors import JobNotFound
from ragworks.jobs.base import IngestTotals, Job, JobKind, JobProgress, JobState

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS jobs(id TEXT PRIMARY KEY, collection TEXT NOT NULL, kind TEXT NOT NULL, "
    "payload TEXT NOT NULL, state TEXT NOT NULL, cancel_requested INTEGER NOT NULL DEFAULT 0, "
    "attempts INTEGER NOT NULL DEFAULT 0, progress TEXT NOT NULL DEFAULT '{}', report TEXT, "
    "error TEXT NOT NULL DEFAULT '', created REAL NOT NULL, started REAL, finished REAL, lease_until REAL, "
    "owner TEXT)",
    "CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, created)",
    "CREATE INDEX IF NOT EXISTS jobs_collection ON jobs(collection, created)",
)
_COLUMNS = ("id, collection, kind, payload, state, cancel_requested, attempts, progress, report, error, created, "
            "started, finished")


def _job(r: tuple[Any, ...]) -> Job:
    return Job(
        id=r[0], collection=r[1], kind=JobKind(r[2]), payload=json.loads(r[3]), state=JobState(r[4]),
        cancel_requested=bool(r[5]), attempts=r[6], progress=JobProgress(**json.loads(r[7])),
        report=json.loads(r[8]) if r[8] else None, error=r[9], created=r[10], started=r[11], finished=r[12],
    )


def _owned(job_id: str, owner: str | None) -> tuple[str, tuple[Any, ...]]:
    """The WHERE clause for a write by the claim `owner` (any writer when None: the embedded queue, the API)."""
    if owner is None:
        return "id = ?", (job_id,)
    return "id = ? AND state = 'running' AND owner = ?", (job_id, owner)


class JobTable:
    """Jobs of one tenant. Thread-safe; every write is its own transaction."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._conn = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA secure_delete=ON")  # a scrubbed payload's old bytes are zeroed, not left
        self._lock = threading.Lock()
        with self._lock:
            for stmt in _SCHEMA:
                self._conn.execute(stmt)
            columns = {r[1] for r in self._conn.execute("PRAGMA table_info(jobs)")}
            if "lease_until" not in columns:  # a table made before Celery workers existed
                self._conn.execute("ALTER TABLE jobs ADD COLUMN lease_until REAL")
            if "owner" not in columns:  # a table made before leases had owners
                self._conn.execute("ALTER TABLE jobs ADD COLUMN owner TEXT")

    def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        with self._lock:
            return self._conn.execute(sql, args).rowcount

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def insert(self, collection: str, kind: JobKind, payload: dict[str, Any], progress: JobProgress) -> Job:
        job = Job(uuid.uuid4().hex, collection, kind, JobState.QUEUED, payload, time.time(), progress)
        self._exec(
            "INSERT INTO jobs(id, collection, kind, payload, state, progress, created) VALUES(?, ?, ?, ?, ?, ?, ?)",
            (job.id, collection, kind.value, json.dumps(payload), job.state.value, json.dumps(progress.to_dict()),
             job.created),
        )
        return job

    def get(self, job_id: str) -> Job:
        rows = self._rows(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            raise JobNotFound(f"no job {job_id!r}")
        return _job(rows[0])

    def recent(self, collection: str | None = None, *, limit: int = 50) -> list[Job]:
        if collection is None:
            rows = self._rows(f"SELECT {_COLUMNS} FROM jobs ORDER BY created DESC LIMIT ?", (limit,))
        else:
            rows = self._rows(f"SELECT {_COLUMNS} FROM jobs WHERE collection = ? ORDER BY created DESC LIMIT ?",
                              (collection, limit))
        return [_job(r) for r in rows]

    def unfinished(self) -> list[Job]:
        rows = self._rows(f"SELECT {_COLUMNS} FROM jobs WHERE state IN ('queued', 'running') ORDER BY created")
        return [_job(r) for r in rows]

    def count_unfinished(self) -> int:
        return int(self._rows("SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')")[0][0])

    def count_leased(self) -> int:
        """Running jobs whose worker renewed its lease in time: proof that a worker process is alive."""
        return int(self._rows("SELECT count(*) FROM jobs WHERE state = 'running' AND lease_until > ?",
                              (time.time(),))[0][0])

    def ingest_totals(self) -> IngestTotals:
        """Files, documents and chunks of every job's progress, and finished jobs by state."""
        files, documents, chunks = self._rows(
            "SELECT coalesce(sum(json_extract(progress, '$.files_done')), 0), "
            "coalesce(sum(json_extract(progress, '$.documents')), 0), "
            "coalesce(sum(json_extract(progress, '$.chunks_written')), 0) FROM jobs")[0]
        finished = self._rows("SELECT state, count(*) FROM jobs WHERE state IN ('completed', 'failed', 'cancelled') "
                              "GROUP BY state")
        return IngestTotals(int(files), int(documents), int(chunks), {s: int(n) for s, n in finished})

    def orphans(self, created_before: float) -> list[str]:
        """Unfinished jobs (created before `created_before`) that no worker holds: queued, or running with a
        lapsed lease. Their Celery message may be lost; the caller checks the broker."""
        rows = self._rows("SELECT id FROM jobs WHERE state IN ('queued', 'running') AND coalesce(lease_until, 0) < ? "
                          "AND created < ? ORDER BY created", (time.time(), created_before))
        return [r[0] for r in rows]

    def mark_running(self, job_id: str) -> bool:
        """Claim a queued job (counting the attempt); False if it is no longer queued (cancelled meanwhile)."""
        return self._exec(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, started = coalesce(started, ?), "
            "owner = NULL WHERE id = ? AND state = 'queued'", (time.time(), job_id)) == 1

    def claim(self, job_id: str, lease_s: float) -> str | None:
        """Claim a job for a worker process until `lease_s` from now: a queued one, or a running one whose
        worker stopped renewing its lease (killed, or cut off from the database). Counts the attempt and returns
        the new owner token; None if another worker holds it or it is finished."""
        now, owner = time.time(), uuid.uuid4().hex
        claimed = self._exec(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, started = coalesce(started, ?), "
            "lease_until = ?, owner = ? WHERE id = ? AND (state = 'queued' OR (state = 'running' AND "
            "coalesce(lease_until, 0) < ?))", (now, now + lease_s, owner, job_id, now)) == 1
        return owner if claimed else None

    def renew(self, job_id: str, lease_s: float, owner: str) -> bool:
        """Extend a running job's lease; False when `owner` no longer holds it (another worker took it over)."""
        return self._exec("UPDATE jobs SET lease_until = ? WHERE id = ? AND state = 'running' AND owner = ?",
                          (time.time() + lease_s, job_id, owner)) == 1

    def lease_left(self, job_id: str) -> float:
        """Seconds until a running job's lease expires (0 when not running or expired)."""
        rows = self._rows("SELECT lease_until FROM jobs WHERE id = ? AND state = 'running'", (job_id,))
        return max(0.0, (rows[0][0] or 0.0) - time.time()) if rows else 0.0

    def requeue(self, job_id: str, *, graceful: bool = False) -> None:
        """Back to queued. A graceful stop does not count as an attempt; a crash (found at start) does."""
        self._exec("UPDATE jobs SET state = 'queued', attempts = attempts - ?, lease_until = NULL, owner = NULL "
                   "WHERE id = ? AND state = 'running'", (int(graceful), job_id))

    def set_progress(self, job_id: str, progress: JobProgress, *, owner: str | None = None) -> bool:
        """Record progress; with `owner`, only while that claim still holds the job (False otherwise)."""
        where, args = _owned(job_id, owner)
        return self._exec(f"UPDATE jobs SET progress = ? WHERE {where}",
                          (json.dumps(progress.to_dict()), *args)) == 1

    def finish(self, job_id: str, state: JobState, *, progress: JobProgress | None = None,
               report: dict[str, Any] | None = None, error: str = "", owner: str | None = None) -> bool:
        """Record the outcome; with `owner`, only while that claim still holds the job (False otherwise)."""
        sets, args = "state = ?, finished = ?, error = ?, lease_until = NULL", [state.value, time.time(), error]
        if progress is not None:
            sets += ", progress = ?"
            args.append(json.dumps(progress.to_dict()))
        if report is not None:
            sets += ", report = ?"
            args.append(json.dumps(report))
        where, where_args = _owned(job_id, owner)
        done = self._exec(f"UPDATE jobs SET {sets} WHERE {where}", (*args, *where_args)) == 1
        self._scrub_finished()
        return done

    def _scrub_finished(self) -> None:
        """Drop the document texts of finished jobs' payloads: once written (or given up), the text lives in the
        collection alone, so deleting a document there leaves no copy here (the sources stay, for the record)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, payload FROM jobs WHERE kind = ? AND state IN ('completed', 'failed', 'cancelled') "
                "AND json_extract(payload, '$.texts_erased') IS NULL", (JobKind.DOCUMENTS.value,)).fetchall()
            for job_id, raw in rows:
                payload = json.loads(raw)
                payload["documents"] = [{**d, "text": ""} for d in payload.get("documents", [])]
                payload["texts_erased"] = True
                self._conn.execute("UPDATE jobs SET payload = ? WHERE id = ?", (json.dumps(payload), job_id))
            if rows:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def request_cancel(self, job_id: str) -> Job:
        """Cancel a queued job at once; flag a running one (the worker stops at its next file)."""
        self.get(job_id)  # JobNotFound
        with self._lock:
            self._conn.execute("UPDATE jobs SET state = 'cancelled', cancel_requested = 1, finished = ? "
                               "WHERE id = ? AND state = 'queued'", (time.time(), job_id))
            self._conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND state = 'running'", (job_id,))
        self._scrub_finished()
        return self.get(job_id)

    def cancel_requested(self, job_id: str) -> bool:
        rows = self._rows("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,))
        return bool(rows and rows[0][0])

    def cancel_collection(self, collection: str) -> None:
        """The collection is being deleted: its queued jobs are cancelled, running ones flagged."""
        with self._lock:
            self._conn.execute("UPDATE jobs SET state = 'cancelled', cancel_requested = 1, finished = ?, "
                               "error = 'collection deleted' WHERE collection = ? AND state = 'queued'",
                               (time.time(), collection))
            self._conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE collection = ? AND state = 'running'",
                               (collection,))
        self._scrub_finished()

    def close(self) -> None:
        with self._lock:
            self._conn.close()
