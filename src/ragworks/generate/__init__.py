"""Generation: LLM clients, the grounded prompt, citation resolution, and the no-LLM extractive answerer."""

from __future__ import annotations

from ragworks.config import FIREWORKS_BASE_URL, FIREWORKS_DEFAULT_MODEL, Settings
from ragworks.errors import ConfigError
from ragworks.generate.base import LLM, Message, complete

__all__ = ["LLM", "Message", "complete", "make_llm"]


def make_llm(settings: Settings) -> LLM | None:
    """The LLM the settings ask for; None means 'answer extractively' (auto with no local model installed)."""
    import os

    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
    if settings.llm == "extractive":
        return None
    if settings.llm in ("openai", "fireworks"):
        from ragworks.generate.openai_compat import OpenAICompatibleLLM

        if settings.llm == "fireworks":
            base = FIREWORKS_BASE_URL
            key = key or os.environ.get("FIREWORKS_API_KEY")
            model = settings.llm_model or FIREWORKS_DEFAULT_MODEL
            if not key:
                raise ConfigError(
                    "the fireworks preset needs an API key: set FIREWORKS_API_KEY or RAGWORKS_LLM_API_KEY"
                )
        else:
            base = settings.llm_base_url
            key = key or os.environ.get("OPENAI_API_KEY")
            model = settings.llm_model or "default"
        return OpenAICompatibleLLM(
            base_url=base, model=model, api_key=key, context_tokens=settings.llm_context_tokens,
            timeout_s=settings.request_timeout_s,
        )
    from ragworks.generate.llamacpp import LlamaCppLLM, installed_runtime
    from ragworks.generate.models import catalog_model, is_installed, resolve_gguf

    # an explicit path that does not exist is an error (LlamaCppLLM says so), not a silent fallback
    present = settings.llm_gguf_path is not None or is_installed(catalog_model(settings.llm_gguf))
    if settings.llm == "auto" and not (present and installed_runtime(settings.llm_runtime)):
        return None
    path = settings.llm_gguf_path or resolve_gguf(settings.llm_gguf, cache_dir=settings.model_cache_dir)
    return LlamaCppLLM(path, context_tokens=settings.llm_context_tokens, threads=settings.llm_threads,
                       runtime=settings.llm_runtime)
