"""What each read route writes to the audit log (ragworks.audit): the caller's key and user, ids only."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import Request

from ragworks.audit import AuditEntry, hit_refs
from ragworks.documents import Citation, SearchHit
from ragworks.server.auth import request_key
from ragworks.server.context import ServerContext
from ragworks.tenancy import Tenant


def audit(ctx: ServerContext, request: Request, tenant: Tenant, action: str, collection: str, *, query: str = "",
          retrieved: Sequence[SearchHit] = (), cited: Sequence[Citation] = (), docs: Sequence[str] = ()) -> None:
    """Record one read (blocking: call it from the route's worker thread). `docs`: document ids read whole."""
    if ctx.audit is None:
        return
    key = request_key(request)
    ctx.audit.record(AuditEntry(
        tenant=tenant.name, action=action, collection=collection, query=query,
        key_id=key.id if key is not None else None, user=key.user if key is not None else None,
        retrieved=hit_refs(retrieved) + [f"{d}:*" for d in docs],
        cited=[f"{c.doc_id}@{c.start}-{c.end}" for c in cited]))
