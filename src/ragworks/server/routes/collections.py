"""Collections: create, list, inspect, delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from ragworks.server.auth import Context, CurrentReaders, CurrentTenant
from ragworks.server.limits import run_blocking
from ragworks.server.schemas import CreateCollection
from ragworks.tenancy import check_collection_name

router = APIRouter(prefix="/v1/collections", tags=["collections"])

_PRIVATE_STATS = ("path",)  # the server's directory layout is not the client's business


def public_stats(stats: dict[str, Any]) -> dict[str, Any]:
    return {"name": stats.get("collection")} | {k: v for k, v in stats.items()
                                                 if k not in _PRIVATE_STATS and k != "collection"}


@router.get("", summary="List collections")
async def list_collections(ctx: Context, tenant: CurrentTenant, readers: CurrentReaders) -> dict[str, Any]:
    """A key that reads only some documents sees the counts of those (`Collection.stats(readers)`)."""

    def run() -> list[dict[str, Any]]:
        return [public_stats(ctx.collections.get(tenant, name).stats(readers))
                for name in ctx.collections.names(tenant)]

    return {"collections": await run_blocking(ctx.timeout_s, run)}


@router.post("", status_code=201, summary="Create a collection (200 if it already exists)")
async def create_collection(body: CreateCollection, ctx: Context, tenant: CurrentTenant, readers: CurrentReaders,
                            response: Response) -> dict[str, Any]:
    check_collection_name(body.name)
    col, created = await run_blocking(ctx.timeout_s, ctx.collections.create, tenant, body.name)
    if not created:
        response.status_code = 200
    return public_stats(await run_blocking(ctx.timeout_s, col.stats, readers)) | {"created": created}


@router.get("/{name}", summary="A collection's counts and model")
async def get_collection(name: str, ctx: Context, tenant: CurrentTenant, readers: CurrentReaders) -> dict[str, Any]:
    def run() -> dict[str, Any]:
        return public_stats(ctx.collections.get(tenant, name).stats(readers))

    return await run_blocking(ctx.timeout_s, run)


@router.delete("/{name}", status_code=204, summary="Delete a collection with its documents and uploads")
async def delete_collection(name: str, ctx: Context, tenant: CurrentTenant) -> Response:
    def run() -> None:
        ctx.collections.get(tenant, name)  # 404 first
        ctx.jobs.cancel_collection(tenant, name)
        ctx.collections.delete(tenant, name)

    await run_blocking(ctx.timeout_s, run)
    return Response(status_code=204)
