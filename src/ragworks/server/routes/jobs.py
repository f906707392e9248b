"""Ingestion jobs: status with progress, list, cancel.

A key that belongs to a user sees only the jobs submitted with a key of that user (a job's report names the files
and documents it wrote); keys without a user see every job of the tenant."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from ragworks.errors import JobNotFound
from ragworks.jobs import Job
from ragworks.server.auth import Context, CurrentTenant, request_key
from ragworks.server.limits import run_blocking

router = APIRouter(prefix="/v1", tags=["jobs"])


def _visible(request: Request, job: Job) -> bool:
    key = request_key(request)
    return key is None or not key.user or job.payload.get("user") == key.user


def _own(request: Request, job: Job) -> Job:
    if not _visible(request, job):
        raise JobNotFound(f"no job {job.id!r}")  # another user's job: as if it did not exist
    return job


async def _listed(ctx: Any, request: Request, tenant: Any, collection: str | None, limit: int) -> dict[str, Any]:
    key = request_key(request)
    # a user's key filters after reading, so read more than `limit` to fill the page
    wanted = limit if key is None or not key.user else min(limit * 10, 5000)
    jobs = await run_blocking(ctx.timeout_s, ctx.jobs.list_jobs, tenant, collection, limit=wanted)
    return {"jobs": [j.to_dict() for j in jobs if _visible(request, j)][:limit]}


@router.get("/jobs", summary="Recent jobs, newest first")
async def list_jobs(ctx: Context, tenant: CurrentTenant, request: Request, collection: str | None = None,
                    limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
    return await _listed(ctx, request, tenant, collection, limit)


@router.get("/collections/{name}/jobs", summary="Recent jobs of a collection")
async def list_collection_jobs(name: str, ctx: Context, tenant: CurrentTenant, request: Request,
                               limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
    return await _listed(ctx, request, tenant, name, limit)


@router.get("/jobs/{job_id}", summary="A job's state, progress and (when finished) report")
async def get_job(job_id: str, ctx: Context, tenant: CurrentTenant, request: Request) -> dict[str, Any]:
    return _own(request, await run_blocking(ctx.timeout_s, ctx.jobs.status, tenant, job_id)).to_dict()


@router.post("/jobs/{job_id}/cancel", summary="Cancel a job (a running one stops after its current file)")
async def cancel_job(job_id: str, ctx: Context, tenant: CurrentTenant, request: Request) -> dict[str, Any]:
    _own(request, await run_blocking(ctx.timeout_s, ctx.jobs.status, tenant, job_id))
    return (await run_blocking(ctx.timeout_s, ctx.jobs.cancel, tenant, job_id)).to_dict()
