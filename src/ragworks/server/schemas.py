"""Request bodies of the API (responses are plain dicts built by the domain objects' `to_dict`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MetadataValue = str | int | float | bool
MAX_QUERY_CHARS = 4000


class CreateCollection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64, examples=["team-docs"])


class TextDocument(BaseModel):
    """A document given as text; a document with the same `source` is replaced."""

    model_config = ConfigDict(extra="forbid")
    source: str = Field(min_length=1, max_length=1024, examples=["notes/rotation.md"])
    text: str = Field(min_length=1, examples=["# Key rotation\n\nRotate API keys every 90 days."])
    title: str = Field(default="", max_length=1024)
    metadata: dict[str, MetadataValue] = Field(default_factory=dict)
    readers: list[str] | None = Field(default=None, max_length=1000, examples=[["group:finance", "user:ann"]],
                                      description="who may read it (user:/group: tokens); [] = everyone in the "
                                      "tenant; omitted = the collection's default_readers")


class TextDocuments(BaseModel):
    model_config = ConfigDict(extra="forbid")
    documents: list[TextDocument] = Field(min_length=1, max_length=10_000)


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    k: int = Field(default=8, ge=1, le=100)
    mode: Literal["dense", "bm25", "hybrid"] | None = None
    filters: dict[str, MetadataValue] = Field(default_factory=dict, description="metadata key → required value")
    source: str | None = Field(default=None, max_length=1024, description="shell glob on document sources")


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    k: int = Field(default=8, ge=1, le=100)
    mode: Literal["dense", "bm25", "hybrid"] | None = None
    filters: dict[str, MetadataValue] = Field(default_factory=dict)
    source: str | None = Field(default=None, max_length=1024)
    stream: bool = Field(default=False, description="Server-Sent Events: `sources`, then `token`s, then `done`")


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "tool", "developer", "function"]
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat completion request; `model` names the collection to answer from."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, examples=["team-docs"])
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    # ragworks extensions (OpenAI clients send them through `extra_body`)
    k: int = Field(default=8, ge=1, le=100)
    append_sources: bool = Field(default=True, description="append a 'Sources:' list to the answer text")


class EmbeddingRequest(BaseModel):
    """OpenAI's embeddings request. `model` is informational: the server's embedding model answers."""

    model_config = ConfigDict(extra="allow")
    input: str | list[str] | list[int] | list[list[int]]
    model: str = ""
    encoding_format: Literal["float", "base64"] = "float"
    input_type: Literal["passage", "query"] = "passage"  # e5-style models embed the two differently


class CreateTenant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=63)


class CreateKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str = Field(default="", max_length=200)
    user: str | None = Field(default=None, max_length=128, description="the user the key reads as; none = the "
                             "whole tenant")
    groups: list[str] = Field(default_factory=list, max_length=200)


class SetReaders(BaseModel):
    model_config = ConfigDict(extra="forbid")
    readers: list[str] = Field(max_length=1000, description="user:/group: tokens; [] = everyone in the tenant")
