"""Documents of a collection: add (JSON text or uploaded files, both as jobs), list, get with chunks, delete."""

from __future__ import annotations

import json
import mimetypes
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from ragworks.access import normalize_readers
from ragworks.jobs import Job, JobKind
from ragworks.jobs.ingest import upload_path
from ragworks.server.auditing import audit
from ragworks.server.auth import Context, CurrentPiiRead, CurrentReaders, CurrentTenant, request_key
from ragworks.server.context import ServerContext
from ragworks.server.errors import ApiError
from ragworks.server.limits import run_blocking
from ragworks.server.schemas import SetReaders, TextDocument, TextDocuments
from ragworks.server.uploads import prune_uploads, store_upload, upload_source
from ragworks.store.base import StoredDocument
from ragworks.tenancy import Tenant

router = APIRouter(prefix="/v1/collections/{name}", tags=["documents"])

WaitParam = Annotated[bool, Query(description="hold the response until the job finishes (or the request timeout)")]


def document_summary(d: StoredDocument) -> dict[str, Any]:
    return {"id": d.id, "source": d.source, "title": d.title, "metadata": d.metadata, "chunks": d.chunks,
            "content_hash": d.content_hash, "readers": list(d.readers)}


async def _submit(ctx: ServerContext, tenant: Tenant, name: str, kind: JobKind, payload: dict[str, Any],
                  wait: bool, response: Response, request: Request | None = None) -> dict[str, Any]:
    key = request_key(request) if request is not None else None
    if key is not None and key.user:  # a user's key lists only its own jobs (ragworks.server.routes.jobs)
        payload["user"] = key.user
    job: Job = await run_blocking(ctx.timeout_s, ctx.jobs.submit, tenant, name, kind, payload)
    if wait:
        budget = max(ctx.timeout_s - 1.0, 0.1)
        job = await run_blocking(ctx.timeout_s, ctx.jobs.wait, tenant, job.id, budget)
        if job.state.finished:
            response.status_code = 200
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return job.to_dict()


@router.get("/documents", summary="List documents")
async def list_documents(
    name: str, ctx: Context, tenant: CurrentTenant, readers: CurrentReaders,
    pii_read: CurrentPiiRead,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100, offset: Annotated[int, Query(ge=0)] = 0,
    after: Annotated[str | None, Query(max_length=4096, description="the `next_after` of the previous page: "
                                       "pages by source without rescanning (use it instead of offset on big "
                                       "collections)")] = None,
) -> dict[str, Any]:
    """Titles are masked for a caller without the pii:read grant under `pii = "redact-answers"`."""

    def run() -> list[dict[str, Any]]:
        col = ctx.collections.get(tenant, name)
        masker = col.pii_masker(pii_read)
        out = [document_summary(d) for d in col.documents(limit=limit, offset=offset, after=after, readers=readers)]
        if masker is not None:
            for d in out:
                d["title"] = masker.title(d["title"])
        return out

    docs = await run_blocking(ctx.timeout_s, run)
    return {"documents": docs, "limit": limit, "offset": offset,
            "next_after": docs[-1]["source"] if len(docs) == limit else None}


@router.post("/documents", status_code=202, summary="Add text documents (an ingestion job)")
async def add_documents(name: str, body: TextDocument | TextDocuments, ctx: Context, tenant: CurrentTenant,
                        response: Response, request: Request, wait: WaitParam = False) -> dict[str, Any]:
    """One document or `{"documents": [...]}`; a document with an existing `source` replaces it.

    Returns 202 with the job (`Location: /v1/jobs/<id>`); with `wait=true`, 200 once it has finished.
    """
    await run_blocking(ctx.timeout_s, ctx.collections.get, tenant, name)  # 404 now, not in the job
    docs = body.documents if isinstance(body, TextDocuments) else [body]
    for d in docs:  # a malformed reader refuses the request (422) before anything is queued
        if d.readers is not None:
            d.readers = list(normalize_readers(d.readers))
    payload = {"documents": [d.model_dump() for d in docs]}
    return await _submit(ctx, tenant, name, JobKind.DOCUMENTS, payload, wait, response, request)


@router.post("/files", status_code=202, summary="Upload files (an ingestion job)")
async def upload_files(
    name: str, ctx: Context, tenant: CurrentTenant, response: Response,
    files: Annotated[list[UploadFile], File(description="PDF, DOCX, HTML, Markdown, text, JSON or JSONL files")],
    request: Request,
    metadata: Annotated[str | None, Form(description="JSON object of metadata for every document")] = None,
    readers: Annotated[str | None, Form(description="who may read the documents: user:/group: tokens, comma "
                                        "separated; empty = everyone in the tenant; omitted = the collection's "
                                        "default_readers (a JSONL record's own `readers` field wins)")] = None,
    wait: WaitParam = False,
) -> dict[str, Any]:
    """Stores each file under the collection (content-addressed) and queues one job for all of them.

    A file's document source is its file name; uploading the same name again replaces that document.
    """
    col = await run_blocking(ctx.timeout_s, ctx.collections.get, tenant, name)
    sources = [upload_source(f.filename) for f in files]
    extra: dict[str, Any] = {}
    if metadata:
        try:
            extra = json.loads(metadata)
        except json.JSONDecodeError as exc:
            raise ApiError(f"metadata is not valid JSON: {exc}", status=422) from None
        if not isinstance(extra, dict) or not all(isinstance(v, str | int | float | bool) for v in extra.values()):
            raise ApiError("metadata must be a JSON object of strings, numbers and booleans", status=422)
    if readers is not None:
        extra["readers"] = list(normalize_readers(readers))
    entries = [await run_in_threadpool(store_upload, col.path, src, f.file) for src, f in zip(sources, files,
                                                                                              strict=True)]
    payload = {"files": entries, "metadata": extra}
    return await _submit(ctx, tenant, name, JobKind.FILES, payload, wait, response, request)


@router.get("/documents/{ref:path}", summary="A document with its text and chunks (with offsets)")
async def get_document(name: str, ref: str, ctx: Context, tenant: CurrentTenant, readers: CurrentReaders,
                       pii_read: CurrentPiiRead, request: Request, include_text: bool = True) -> dict[str, Any]:
    """`ref` is a document id or its exact source. Chunk `start`/`end` are offsets into `text`. A document the
    caller may not read is 404, as if it did not exist; under `pii = "redact-answers"` a caller without the
    pii:read grant gets its title, text and chunks masked (offsets then index the masked text)."""

    def run() -> dict[str, Any]:
        col = ctx.collections.get(tenant, name)
        doc, text, chunks = col.document(ref, readers=readers)
        audit(ctx, request, tenant, "document", name, docs=[doc.id])
        out = document_summary(doc)
        masker = col.pii_masker(pii_read)
        if masker is not None:
            out["metadata"], out["title"], text, chunks = masker.document(doc.metadata, doc.title, text, chunks)
            out["pii_masked"] = True
        out["length"] = len(text)
        if include_text:
            out["text"] = text
        out["chunk_list"] = [
            {"ordinal": c.ordinal, "start": c.start, "end": c.end, "heading_path": list(c.heading_path),
             "page_start": c.page_start, "page_end": c.page_end, "tokens": c.token_count,
             "time_range": list(c.time_range) if c.time_range else None,
             "region": list(c.region) if c.region else None,
             **({"text": c.text} if include_text else {})}
            for c in chunks
        ]
        return out

    return await run_blocking(ctx.timeout_s, run)


@router.get("/media/{ref:path}", summary="The uploaded recording a document was transcribed from (byte ranges)")
async def get_media(name: str, ref: str, ctx: Context, tenant: CurrentTenant, readers: CurrentReaders
                    ) -> FileResponse:
    """`ref` is a document id or source; the web page plays a cited clip from it (`#t=start,end`)."""

    def run() -> Path:
        col = ctx.collections.get(tenant, name)
        doc, _, _ = col.document(ref, readers=readers)
        sha = doc.metadata.get("upload_sha256")
        path = upload_path(col.path, str(sha), PurePosixPath(doc.source).name) if sha else None
        if path is None or not path.is_file():
            raise ApiError(f"{doc.source}: no uploaded recording to play (only audio and video uploads have one)",
                           status=404)
        return path

    path = await run_blocking(ctx.timeout_s, run)
    return FileResponse(path, media_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream")


@router.delete("/documents/{ref:path}", summary="Delete documents by id, source or source glob")
async def delete_documents(name: str, ref: str, ctx: Context, tenant: CurrentTenant, readers: CurrentReaders,
                           request: Request) -> dict[str, Any]:
    def run() -> int:
        col = ctx.collections.get(tenant, name)
        deleted = col.delete(ref, readers=readers)
        audit(ctx, request, tenant, "delete", name, query=ref)
        remaining: list[str] = []
        while page := col.documents(limit=1000, after=remaining[-1] if remaining else None):
            remaining += [d.source for d in page]  # keyset paging: OFFSET would rescan, quadratic in documents
        pending = [f for job in ctx.jobs.list_jobs(tenant, name, limit=1000) if not job.state.finished
                   for f in job.payload.get("files", [])]
        prune_uploads(col.path, remaining, pending)  # an upload goes with the last document that came from it
        return deleted

    return {"deleted": await run_blocking(ctx.timeout_s, run)}


@router.put("/documents/{ref:path}/readers", summary="Replace who may read documents (no re-embedding)")
async def set_readers(name: str, ref: str, body: SetReaders, ctx: Context, tenant: CurrentTenant,
                      readers: CurrentReaders, request: Request) -> dict[str, Any]:
    """`ref`: a document id, source or source glob. Applies to the next search at once; a caller changes only
    documents it may read itself (others are 404)."""

    def run() -> int:
        col = ctx.collections.get(tenant, name)
        changed = col.set_readers(ref, body.readers, as_readers=readers)
        audit(ctx, request, tenant, "set-readers", name, query=f"{ref} -> {','.join(body.readers)}")
        return changed

    return {"updated": await run_blocking(ctx.timeout_s, run), "readers": list(normalize_readers(body.readers))}
