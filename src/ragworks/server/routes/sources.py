"""A collection's sources: list them, and sync them now (a job, like uploads). Sources are configured by the
operator with `ragworks source add`, never through the API (a key must not make the server read a path or URL)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response

from ragworks.jobs import JobKind
from ragworks.server.auth import Context, CurrentTenant
from ragworks.server.errors import ApiError
from ragworks.server.limits import run_blocking
from ragworks.server.routes.documents import WaitParam, _submit
from ragworks.sources.config import SourceList

router = APIRouter(prefix="/v1/collections/{name}", tags=["sources"])


@router.get("/sources", summary="The sources this collection follows")
async def list_sources(name: str, ctx: Context, tenant: CurrentTenant) -> dict[str, Any]:
    def run() -> list[dict[str, Any]]:
        ctx.collections.get(tenant, name)  # 404 for a collection this tenant does not have
        return [s.model_dump(include={"name", "kind", "location", "branch", "include", "exclude", "interval_s"})
                for s in SourceList(tenant.collection_dir(name)).load()]

    return {"sources": await run_blocking(ctx.timeout_s, run)}


@router.post("/sync", status_code=202, summary="Sync the collection's sources now (a job: /v1/jobs shows progress)")
async def sync_now(
    name: str, ctx: Context, tenant: CurrentTenant, response: Response, request: Request, wait: WaitParam = False,
    sources: Annotated[list[str] | None, Body(embed=True, description="source names (default: all)")] = None,
) -> dict[str, Any]:
    def configured() -> list[str]:
        ctx.collections.get(tenant, name)
        return [s.name for s in SourceList(tenant.collection_dir(name)).load()]

    names = await run_blocking(ctx.timeout_s, configured)
    if not names:
        raise ApiError(f"collection {name!r} follows no source (the operator adds them with `ragworks source add`)")
    unknown = sorted(set(sources or []) - set(names))
    if unknown:
        raise ApiError(f"unknown source(s) {', '.join(unknown)}; this collection follows {', '.join(names)}")
    # the request: a user's key records its user on the job, and lists that job (ragworks.server.routes.jobs)
    return await _submit(ctx, tenant, name, JobKind.SYNC, {"sources": sources or names}, wait, response, request)


