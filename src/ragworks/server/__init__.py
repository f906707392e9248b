"""The HTTP service: `ragworks serve` runs `create_app()` under uvicorn.

    /v1/collections[/{name}]              create, list, stats, delete
    /v1/collections/{name}/documents      add JSON text (a job), list; /documents/{ref}: get with chunks, delete
    /v1/collections/{name}/files          multipart upload (a job)
    /v1/jobs[/{id}[/cancel]]              ingestion jobs: state, progress, report; cancel
    /v1/collections/{name}/sources|sync   the sources it follows (`ragworks source add`); sync now (a job)
    /v1/collections/{name}/search|ask     hybrid search; cited answers as JSON or Server-Sent Events
    /v1/chat/completions, /v1/embeddings, /v1/models   OpenAI-compatible (`model` = a collection)
    /v1/admin/...                         tenants and API keys (admin key)
    /healthz /readyz /metrics /docs /     probes, Prometheus, OpenAPI, the web page

Tenancy: with auth on, tenant T's collections live in `data_dir/tenants/T/<collection>` and its jobs in
`data_dir/tenants/T/jobs.sqlite3`; a request only ever resolves paths under its key's tenant. With auth off
(the default until an admin key or an API key exists) one local tenant uses `data_dir` itself, like the CLI.
Jobs: `JobQueue` (jobs/base.py); the embedded backend is a worker thread over the SQLite job table, and a
restarted server resumes whatever was queued or running. `queue_backend = "celery"` (jobs/distributed.py) records
jobs in a table every replica and worker shares (PostgreSQL `<schema>.jobs` with store_backend = "postgres", else
the SQLite tables) and runs them in `ragworks worker` processes fed through Redis.

PostgreSQL backend (`store_backend = "postgres"`): collections are rows scoped to (tenant, name), so any number
of API replicas serve the same data; `data_dir` still holds API keys (auth.sqlite3) and uploads, and must be a
volume shared by replicas and workers (a worker reads the file a replica stored).
"""

from ragworks.server.app import create_app

__all__ = ["create_app"]
