"""The LLM protocol: chat messages in, a stream of text pieces out."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, TypedDict


class Message(TypedDict):
    role: str  # system | user | assistant
    content: str


class LLM(Protocol):
    """A chat model. `context_tokens` is its window; `count_tokens` sizes prompts to fit it."""

    name: str
    context_tokens: int

    def stream(self, messages: list[Message], *, max_tokens: int, temperature: float) -> Iterator[str]:
        """Yield the answer as it is generated (pieces of text, in order)."""
        ...

    def count_tokens(self, text: str) -> int: ...


def complete(llm: LLM, messages: list[Message], *, max_tokens: int = 256, temperature: float = 0.0) -> str:
    """The whole answer of a streaming LLM as one string."""
    return "".join(llm.stream(messages, max_tokens=max_tokens, temperature=temperature))
