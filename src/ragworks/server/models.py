"""The models the server loads once and shares: the embedder (every collection, every request, the job worker)
and the LLM.

Calls into the embedding model are serialized: a Hugging Face fast tokenizer raises "Already borrowed" when two
threads use it at once, and on a few CPU cores parallel forward passes only fight over them. Concurrent queries
are embedded together in one forward pass (whoever gets the model embeds every query waiting), with few torch
threads (`embed_query_threads`), and their vectors are kept in a small LRU cache (an ask embeds its question
twice). Queries go before passages, and passages go through in small slices, so a search waits for at most one
slice of an ingest. The model may load in the background (`load_in_background`): until it is ready, `/readyz`
says so and calls that need it wait for it.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ragworks.embed.base import Embedder
from ragworks.generate.base import LLM, Message
from ragworks.server.errors import ServiceUnavailable

log = logging.getLogger("ragworks.server")

PASSAGE_SLICE = 32
QUERY_PRIORITY = 4
# ONNX Runtime runs at most 4 queries on its single-threaded query session; a bigger batch goes multi-threaded and
# contends on a busy box (8 concurrent clients, onnx: 165-186 vs 128-151 queries/s unsliced)
QUERY_SLICE = 4
QUERY_CACHE = 2048  # query vectors kept (ask embeds its question twice: to retrieve, then to pick sentences)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with `n` torch intra-op threads (if the embedder runs on torch at all), then restore the setting."""
    torch = sys.modules.get("torch")
    if not n or torch is None:
        yield
        return
    before = torch.get_num_threads()
    if before == n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(slots=True)
class _Pending:
    texts: list[str]
    done: bool = False
    result: np.ndarray | None = None
    error: BaseException | None = None


class SharedEmbedder:
    """Wraps an Embedder for use from many threads; same name, dimension and vectors."""

    def __init__(self, inner: Embedder | None = None, *, name: str = "", passage_slice: int = PASSAGE_SLICE,
                 query_threads: int = 0, load_wait_s: float = 300.0) -> None:
        self._inner = inner
        self.query_threads = query_threads
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._name = name
        self._ready = threading.Event()
        self._load_error: BaseException | None = None
        if inner is not None:
            self._ready.set()
        self.load_wait_s = load_wait_s
        self.passage_slice = passage_slice
        self._cond = threading.Condition()
        self._busy = False
        self._waiting: list[_Pending] = []
        self._query_run = 0  # query batches since the model last ran something else
        self.query_batches = 0  # forward passes run for queries (tests read it)

    def load_in_background(self, load: Callable[[], Embedder]) -> threading.Thread:
        def run() -> None:
            try:
                self._inner = load()
                log.info("embedding model ready: %s", self._inner.name)
            except BaseException as exc:
                log.exception("the embedding model failed to load")
                self._load_error = exc
            finally:
                self._ready.set()

        thread = threading.Thread(target=run, name="ragworks-model-load", daemon=True)
        thread.start()
        return thread

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and self._inner is not None

    @property
    def inner(self) -> Embedder:
        if not self._ready.wait(self.load_wait_s):
            raise ServiceUnavailable("the embedding model is still loading; try again shortly")
        if self._inner is None:
            raise ServiceUnavailable(f"the embedding model failed to load: {self._load_error}")
        return self._inner

    @property
    def name(self) -> str:
        return self._inner.name if self._inner is not None else self._name or self.inner.name

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    @property
    def max_tokens(self) -> int:
        return self.inner.max_tokens

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """The model, once it is free and no query is waiting (queries go first, but never more than
        `QUERY_PRIORITY` batches in a row, so an ingest is not starved by a steady stream of searches)."""
        with self._cond:
            while self._busy or (self._waiting and self._query_run < QUERY_PRIORITY):
                self._cond.wait()
            self._busy = True
            self._query_run = 0
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        with self._cond:
            self._busy = False
            self._cond.notify_all()

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        model = self.inner  # waits for a model still loading, before taking the model's turn
        parts = []
        for i in range(0, len(texts), self.passage_slice):
            with self._exclusive():
                parts.append(model.embed_documents(texts[i : i + self.passage_slice]))
        return np.concatenate(parts, axis=0)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        with self._cond:
            cached = [self._cache.get(t) for t in texts]
            if texts and all(v is not None for v in cached):
                for t in texts:
                    self._cache.move_to_end(t)
                return np.stack([v for v in cached if v is not None])
        mine = _Pending(list(texts))
        with self._cond:
            self._waiting.append(mine)
            while self._busy and not mine.done:
                self._cond.wait()
            if not mine.done:  # the model is free and nobody took ours: embed every query waiting
                self._busy = True
                self._query_run += 1
                batch, self._waiting = self._waiting, []
        if not mine.done:
            try:
                self._run(batch)
            finally:
                self._release()
        if mine.error is not None:
            raise mine.error
        assert mine.result is not None
        return mine.result

    def _run(self, batch: list[_Pending]) -> None:
        self.query_batches += 1
        try:
            texts = list(dict.fromkeys(t for p in batch for t in p.texts))
            with torch_threads(self.query_threads):
                vectors = np.concatenate([self.inner.embed_queries(texts[i : i + QUERY_SLICE])
                                          for i in range(0, len(texts), QUERY_SLICE)]) if texts else \
                    self.inner.embed_queries(texts)
            row = {t: v.copy() for t, v in zip(texts, vectors, strict=True)}  # copies: a cached row must not
            # keep its whole batch alive
            for p in batch:
                p.result = np.stack([row[t] for t in p.texts]) if p.texts else vectors[:0]
            with self._cond:
                for t, v in row.items():
                    self._cache[t] = v
                    self._cache.move_to_end(t)
                while len(self._cache) > QUERY_CACHE:
                    self._cache.popitem(last=False)
        except BaseException as exc:  # every waiter gets the error, none hangs
            for p in batch:
                p.error = exc
        finally:
            for p in batch:
                p.done = True

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        model = self.inner
        with self._exclusive():
            return model.count_tokens(texts)

    def __repr__(self) -> str:
        return f"SharedEmbedder({self._inner!r})"


class SerializedLLM:
    """One answer at a time through an LLM that is not thread-safe (a local llama.cpp model)."""

    def __init__(self, inner: LLM) -> None:
        self.inner = inner
        self.name = inner.name
        self.context_tokens = inner.context_tokens
        self._lock = threading.Lock()

    def stream(self, messages: list[Message], *, max_tokens: int, temperature: float) -> Iterator[str]:
        with self._lock:
            yield from self.inner.stream(messages, max_tokens=max_tokens, temperature=temperature)

    def count_tokens(self, text: str) -> int:
        with self._lock:
            return self.inner.count_tokens(text)
