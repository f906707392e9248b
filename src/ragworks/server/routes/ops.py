"""Operations: liveness, readiness, Prometheus metrics, server info, and the web page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter, Response
from fastapi.responses import FileResponse, JSONResponse

import ragworks
from ragworks.server.auth import Context

router = APIRouter(tags=["operations"])

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: model loaded, job worker running, data directory writable")
async def readyz(ctx: Context) -> JSONResponse:
    """503 when this process cannot serve; "degraded" (still 200) when no Celery worker is alive to run jobs."""
    checks = {
        "embedder": ctx.embedder.ready,
        "jobs": await anyio.to_thread.run_sync(lambda: ctx.jobs.alive),  # Celery: a Redis ping, cached
        "data_dir": ctx.settings.data_dir.is_dir(),
    }
    ok = all(checks.values())
    workers = await anyio.to_thread.run_sync(ctx.jobs.workers) if ok else None
    if workers is not None:
        checks["workers"] = workers
    status = "not ready" if not ok else "ready" if workers is not False else "degraded"
    return JSONResponse({"status": status, "checks": checks}, status_code=200 if ok else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(ctx: Context) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(ctx.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/info", summary="What the web page and clients need to know before authenticating")
async def info(ctx: Context) -> dict[str, Any]:
    return {"name": "ragworks", "version": getattr(ragworks, "__version__", ""), "auth": ctx.auth,
            "queue_backend": ctx.settings.queue_backend, "max_upload_mb": ctx.settings.max_upload_mb,
            "embedding_model": ctx.settings.embed_model}


@router.get("/docs", include_in_schema=False)
async def api_docs() -> FileResponse:
    """The API reference, rendered in the browser from /openapi.json by a self-contained page (works offline)."""
    return FileResponse(STATIC_DIR / "apidocs.html", headers={"Cache-Control": "no-cache"})


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})
