"""Tenant and key management over HTTP, with the admin key (`ragworks admin` does the same locally)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from ragworks.server.auth import AdminOnly, Context
from ragworks.server.errors import NotFound
from ragworks.server.limits import run_blocking
from ragworks.server.schemas import CreateKey, CreateTenant

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[AdminOnly])


@router.get("/tenants", summary="List tenants")
async def list_tenants(ctx: Context) -> dict[str, Any]:
    return {"tenants": await run_blocking(ctx.timeout_s, ctx.keys.tenants)}


@router.post("/tenants", status_code=201, summary="Create a tenant")
async def create_tenant(body: CreateTenant, ctx: Context) -> dict[str, Any]:
    created = await run_blocking(ctx.timeout_s, ctx.keys.create_tenant, body.name)
    return {"name": body.name, "created": created}


@router.post("/tenants/{tenant}/keys", status_code=201, summary="Create an API key (shown only in this response)")
async def create_key(tenant: str, body: CreateKey, ctx: Context) -> dict[str, Any]:
    key, record = await run_blocking(ctx.timeout_s, lambda: ctx.keys.create_key(
        tenant, body.label, user=body.user, groups=tuple(body.groups)))
    return {"key": key, **record.to_dict()}


@router.get("/tenants/{tenant}/keys", summary="A tenant's keys (ids and labels, never the keys)")
async def list_keys(tenant: str, ctx: Context) -> dict[str, Any]:
    if not await run_blocking(ctx.timeout_s, ctx.keys.tenant_exists, tenant):
        raise NotFound(f"no tenant {tenant!r}")
    return {"keys": [k.to_dict() for k in await run_blocking(ctx.timeout_s, ctx.keys.keys, tenant)]}


@router.delete("/keys/{key_id}", summary="Revoke an API key")
async def revoke_key(key_id: str, ctx: Context) -> dict[str, Any]:
    return (await run_blocking(ctx.timeout_s, ctx.keys.revoke_key, key_id)).to_dict()


@router.get("/audit", summary="A tenant's audit log, newest first: who asked what, which documents answered")
async def audit_log(ctx: Context, tenant: Annotated[str, Query(max_length=63)],
                    since: Annotated[float | None, Query(description="unix time")] = None,
                    user: Annotated[str | None, Query(max_length=128)] = None,
                    limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> dict[str, Any]:
    if ctx.audit is None:
        raise NotFound("the audit log is off (RAGWORKS_AUDIT=false)")
    if not await run_blocking(ctx.timeout_s, ctx.keys.tenant_exists, tenant):
        raise NotFound(f"no tenant {tenant!r}")
    entries = await run_blocking(ctx.timeout_s, lambda: ctx.audit.entries(tenant, since=since, user=user,
                                                                          limit=limit) if ctx.audit else [])
    return {"entries": [e.to_dict() for e in entries]}
