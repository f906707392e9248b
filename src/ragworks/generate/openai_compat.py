"""A chat client for any OpenAI-compatible endpoint (OpenAI, Fireworks, vLLM, Ollama, llama.cpp server)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx

from ragworks.embed.remote import estimate_tokens
from ragworks.errors import LLMError, LLMUnavailable
from ragworks.generate.base import Message


class OpenAICompatibleLLM:
    """POST {base_url}/chat/completions with `stream: true`, reading the server-sent events."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        context_tokens: int = 8192,
        timeout_s: float = 120.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=httpx.Timeout(timeout_s, connect=10.0),
            transport=transport,
        )
        self.model = model
        self.context_tokens = context_tokens
        self.name = f"openai:{model}@{base_url.rstrip('/')}"

    def stream(self, messages: list[Message], *, max_tokens: int, temperature: float) -> Iterator[str]:
        body = {"model": self.model, "messages": messages, "max_tokens": max_tokens,
                "temperature": temperature, "stream": True}
        try:
            with self._client.stream("POST", "/chat/completions", json=body) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise LLMError(f"LLM endpoint answered {resp.status_code}: {resp.text[:300]}")
                for line in resp.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    try:
                        event = json.loads(data)
                    except json.JSONDecodeError:
                        continue
                    if "error" in event:
                        raise LLMError(f"LLM endpoint error: {str(event['error'])[:300]}")
                    for choice in event.get("choices") or []:
                        piece = (choice.get("delta") or {}).get("content")
                        if piece:
                            yield piece
        except httpx.TransportError as exc:
            raise LLMUnavailable(f"LLM endpoint unreachable at {self._client.base_url}: {exc}") from exc

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"OpenAICompatibleLLM({self.name!r})"
