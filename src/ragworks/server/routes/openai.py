"""OpenAI-compatible endpoints, so any OpenAI client works against ragworks.

`/v1/chat/completions`: `model` names a collection; the last user message is the question; the answer comes
with its citations (`citations`, `sources` fields; and appended to the text as a "Sources:" list unless
`append_sources` is false). `/v1/embeddings`: the server's embedding model (the request's `model` is ignored).
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from ragworks.documents import Answer, Citation
from ragworks.errors import RagworksError
from ragworks.generate.answer import AnswerStream
from ragworks.server.auditing import audit
from ragworks.server.auth import Context, CurrentPiiRead, CurrentReaders, CurrentTenant
from ragworks.server.errors import ApiError, error_body, status_for, type_for
from ragworks.server.limits import run_blocking
from ragworks.server.routes.search import numbered_sources
from ragworks.server.schemas import ChatCompletionRequest, ChatMessage, EmbeddingRequest
from ragworks.server.sse import SSE_HEADERS, sse_event, within_deadline
from ragworks.store.base import Filter

router = APIRouter(prefix="/v1", tags=["openai-compatible"])

MAX_EMBEDDING_INPUTS = 2048


def _text_of(message: ChatMessage) -> str:
    if isinstance(message.content, str):
        return message.content
    parts = message.content or []
    return "\n".join(str(p.get("text", "")) for p in parts if p.get("type") == "text")


def question_of(messages: list[ChatMessage]) -> str:
    for m in reversed(messages):
        if m.role == "user" and _text_of(m).strip():
            return _text_of(m).strip()
    raise ApiError("messages must include a user message with text", status=422)


def sources_footer(citations: list[Citation]) -> str:
    seen: dict[int, Citation] = {}
    for c in citations:
        seen.setdefault(c.number, c)
    if not seen:
        return ""
    lines = [f"[{n}] {c.location()}" for n, c in sorted(seen.items())]
    return "\n\nSources:\n" + "\n".join(lines)


def _extras(answer: Answer) -> dict[str, Any]:
    return {"citations": [c.to_dict() for c in answer.citations], "sources": numbered_sources(answer.sources),
            "notice": answer.notice, "guard": answer.guard, **answer.verification_dict()}


@router.get("/models", summary="Collections, as OpenAI models")
async def list_models(ctx: Context, tenant: CurrentTenant) -> dict[str, Any]:
    names = await run_blocking(ctx.timeout_s, ctx.collections.names, tenant)
    return {"object": "list", "data": [{"id": n, "object": "model", "created": int(ctx.started),
                                         "owned_by": tenant.name} for n in names]}


@router.post("/chat/completions", summary="OpenAI chat completions over a collection (`model` = collection)")
async def chat_completions(body: ChatCompletionRequest, ctx: Context, tenant: CurrentTenant,
                           readers: CurrentReaders, pii_read: CurrentPiiRead, request: Request) -> Any:
    question = question_of(body.messages)

    def audited(answer: Answer) -> None:
        audit(ctx, request, tenant, "chat", body.model, query=question, retrieved=answer.sources,
              cited=answer.citations)

    def retrieve() -> AnswerStream:
        col = ctx.collections.get(tenant, body.model)
        hits = col.search(question, k=body.k, filters=Filter(readers=readers), for_answer=True)
        options = col.answer_options(max_tokens=body.max_tokens, temperature=body.temperature, pii_read=pii_read)
        return AnswerStream(question, hits, col.llm, col.embedder, options)

    deadline = time.monotonic() + ctx.timeout_s
    stream = await run_blocking(ctx.timeout_s, retrieve)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    if body.stream:
        return StreamingResponse(_chunks(stream, completion_id, created, body, deadline, ctx.timeout_s, audited),
                                 media_type="text/event-stream", headers=SSE_HEADERS)
    answer = await run_blocking(ctx.timeout_s, stream.result)
    await run_blocking(ctx.timeout_s, audited, answer)
    text = answer.text + (sources_footer(answer.citations) if body.append_sources else "")
    prompt_tokens, completion_tokens = await run_blocking(ctx.timeout_s, ctx.embedder.count_tokens,
                                                          [question, text])
    return {
        "id": completion_id, "object": "chat.completion", "created": created, "model": body.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop",
                     "logprobs": None}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
        **_extras(answer),
    }


def _chunks(stream: AnswerStream, completion_id: str, created: int, body: ChatCompletionRequest, deadline: float,
            timeout_s: float, on_done: Callable[[Answer], None]) -> Iterator[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        return sse_event(None, {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                                "model": body.model,
                                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra})

    yield chunk({"role": "assistant", "content": ""})
    try:
        for piece in within_deadline(stream, deadline, timeout_s):
            yield chunk({"content": piece})
    except RagworksError as exc:
        yield sse_event(None, error_body(type_for(exc), str(exc), code=status_for(exc)))
        return
    answer = stream.answer
    assert answer is not None
    on_done(answer)
    if body.append_sources and (footer := sources_footer(answer.citations)):
        yield chunk({"content": footer})
    yield chunk({}, "stop", **_extras(answer))
    yield sse_event(None, "[DONE]")


@router.post("/embeddings", summary="OpenAI embeddings with the server's embedding model")
async def embeddings(body: EmbeddingRequest, ctx: Context, tenant: CurrentTenant) -> dict[str, Any]:
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts:
        raise ApiError("input must not be empty", status=422)
    if not all(isinstance(t, str) for t in texts):
        raise ApiError("token-id input is not supported: send text", status=422)
    if len(texts) > MAX_EMBEDDING_INPUTS:
        raise ApiError(f"at most {MAX_EMBEDDING_INPUTS} inputs per request", status=422)
    strings: list[str] = [str(t) for t in texts]
    if any(not t.strip() for t in strings):
        raise ApiError("input strings must not be empty", status=422)
    embed = ctx.embedder.embed_queries if body.input_type == "query" else ctx.embedder.embed_documents

    def run() -> tuple[np.ndarray, int]:
        return embed(strings), sum(ctx.embedder.count_tokens(strings))

    vectors, tokens = await run_blocking(ctx.timeout_s, run)
    data = []
    for i, v in enumerate(vectors):
        vec = np.asarray(v, dtype="<f4")
        emb: Any = base64.b64encode(vec.tobytes()).decode() if body.encoding_format == "base64" else vec.tolist()
        data.append({"object": "embedding", "index": i, "embedding": emb})
    return {"object": "list", "data": data, "model": ctx.settings.embed_model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
