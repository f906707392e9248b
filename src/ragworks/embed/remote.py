"""An embedder for any OpenAI-compatible `/embeddings` endpoint (OpenAI, Fireworks, vLLM, TEI, Ollama, llama.cpp)."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

import httpx
import numpy as np

from ragworks.embed.base import normalize
from ragworks.errors import EmbeddingError

_WORDISH = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


def estimate_tokens(text: str) -> int:
    """BPE-ish token estimate without the remote tokenizer: ~1.3 tokens per word-or-symbol."""
    return int(len(_WORDISH.findall(text)) * 1.3) + 1


def _pooled(embedding: list[float] | list[list[float]]) -> np.ndarray:
    """One vector per input. Servers without a pooling layer (llama.cpp with pooling 'none') return a vector
    per token; those are mean-pooled."""
    arr = np.asarray(embedding, dtype=np.float32)
    return arr.mean(axis=0) if arr.ndim == 2 else arr


class OpenAICompatibleEmbedder:
    """POSTs batches to `{base_url}/embeddings`; retries rate limits and server errors with backoff."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        dimensions: int | None = None,
        batch_size: int = 64,
        max_tokens: int = 512,
        query_prefix: str = "",
        passage_prefix: str = "",
        timeout_s: float = 60.0,
        max_retries: int = 4,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s, transport=transport
        )
        self.model = model
        self.dimensions = dimensions
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self.max_retries = max_retries
        prefixes = f"|q={query_prefix}|p={passage_prefix}" if (query_prefix or passage_prefix) else ""
        dims = f":{dimensions}" if dimensions else ""
        self.name = f"openai:{base_url.rstrip('/')}:{model}{dims}{prefixes}"  # see ragworks.embed.embedder_name
        self._dimension: int | None = dimensions

    @property
    def dimension(self) -> int:
        if self._dimension is None:  # ask the endpoint once
            self._dimension = int(self._post(["dimension probe"]).shape[1])
        return self._dimension

    def _post(self, texts: list[str]) -> np.ndarray:
        body: dict[str, object] = {"model": self.model, "input": texts, "encoding_format": "float"}
        if self.dimensions:
            body["dimensions"] = self.dimensions
        delay = 0.5
        for attempt in range(self.max_retries + 1):
            try:
                resp = self._client.post("/embeddings", json=body)
            except httpx.TransportError as exc:
                if attempt == self.max_retries:
                    raise EmbeddingError(f"embedding endpoint unreachable at {self._client.base_url}: {exc}") from exc
            else:
                if resp.status_code < 400:
                    break
                if resp.status_code not in _RETRY_STATUS or attempt == self.max_retries:
                    raise EmbeddingError(
                        f"embedding endpoint answered {resp.status_code}: {resp.text[:300]}"
                    )
            time.sleep(delay)
            delay *= 2
        try:
            data = sorted(resp.json()["data"], key=lambda d: d.get("index", 0))
            vecs = np.vstack([_pooled(d["embedding"]) for d in data])
        except (KeyError, TypeError, ValueError) as exc:
            raise EmbeddingError(f"malformed embeddings response: {resp.text[:300]}") from exc
        if vecs.ndim != 2 or vecs.shape[0] != len(texts):
            raise EmbeddingError(f"endpoint returned {vecs.shape[0]} vectors for {len(texts)} inputs")
        return vecs

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        parts = [self._post(list(texts[i : i + self.batch_size])) for i in range(0, len(texts), self.batch_size)]
        vecs = normalize(np.vstack(parts))
        self._dimension = vecs.shape[1]
        return vecs

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed([self.passage_prefix + t for t in texts])

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed([self.query_prefix + t for t in texts])

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [estimate_tokens(t) for t in texts]

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"OpenAICompatibleEmbedder({self.name!r})"
