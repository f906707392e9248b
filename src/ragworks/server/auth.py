"""Request authentication: API key → tenant (rate-limited per key), and the admin key for tenant management.

Keys come as `Authorization: Bearer <key>` (what OpenAI clients send) or `X-API-Key: <key>`. With auth off,
every request acts for the one local tenant.

A key that belongs to a user reads only what that user and its groups may read: `current_readers` gives every read
route the `Filter.readers` of the request (None — unrestricted — with auth off or for a key without a user).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from ragworks.config import Settings
from ragworks.server.context import ServerContext
from ragworks.server.errors import Forbidden, RateLimited, Unauthorized
from ragworks.server.keys import ApiKey, KeyStore, check_admin_key
from ragworks.server.ratelimit import TokenBucketLimiter
from ragworks.tenancy import Tenant, tenant_for


async def get_context(request: Request) -> ServerContext:
    ctx: ServerContext = request.app.state.ctx
    return ctx


Context = Annotated[ServerContext, Depends(get_context)]


def presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-api-key") or None


def verified_key(settings: Settings, keys: KeyStore, key: str | None) -> ApiKey:
    """The stored record of a presented API key: Unauthorized when missing or invalid, Forbidden for the admin key.
    The one check every entry point makes (the /v1 routes, the MCP server)."""
    if not key:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    record = keys.verify(key)
    if record is None:
        admin = settings.admin_key
        if admin is not None and check_admin_key(key, admin.get_secret_value()):
            raise Forbidden("the admin key manages tenants and keys; use one of a tenant's API keys for its data")
        raise Unauthorized("invalid or revoked API key")
    return record


async def current_tenant(request: Request, ctx: Context) -> Tenant:
    """The tenant the request acts for (401 without a valid key, 429 over the key's rate).

    On the event loop where that is cheap: a SQLite key lookup is one indexed read (microseconds)."""
    if not ctx.auth:
        return ctx.local_tenant()
    key = presented_key(request)
    # SQLite: one indexed read, on the loop; PostgreSQL: a network round trip, in a worker thread
    if ctx.keys.local:
        record = verified_key(ctx.settings, ctx.keys, key)
    else:
        record = await run_in_threadpool(verified_key, ctx.settings, ctx.keys, key)
    request.state.api_key = record  # for current_readers and the audit log
    wait = await ctx.limiter.atake(record.id)
    if wait > 0:
        ctx.metrics.rate_limited.inc()
        raise RateLimited(f"rate limit of {ctx.settings.rate_limit_per_minute} requests per minute exceeded",
                          headers={"Retry-After": TokenBucketLimiter.retry_after(wait)})
    return tenant_for(ctx.settings, record.tenant)


CurrentTenant = Annotated[Tenant, Depends(current_tenant)]


def request_key(request: Request) -> ApiKey | None:
    """The verified key of this request (None with auth off)."""
    return getattr(request.state, "api_key", None)


async def current_readers(request: Request, tenant: CurrentTenant) -> tuple[str, ...] | None:
    """The principal tokens this request reads as (`Filter.readers`); None = unrestricted. Depends on the tenant
    check, so it never answers for an unauthenticated request."""
    record = request_key(request)
    return record.readers if record is not None else None


CurrentReaders = Annotated[tuple[str, ...] | None, Depends(current_readers)]


async def current_pii_read(request: Request, ctx: Context, tenant: CurrentTenant) -> bool:
    """Whether this request holds the pii:read grant: a key with a user needs one of `pii_read_groups`; a key
    without a user reads its tenant unrestricted, and so does a server without auth."""
    return holds_pii_read(ctx.settings, request_key(request))


def holds_pii_read(settings: Settings, record: ApiKey | None) -> bool:
    """The pii:read rule for a verified key (None: auth off), shared by /v1 and the MCP tools."""
    if record is None or record.user is None:
        return True
    return bool(set(record.groups) & set(settings.pii_read_groups))


CurrentPiiRead = Annotated[bool, Depends(current_pii_read)]


async def require_admin(request: Request, ctx: Context) -> None:
    admin = ctx.settings.admin_key
    if admin is None:
        raise Forbidden("no admin key is configured (RAGWORKS_ADMIN_KEY); manage tenants with `ragworks admin`")
    key = presented_key(request)
    if not key or not check_admin_key(key, admin.get_secret_value()):
        raise Unauthorized("this route needs the admin key")


AdminOnly = Depends(require_admin)
