"""Tenant and key management over HTTP, with the admin key (`ragworks admin` does the same locally)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

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
    key, record = await run_blocking(ctx.timeout_s, ctx.keys.create_key, tenant, body.label)
    return {"key": key, **record.to_dict()}


@router.get("/tenants/{tenant}/keys", summary="A tenant's keys (ids and labels, never the keys)")
async def list_keys(tenant: str, ctx: Context) -> dict[str, Any]:
    if not await run_blocking(ctx.timeout_s, ctx.keys.tenant_exists, tenant):
        raise NotFound(f"no tenant {tenant!r}")
    return {"keys": [k.to_dict() for k in await run_blocking(ctx.timeout_s, ctx.keys.keys, tenant)]}


@router.delete("/keys/{key_id}", summary="Revoke an API key")
async def revoke_key(key_id: str, ctx: Context) -> dict[str, Any]:
    return (await run_blocking(ctx.timeout_s, ctx.keys.revoke_key, key_id)).to_dict()
