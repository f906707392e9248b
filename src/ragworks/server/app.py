"""`create_app`: the FastAPI application (`ragworks serve` runs it under uvicorn)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

import ragworks
from ragworks.audit import make_audit_log
from ragworks.cache import observe as observe_cache
from ragworks.config import Settings
from ragworks.embed import embedder_name, make_embedder
from ragworks.embed.base import Embedder
from ragworks.generate import make_llm
from ragworks.generate.base import LLM
from ragworks.generate.llamacpp import LlamaCppLLM
from ragworks.jobs import make_job_queue
from ragworks.server.context import ServerContext
from ragworks.server.errors import install_error_handlers
from ragworks.server.keys import make_key_store
from ragworks.server.limits import BodySizeLimit
from ragworks.server.metrics import MetricsMiddleware, ServerMetrics
from ragworks.server.models import SerializedLLM, SharedEmbedder
from ragworks.server.ratelimit import make_limiter
from ragworks.server.routes import admin, collections, documents, jobs, openai, ops, search, sources
from ragworks.server.routes.ops import STATIC_DIR
from ragworks.server.tenants import CollectionCache
from ragworks.tenancy import existing_tenants, tenant_for

log = logging.getLogger("ragworks.server")

_UNSET: Any = object()


def create_app(
    settings: Settings | None = None,
    *,
    embedder: Embedder | None = None,
    llm: LLM | None = _UNSET,
    start_jobs: bool = True,
) -> FastAPI:
    """The API. Pass `embedder` / `llm` to reuse loaded models (`llm=None`: extractive answers); otherwise the
    embedder loads in the background at startup (`/readyz` says when) and the LLM is what the settings name.
    `start_jobs=False` leaves queued jobs queued (tests of restart and resume use it)."""
    settings = settings or Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(embedder, SharedEmbedder):
        shared = embedder
    else:
        shared = SharedEmbedder(embedder, name=embedder_name(settings), query_threads=settings.embed_query_threads)
    keys = make_key_store(settings)
    metrics = ServerMetrics()
    stop_counting = observe_cache(metrics.cache_lookup)  # result-cache hits and misses → /metrics
    cache = CollectionCache(settings, shared, None)
    job_queue = make_job_queue(settings, cache.get, lambda: existing_tenants(settings), metrics)
    metrics.watch_queue(job_queue.depth)
    ctx = ServerContext(
        settings=settings, embedder=shared, llm=None, collections=cache, keys=keys,
        limiter=make_limiter(settings),
        jobs=job_queue, metrics=metrics,
        audit=make_audit_log(settings, lambda name: tenant_for(settings, name).root),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not shared.ready:
            shared.load_in_background(lambda: make_embedder(settings))
        chosen = llm if llm is not _UNSET else await anyio.to_thread.run_sync(make_llm, settings)
        if isinstance(chosen, LlamaCppLLM):
            chosen = SerializedLLM(chosen)  # one llama.cpp model generates one answer at a time
        ctx.llm = cache.llm = chosen
        if start_jobs:
            job_queue.start()
        schedule = None
        if start_jobs and settings.sync_schedule:
            from ragworks.jobs.sync import SyncScheduler

            schedule = SyncScheduler(job_queue, lambda: existing_tenants(settings), cache.names)
            schedule.start()
        try:
            yield
        finally:
            if schedule is not None:
                await anyio.to_thread.run_sync(schedule.stop)
            await anyio.to_thread.run_sync(job_queue.stop)
            cache.close()
            keys.close()
            stop_counting()
            if ctx.audit is not None:
                ctx.audit.close()
            await ctx.limiter.aclose()

    app = FastAPI(
        title="ragworks",
        version=ragworks.__version__,
        description="Self-hostable RAG: collections, documents, ingestion jobs, hybrid search, cited answers "
                    "(JSON or SSE), and OpenAI-compatible chat completions and embeddings.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's Swagger UI loads its scripts from a CDN (blank offline): /docs is ours (ops.py)
    )
    app.state.ctx = ctx
    install_error_handlers(app)
    for module in (ops, collections, documents, jobs, search, openai, admin, sources):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    # Outermost first: time everything (413s included), then cap the body.
    app.add_middleware(BodySizeLimit, max_bytes=int(settings.max_upload_mb * 2**20))
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def create_app_from_env() -> FastAPI:
    """The app of each uvicorn worker process (`ragworks serve --workers N`): settings from the environment
    (`RAGWORKS_*`, which `ragworks serve` sets from its flags before starting the workers)."""
    return create_app(Settings())
