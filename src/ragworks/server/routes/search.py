"""Search and ask (JSON, or Server-Sent Events: `sources`, then `token`s, `verification` (per-sentence support and
the abstention decision), then `done` with the citations)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from ragworks.documents import Answer, SearchHit
from ragworks.errors import RagworksError
from ragworks.generate.answer import AnswerStream
from ragworks.server.auditing import audit
from ragworks.server.auth import Context, CurrentPiiRead, CurrentReaders, CurrentTenant
from ragworks.server.errors import status_for, type_for
from ragworks.server.limits import run_blocking
from ragworks.server.schemas import AskRequest, SearchRequest
from ragworks.server.sse import SSE_HEADERS, sse_event, within_deadline
from ragworks.store.base import Filter

router = APIRouter(prefix="/v1/collections/{name}", tags=["search"])


def numbered_sources(hits: list[SearchHit]) -> list[dict[str, Any]]:
    return [{"number": i, **h.to_dict()} for i, h in enumerate(hits, 1)]


def answer_summary(answer: Answer) -> dict[str, Any]:
    """What `done` carries: everything but the sources (sent first) and the question."""
    return {"answer": answer.text, "model": answer.model, "citations": [c.to_dict() for c in answer.citations],
            "dropped_citations": answer.dropped_citations, "notice": answer.notice, "abstained": answer.abstained,
            "guard": answer.guard, "steps": answer.steps}


@router.post("/search", summary="Search: dense, BM25 or hybrid, with metadata filters and a source glob")
async def search(name: str, body: SearchRequest, ctx: Context, tenant: CurrentTenant, readers: CurrentReaders,
                 pii_read: CurrentPiiRead, request: Request) -> dict[str, Any]:
    def run() -> list[SearchHit]:
        col = ctx.collections.get(tenant, name)
        hits = col.search(body.query, k=body.k, mode=body.mode, filters=Filter(metadata=body.filters,
                                                                                 readers=readers),
                          source=body.source, pii_read=pii_read)
        audit(ctx, request, tenant, "search", name, query=body.query, retrieved=hits)
        return hits

    started = time.perf_counter()
    hits = await run_blocking(ctx.timeout_s, run)
    return {"hits": [h.to_dict() for h in hits], "took_ms": round((time.perf_counter() - started) * 1000, 2)}


def answer_events(stream: AnswerStream, deadline: float, timeout_s: float,
                  on_done: Callable[[Answer], None] = lambda a: None) -> Iterator[bytes]:
    yield sse_event("sources", {"sources": numbered_sources(stream.shown_sources)})
    try:
        for piece in within_deadline(stream, deadline, timeout_s):
            yield sse_event("token", {"text": piece})
    except RagworksError as exc:  # the status line is long gone: report in-band
        yield sse_event("error", {"error": {"type": type_for(exc), "message": str(exc), "status": status_for(exc)}})
        return
    assert stream.answer is not None
    # claim-level verification and the abstention decision, before `done` (the web page highlights from it)
    yield sse_event("verification", stream.answer.verification_dict())
    on_done(stream.answer)
    yield sse_event("done", answer_summary(stream.answer))


@router.post("/ask", summary="Answer a question with citations (JSON, or SSE with `stream: true`)",
             responses={200: {"content": {"text/event-stream": {}}}})
async def ask(name: str, body: AskRequest, ctx: Context, tenant: CurrentTenant, readers: CurrentReaders,
              pii_read: CurrentPiiRead, request: Request) -> Any:
    def retrieve() -> AnswerStream:  # retrieval happens here; generation as the response streams
        col = ctx.collections.get(tenant, name)
        return col.ask_stream(body.question, k=body.k, mode=body.mode,
                              filters=Filter(metadata=body.filters, readers=readers), source=body.source,
                              pii_read=pii_read)

    def audited(answer: Answer) -> None:
        audit(ctx, request, tenant, "ask", name, query=body.question, retrieved=answer.sources,
              cited=answer.citations)

    deadline = time.monotonic() + ctx.timeout_s
    stream = await run_blocking(ctx.timeout_s, retrieve)
    if body.stream:
        return StreamingResponse(answer_events(stream, deadline, ctx.timeout_s, audited),
                                 media_type="text/event-stream", headers=SSE_HEADERS)
    answer = await run_blocking(ctx.timeout_s, stream.result)
    await run_blocking(ctx.timeout_s, audited, answer)
    out = answer.to_dict()
    out["sources"] = numbered_sources(answer.sources)
    return out
