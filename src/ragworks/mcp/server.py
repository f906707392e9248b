"""The MCP server (`ragworks mcp`): a collection's search and cited answers as tools for assistants and IDEs.

Built with the official `mcp` SDK (MCPServer), over stdio or streamable HTTP. Tools: `list_collections`, `search`,
`ask` (an answer with numbered citations: document id, source, character offsets, quote, and the document's
metadata such as a Git commit and path or a page URL), and `fetch_passage` (a cited span of a document, with
context around it).

Access follows the HTTP API's rules exactly: with auth on (an admin key configured or any API key created), every
call needs a tenant's API key — over HTTP in `Authorization: Bearer <key>` (or `X-API-Key`), over stdio in
`RAGWORKS_API_KEY` — checked by `server.auth.verified_key`, rate-limited per key, and a tenant sees only its own
collections (`server.tenants.CollectionCache`, the /v1 routes' own). The admin key is refused for data.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

import ragworks
from ragworks.config import SearchMode, Settings
from ragworks.embed import LazyEmbedder
from ragworks.embed.base import Embedder
from ragworks.errors import DocumentNotFound, RagworksError
from ragworks.generate import make_llm
from ragworks.generate.base import LLM
from ragworks.generate.llamacpp import LlamaCppLLM
from ragworks.server.auth import holds_pii_read, verified_key
from ragworks.server.context import auth_enabled
from ragworks.server.errors import RateLimited
from ragworks.server.keys import make_key_store
from ragworks.server.models import SerializedLLM
from ragworks.server.ratelimit import TokenBucketLimiter, make_limiter
from ragworks.server.tenants import CollectionCache
from ragworks.store.base import Filter
from ragworks.tenancy import LOCAL_TENANT, Tenant, tenant_for

_UNSET: Any = object()
INSTRUCTIONS = (
    "Search and answer questions over ragworks collections. Call list_collections first; `ask` answers with "
    "numbered citations whose doc_id/start/end `fetch_passage` opens."
)


class _SharedEmbedder(LazyEmbedder):
    """One embedding model for every collection, loaded by the first call that needs it (tool calls run in
    threads: only one of them loads it)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._lock = threading.Lock()

    @property
    def loaded(self) -> Embedder:
        with self._lock:
            return LazyEmbedder.loaded.fget(self)  # type: ignore[attr-defined]


class McpBackend:
    """Keys, tenants and open collections — the same objects the HTTP server builds, for the MCP tools."""

    def __init__(self, settings: Settings, *, embedder: Embedder | None = None, llm: LLM | None = _UNSET,
                 stdio_key: str | None = None) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.keys = make_key_store(settings)
        self.limiter: TokenBucketLimiter = make_limiter(settings)
        shared = embedder if embedder is not None else _SharedEmbedder(settings)
        chosen = make_llm(settings) if llm is _UNSET else llm
        if isinstance(chosen, LlamaCppLLM):
            chosen = SerializedLLM(chosen)  # tool calls run in threads; one llama.cpp model answers one at a time
        self.collections = CollectionCache(settings, shared, chosen)
        self.stdio_key = stdio_key

    def tenant(self, key: str | None) -> Tenant:
        """The tenant a call acts for: the local one with auth off, else the key's (401/403/429 as in /v1)."""
        return self.caller(key)[0]

    def caller(self, key: str | None) -> tuple[Tenant, Filter, bool]:
        """The tenant a call acts for, the Filter of what it may read (its key's user and groups) and whether it
        holds the pii:read grant (the /v1 rule: `server.auth.holds_pii_read`)."""
        if not auth_enabled(self.settings, self.keys):
            return tenant_for(self.settings, LOCAL_TENANT), Filter(), True
        record = verified_key(self.settings, self.keys, key)
        wait = self.limiter.take(record.id)
        if wait > 0:
            raise RateLimited(f"rate limit of {self.settings.rate_limit_per_minute} requests per minute exceeded; "
                              f"retry in {wait:.1f} s")
        return (tenant_for(self.settings, record.tenant), Filter(readers=record.readers),
                holds_pii_read(self.settings, record))

    def close(self) -> None:
        self.collections.close()
        self.keys.close()


def _presented_key(ctx: Context[Any, Any], backend: McpBackend) -> str | None:
    """The API key of this call: the HTTP request's headers, or (stdio) the key the process was started with."""
    try:
        headers = ctx.headers
    except ValueError:
        headers = None
    if headers is None:
        return backend.stdio_key
    auth = headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return headers.get("x-api-key") or None


_Fn = TypeVar("_Fn", bound=Callable[..., Any])


def _reported(fn: _Fn) -> _Fn:
    """Our errors reach the client with their message (a missing key, an unknown collection); anything else the SDK
    reports as a crash without its text."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RagworksError as exc:
            raise ToolError(str(exc)) from exc

    return wrapper  # type: ignore[return-value]


def _excerpt(text: str, limit: int = 1200) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def build_server(backend: McpBackend) -> MCPServer[Any]:
    """The MCPServer with ragworks' tools, bound to `backend`."""
    server: MCPServer[Any] = MCPServer("ragworks", version=ragworks.__version__, instructions=INSTRUCTIONS)

    @server.tool()
    @_reported
    def list_collections(ctx: Context[Any, Any]) -> dict[str, Any]:
        """The collections this API key's tenant can search."""
        tenant = backend.tenant(_presented_key(ctx, backend))
        return {"collections": backend.collections.names(tenant)}

    @server.tool()
    @_reported
    def search(collection: str, query: str, ctx: Context[Any, Any], k: int = 8, mode: SearchMode | None = None,
               source: str | None = None) -> dict[str, Any]:
        """Search a collection (hybrid dense + BM25 by default); `source` is a glob on document sources."""
        tenant, flt, pii_read = backend.caller(_presented_key(ctx, backend))
        col = backend.collections.get(tenant, collection)
        hits = col.search(query, k=max(1, min(k, 50)), mode=mode, source=source, filters=flt, pii_read=pii_read)
        return {"hits": [{"rank": i, "doc_id": h.chunk.doc_id, "chunk_id": h.chunk.id, "source": h.source,
                          "title": h.title, "text": _excerpt(h.chunk.text), "start": h.chunk.start,
                          "end": h.chunk.end, "page": h.page, "score": round(h.score, 6), "metadata": h.metadata}
                         for i, h in enumerate(hits, 1)]}

    @server.tool()
    @_reported
    def ask(collection: str, question: str, ctx: Context[Any, Any], k: int | None = None) -> dict[str, Any]:
        """Answer a question from a collection, with numbered citations (fetch_passage opens one)."""
        tenant, flt, pii_read = backend.caller(_presented_key(ctx, backend))
        col = backend.collections.get(tenant, collection)
        answer = col.ask(question, k=k, filters=flt, pii_read=pii_read)
        meta = {h.chunk.doc_id: h.metadata for h in answer.sources}
        out = answer.to_dict()  # everything the HTTP API's answer carries (verification too, where there is one)
        out["citations"] = [{**c.to_dict(), "metadata": meta.get(c.doc_id, {})} for c in answer.citations]
        out["sources"] = [{"number": i, "doc_id": h.chunk.doc_id, "source": h.source, "title": h.title,
                           "start": h.chunk.start, "end": h.chunk.end, "metadata": h.metadata}
                          for i, h in enumerate(answer.sources, 1)]
        return out

    @server.tool()
    @_reported
    def fetch_passage(collection: str, doc_id: str, ctx: Context[Any, Any], start: int = 0, end: int | None = None,
                      context_chars: int = 200) -> dict[str, Any]:
        """The text of a cited passage (characters start..end of a document), with `context_chars` around it.
        Under `pii = "redact-answers"` a key without the pii:read grant reads it masked (offsets as cited)."""
        tenant, flt, pii_read = backend.caller(_presented_key(ctx, backend))
        col = backend.collections.get(tenant, collection)
        try:
            doc, text, _ = col.document(doc_id, readers=flt.readers)
        except DocumentNotFound:
            raise DocumentNotFound(f"no document {doc_id!r} in collection {collection!r}") from None
        end = len(text) if end is None else max(0, min(end, len(text)))
        start = max(0, min(start, end))
        before, after = max(0, start - context_chars), min(len(text), end + context_chars)
        title = doc.title
        masker = col.pii_masker(pii_read)
        if masker is not None:  # the cited offsets index the stored text: cut there, then mask the pieces
            masked, _, at = masker.document_text(doc.metadata, text)
            text, title = masked, masker.title(title)
            start, end, before, after = at(start), at.end(end), at(before), at.end(after)
        return {"doc_id": doc.id, "source": doc.source, "title": title, "start": start, "end": end,
                "text": text[start:end], "before": text[before:start], "after": text[end:after],
                "metadata": doc.metadata}

    return server


__all__ = ["McpBackend", "build_server"]
