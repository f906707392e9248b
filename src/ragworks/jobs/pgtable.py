"""The job table in PostgreSQL (`<schema>.jobs`), shared by every API replica and Celery worker.

Same operations as the per-tenant SQLite `JobTable` (owner tokens included); one `PostgresJobTable` is bound to
one tenant, and every statement is constrained by it, so a job id of another tenant is simply not found.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from ragworks.errors import ConfigError, JobNotFound
from ragworks.jobs.base import IngestTotals, Job, JobKind, JobProgress, JobState

_COLUMNS = ("id, collection, kind, payload, state, cancel_requested, attempts, progress, report, error, created, "
            "started, finished")
_ENSURED: set[tuple[str, str]] = set()
_ENSURED_LOCK = threading.Lock()


def _schema(s: str) -> list[str]:
    return [
        f"CREATE TABLE IF NOT EXISTS {s}.jobs(tenant TEXT NOT NULL, id TEXT NOT NULL, collection TEXT NOT NULL, "
        "kind TEXT NOT NULL, payload JSONB NOT NULL, state TEXT NOT NULL, cancel_requested BOOLEAN NOT NULL "
        "DEFAULT false, attempts INTEGER NOT NULL DEFAULT 0, progress JSONB NOT NULL DEFAULT '{}', report JSONB, "
        "error TEXT NOT NULL DEFAULT '', created DOUBLE PRECISION NOT NULL, started DOUBLE PRECISION, "
        "finished DOUBLE PRECISION, lease_until DOUBLE PRECISION, owner TEXT, PRIMARY KEY (tenant, id))",
        # tables made by earlier versions: leases without an owner token
        f"ALTER TABLE {s}.jobs ADD COLUMN IF NOT EXISTS owner TEXT",
        f"CREATE INDEX IF NOT EXISTS jobs_tenant_collection ON {s}.jobs(tenant, collection, created)",
        f"CREATE INDEX IF NOT EXISTS jobs_unfinished ON {s}.jobs(state) WHERE state IN ('queued', 'running')",
    ]


def ensure_jobs_table(pool: ConnectionPool, schema: str) -> None:
    """Create the jobs table once per process (idempotent; concurrent creators are serialized by a lock)."""
    key = (str(pool.conninfo), schema)
    with _ENSURED_LOCK:
        if key in _ENSURED:
            return
        with pool.connection() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('ragworks-jobs-schema'))")
            for stmt in _schema(schema):
                conn.execute(stmt)
        _ENSURED.add(key)


def _job(r: tuple[Any, ...]) -> Job:
    return Job(
        id=r[0], collection=r[1], kind=JobKind(r[2]), payload=r[3], state=JobState(r[4]),
        cancel_requested=bool(r[5]), attempts=r[6], progress=JobProgress(**r[7]), report=r[8], error=r[9],
        created=r[10], started=r[11], finished=r[12],
    )


def count_unfinished_jobs(pool: ConnectionPool, schema: str) -> int:
    """Jobs queued or running, all tenants (the queue-depth gauge)."""
    ensure_jobs_table(pool, schema)
    with pool.connection() as conn:
        row = conn.execute(f"SELECT count(*) FROM {schema}.jobs WHERE state IN ('queued', 'running')").fetchone()
    return int(row[0]) if row else 0


def _tenant_filter(tenant: str | None) -> tuple[str, tuple[Any, ...]]:
    return ("", ()) if tenant is None else (" AND tenant = %s", (tenant,))


def count_leased_jobs(pool: ConnectionPool, schema: str, tenant: str | None = None) -> int:
    """Running jobs whose worker renewed its lease in time (proof that a worker is alive); all tenants by default."""
    ensure_jobs_table(pool, schema)
    where, args = _tenant_filter(tenant)
    with pool.connection() as conn:
        row = conn.execute(f"SELECT count(*) FROM {schema}.jobs WHERE state = 'running' AND lease_until > %s{where}",
                           (time.time(), *args)).fetchone()
    return int(row[0]) if row else 0


def job_totals(pool: ConnectionPool, schema: str, tenant: str | None = None) -> IngestTotals:
    """Files, documents and chunks of every job's progress, and finished jobs by state; all tenants by default."""
    ensure_jobs_table(pool, schema)
    where, args = _tenant_filter(tenant)
    with pool.connection() as conn:
        row = conn.execute(
            "SELECT coalesce(sum((progress->>'files_done')::bigint), 0), "
            "coalesce(sum((progress->>'documents')::bigint), 0), "
            f"coalesce(sum((progress->>'chunks_written')::bigint), 0) FROM {schema}.jobs WHERE true{where}",
            args).fetchone()
        finished = conn.execute(f"SELECT state, count(*) FROM {schema}.jobs WHERE state IN "
                                f"('completed', 'failed', 'cancelled'){where} GROUP BY state", args).fetchall()
    files, documents, chunks = row if row else (0, 0, 0)
    return IngestTotals(int(files), int(documents), int(chunks), {s: int(n) for s, n in finished})


def orphaned_jobs(pool: ConnectionPool, schema: str, created_before: float) -> list[tuple[str, str]]:
    """(tenant, job id) of unfinished jobs no worker holds (queued, or running with a lapsed lease), all tenants."""
    ensure_jobs_table(pool, schema)
    with pool.connection() as conn:
        rows = conn.execute(f"SELECT tenant, id FROM {schema}.jobs WHERE state IN ('queued', 'running') AND "
                            "coalesce(lease_until, 0) < %s AND created < %s ORDER BY created",
                            (time.time(), created_before)).fetchall()
    return [(r[0], r[1]) for r in rows]


def _owned(owner: str | None) -> tuple[str, tuple[Any, ...]]:
    """Extra WHERE for a write by the claim `owner` (none when None: the embedded queue, the API)."""
    return ("", ()) if owner is None else (" AND state = 'running' AND owner = %s", (owner,))


class PostgresJobTable:
    """Jobs of one tenant in PostgreSQL; every write is its own transaction."""

    def __init__(self, pool: ConnectionPool, tenant: str, schema: str = "ragworks") -> None:
        if not schema.isidentifier():
            raise ConfigError(f"invalid PostgreSQL schema name {schema!r}")
        self._pool = pool
        self.tenant = tenant
        self.schema = schema
        ensure_jobs_table(pool, schema)

    def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        """Run one statement (`{s}` = the schema) in its own transaction; returns the row count."""
        with self._pool.connection() as conn:
            return conn.execute(sql.replace("{s}", self.schema), args).rowcount

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self._pool.connection() as conn:
            return conn.execute(sql.replace("{s}", self.schema), args).fetchall()

    def insert(self, collection: str, kind: JobKind, payload: dict[str, Any], progress: JobProgress) -> Job:
        job = Job(uuid.uuid4().hex, collection, kind, JobState.QUEUED, payload, time.time(), progress)
        self._exec("INSERT INTO {s}.jobs(tenant, id, collection, kind, payload, state, progress, created) "
                   "VALUES(%s, %s, %s, %s, %s, %s, %s, %s)",
                   (self.tenant, job.id, collection, kind.value, Jsonb(payload), job.state.value,
                    Jsonb(progress.to_dict()), job.created))
        return job

    def get(self, job_id: str) -> Job:
        rows = self._rows(f"SELECT {_COLUMNS} FROM {{s}}.jobs WHERE tenant = %s AND id = %s", (self.tenant, job_id))
        if not rows:
            raise JobNotFound(f"no job {job_id!r}")
        return _job(rows[0])

    def recent(self, collection: str | None = None, *, limit: int = 50) -> list[Job]:
        if collection is None:
            rows = self._rows(f"SELECT {_COLUMNS} FROM {{s}}.jobs WHERE tenant = %s ORDER BY created DESC LIMIT %s",
                              (self.tenant, limit))
        else:
            rows = self._rows(f"SELECT {_COLUMNS} FROM {{s}}.jobs WHERE tenant = %s AND collection = %s "
                              "ORDER BY created DESC LIMIT %s", (self.tenant, collection, limit))
        return [_job(r) for r in rows]

    def unfinished(self) -> list[Job]:
        rows = self._rows(f"SELECT {_COLUMNS} FROM {{s}}.jobs WHERE tenant = %s AND state IN ('queued', 'running') "
                          "ORDER BY created", (self.tenant,))
        return [_job(r) for r in rows]

    def count_unfinished(self) -> int:
        return int(self._rows("SELECT count(*) FROM {s}.jobs WHERE tenant = %s AND state IN ('queued', 'running')",
                              (self.tenant,))[0][0])

    def count_leased(self) -> int:
        return count_leased_jobs(self._pool, self.schema, self.tenant)

    def ingest_totals(self) -> IngestTotals:
        return job_totals(self._pool, self.schema, self.tenant)

    def orphans(self, created_before: float) -> list[str]:
        """See JobTable.orphans (this tenant only)."""
        rows = self._rows("SELECT id FROM {s}.jobs WHERE tenant = %s AND state IN ('queued', 'running') AND "
                          "coalesce(lease_until, 0) < %s AND created < %s ORDER BY created",
                          (self.tenant, time.time(), created_before))
        return [r[0] for r in rows]

    def mark_running(self, job_id: str) -> bool:
        """Claim a queued job without a lease (the embedded queue's single worker)."""
        return self.claim(job_id, 0.0) is not None

    def claim(self, job_id: str, lease_s: float) -> str | None:
        """See JobTable.claim: a queued job, or a running one whose lease expired; returns the new owner token."""
        now, owner = time.time(), uuid.uuid4().hex
        with self._pool.connection() as conn:
            cur = conn.execute(
                f"UPDATE {self.schema}.jobs SET state = 'running', attempts = attempts + 1, "
                "started = coalesce(started, %s), lease_until = %s, owner = %s WHERE tenant = %s AND id = %s AND "
                "(state = 'queued' OR (state = 'running' AND coalesce(lease_until, 0) < %s))",
                (now, now + lease_s, owner, self.tenant, job_id, now))
            return owner if cur.rowcount == 1 else None

    def renew(self, job_id: str, lease_s: float, owner: str) -> bool:
        """See JobTable.renew: False when `owner` lost the job."""
        with self._pool.connection() as conn:
            return conn.execute(f"UPDATE {self.schema}.jobs SET lease_until = %s WHERE tenant = %s AND id = %s "
                                "AND state = 'running' AND owner = %s",
                                (time.time() + lease_s, self.tenant, job_id, owner)).rowcount == 1

    def lease_left(self, job_id: str) -> float:
        rows = self._rows("SELECT lease_until FROM {s}.jobs WHERE tenant = %s AND id = %s AND state = 'running'",
                          (self.tenant, job_id))
        return max(0.0, (rows[0][0] or 0.0) - time.time()) if rows else 0.0

    def requeue(self, job_id: str, *, graceful: bool = False) -> None:
        self._exec("UPDATE {s}.jobs SET state = 'queued', attempts = attempts - %s, lease_until = NULL, "
                   "owner = NULL WHERE tenant = %s AND id = %s AND state = 'running'",
                   (int(graceful), self.tenant, job_id))

    def set_progress(self, job_id: str, progress: JobProgress, *, owner: str | None = None) -> bool:
        """See JobTable.set_progress."""
        return self._set(job_id, "progress = %s", (Jsonb(progress.to_dict()),), owner) == 1

    def _set(self, job_id: str, sets: str, args: tuple[Any, ...], owner: str | None = None) -> int:
        where, where_args = _owned(owner)
        with self._pool.connection() as conn:
            return conn.execute(f"UPDATE {self.schema}.jobs SET {sets} WHERE tenant = %s AND id = %s{where}",
                                (*args, self.tenant, job_id, *where_args)).rowcount

    def finish(self, job_id: str, state: JobState, *, progress: JobProgress | None = None,
               report: dict[str, Any] | None = None, error: str = "", owner: str | None = None) -> bool:
        """See JobTable.finish."""
        sets = "state = %s, finished = %s, error = %s, lease_until = NULL"
        args: list[Any] = [state.value, time.time(), error]
        if progress is not None:
            sets += ", progress = %s"
            args.append(Jsonb(progress.to_dict()))
        if report is not None:
            sets += ", report = %s"
            args.append(Jsonb(json.loads(json.dumps(report))))
        done = self._set(job_id, sets, tuple(args), owner) == 1
        self._scrub_finished()
        return done

    def _scrub_finished(self) -> None:
        """See JobTable._scrub_finished: finished document jobs keep their sources, not their texts."""
        with self._pool.connection() as conn:
            conn.execute(
                f"UPDATE {self.schema}.jobs SET payload = jsonb_set(payload, '{{documents}}', (SELECT "
                "coalesce(jsonb_agg(d || '{\"text\": \"\"}'::jsonb), '[]'::jsonb) FROM "
                "jsonb_array_elements(coalesce(payload -> 'documents', '[]'::jsonb)) d)) "
                "|| '{\"texts_erased\": true}'::jsonb WHERE tenant = %s AND kind = %s AND state IN ('completed', "
                "'failed', 'cancelled') AND payload -> 'texts_erased' IS NULL", (self.tenant, JobKind.DOCUMENTS.value))

    def request_cancel(self, job_id: str) -> Job:
        self.get(job_id)  # JobNotFound
        with self._pool.connection() as conn:
            conn.execute(f"UPDATE {self.schema}.jobs SET state = 'cancelled', cancel_requested = true, "
                         "finished = %s WHERE tenant = %s AND id = %s AND state = 'queued'",
                         (time.time(), self.tenant, job_id))
            conn.execute(f"UPDATE {self.schema}.jobs SET cancel_requested = true WHERE tenant = %s AND id = %s "
                         "AND state = 'running'", (self.tenant, job_id))
        self._scrub_finished()
        return self.get(job_id)

    def cancel_requested(self, job_id: str) -> bool:
        rows = self._rows("SELECT cancel_requested FROM {s}.jobs WHERE tenant = %s AND id = %s", (self.tenant, job_id))
        return bool(rows and rows[0][0])

    def cancel_collection(self, collection: str) -> None:
        with self._pool.connection() as conn:
            conn.execute(f"UPDATE {self.schema}.jobs SET state = 'cancelled', cancel_requested = true, "
                         "finished = %s, error = 'collection deleted' WHERE tenant = %s AND collection = %s "
                         "AND state = 'queued'", (time.time(), self.tenant, collection))
            conn.execute(f"UPDATE {self.schema}.jobs SET cancel_requested = true WHERE tenant = %s AND "
                         "collection = %s AND state = 'running'", (self.tenant, collection))
        self._scrub_finished()

    def close(self) -> None:
        """The pool is shared (not closed here)."""
