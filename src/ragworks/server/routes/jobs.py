"""Ingestion jobs: status with progress, list, cancel."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from ragworks.server.auth import Context, CurrentTenant
from ragworks.server.limits import run_blocking

router = APIRouter(prefix="/v1", tags=["jobs"])


@router.get("/jobs", summary="Recent jobs, newest first")
async def list_jobs(ctx: Context, tenant: CurrentTenant, collection: str | None = None,
                    limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
    jobs = await run_blocking(ctx.timeout_s, ctx.jobs.list_jobs, tenant, collection, limit=limit)
    return {"jobs": [j.to_dict() for j in jobs]}


@router.get("/collections/{name}/jobs", summary="Recent jobs of a collection")
async def list_collection_jobs(name: str, ctx: Context, tenant: CurrentTenant,
                               limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
    jobs = await run_blocking(ctx.timeout_s, ctx.jobs.list_jobs, tenant, name, limit=limit)
    return {"jobs": [j.to_dict() for j in jobs]}


@router.get("/jobs/{job_id}", summary="A job's state, progress and (when finished) report")
async def get_job(job_id: str, ctx: Context, tenant: CurrentTenant) -> dict[str, Any]:
    return (await run_blocking(ctx.timeout_s, ctx.jobs.status, tenant, job_id)).to_dict()


@router.post("/jobs/{job_id}/cancel", summary="Cancel a job (a running one stops after its current file)")
async def cancel_job(job_id: str, ctx: Context, tenant: CurrentTenant) -> dict[str, Any]:
    return (await run_blocking(ctx.timeout_s, ctx.jobs.cancel, tenant, job_id)).to_dict()
