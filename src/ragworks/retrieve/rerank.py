"""Rerankers: rescore a first stage's hits more precisely (late interaction, cross-encoder, or an LLM's grades).

Each implements `retrieve.base.Reranker` and is chosen by `Settings.reranker` (`make_reranker`). A reranker
returns hits whose `score` is its own (mixed with the first stage's where it says so), best first.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np

from ragworks.config import Settings
from ragworks.documents import SearchHit
from ragworks.embed.base import Embedder
from ragworks.errors import ConfigError
from ragworks.generate.base import LLM, Message, complete
from ragworks.retrieve.base import Reranker

TokenEncoder = Callable[[Sequence[str]], list[np.ndarray]]  # texts → one (tokens × dim) array per text


def passage_text(hit: SearchHit) -> str:
    """What a reranker reads of a hit: its context line (title › headings) and passage, as was embedded."""
    return hit.chunk.index_text


def min_max(values: Sequence[float]) -> list[float]:
    lo, hi = min(values), max(values)
    return [(v - lo) / (hi - lo) if hi > lo else 1.0 for v in values]


def rescored(hits: Sequence[SearchHit], scores: Sequence[float], k: int, *, first_stage_weight: float = 0.0
             ) -> list[SearchHit]:
    """`hits` reordered by `scores` (optionally min-max mixed with their first-stage scores), the best `k`.

    Ties keep the first-stage order (a stable sort), so a reranker that cannot tell passages apart changes nothing.
    """
    if not hits:
        return []
    final = list(scores)
    if first_stage_weight > 0:
        first = min_max([h.score for h in hits])
        mine = min_max(list(scores))
        final = [first_stage_weight * f + (1 - first_stage_weight) * m for f, m in zip(first, mine, strict=True)]
    order = sorted(range(len(hits)), key=lambda i: -final[i])
    out = []
    for i in order[:k]:
        hit = hits[i]
        hit.score = float(final[i])
        out.append(hit)
    return out


def maxsim(query_tokens: np.ndarray, passage_tokens: np.ndarray) -> float:
    """ColBERT late interaction (Khattab & Zaharia, SIGIR 2020): mean over query tokens of the best cosine."""
    return float((query_tokens @ passage_tokens.T).max(axis=1).mean())


def _unit_rows(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float32)
    return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-9)


class MaxSimReranker:
    """Late interaction over the embedding model's own token vectors: no extra weights.

    Token vectors are the transformer's outputs before pooling (sentence-transformers `token_embeddings`), without
    [CLS]/[SEP]; passages' token vectors are cached by text (LRU), since popular passages recur across queries.
    """

    name = "maxsim"

    def __init__(self, encode_tokens: TokenEncoder, *, first_stage_weight: float = 0.5,
                 cache_size: int = 4096) -> None:
        self._encode = encode_tokens
        self.first_stage_weight = first_stage_weight
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def with_weight(self, first_stage_weight: float) -> MaxSimReranker:
        """The same reranker with another first-stage weight, sharing this one's token-vector cache."""
        other = MaxSimReranker(self._encode, first_stage_weight=first_stage_weight, cache_size=self._cache_size)
        other._cache, other._lock = self._cache, self._lock
        return other

    def _passages(self, texts: Sequence[str]) -> list[np.ndarray]:
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            fresh = dict(zip(missing, self._encode(missing), strict=True))
        with self._lock:
            out = []
            for t in texts:
                vec = self._cache.get(t)
                if vec is None:
                    vec = _unit_rows(fresh[t])
                    self._cache[t] = vec
                self._cache.move_to_end(t)
                out.append(vec)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return out

    def rerank(self, query: str, hits: list[SearchHit], k: int) -> list[SearchHit]:
        if not hits:
            return []
        q = _unit_rows(self._encode([query])[0])
        passages = self._passages([passage_text(h) for h in hits])
        scores = [maxsim(q, p) for p in passages]
        return rescored(hits, scores, k, first_stage_weight=self.first_stage_weight)


def sentence_transformer_tokens(model: Any) -> TokenEncoder:
    """A TokenEncoder over a loaded sentence-transformers model (`encode(output_value="token_embeddings")`)."""

    def encode(texts: Sequence[str]) -> list[np.ndarray]:
        out = model.encode(list(texts), output_value="token_embeddings", convert_to_numpy=False,
                           show_progress_bar=False, batch_size=32)
        return [np.asarray(t.float().cpu().numpy())[1:-1] if len(t) > 2 else np.asarray(t.float().cpu().numpy())
                for t in out]

    return encode


def token_encoder_for(embedder: Embedder) -> TokenEncoder:
    """The token-vector encoder of a local embedder (torch or ONNX); remote embedders expose none."""
    inner = getattr(embedder, "loaded", embedder)  # a LazyEmbedder: the real model
    token_vectors = getattr(inner, "token_vectors", None)
    if callable(token_vectors):
        return token_vectors
    model = getattr(inner, "_model", None)
    if model is not None and type(model).__module__.startswith("sentence_transformers"):
        return sentence_transformer_tokens(model)
    raise ConfigError(f"reranker 'maxsim' needs a local embedding model's token vectors; {embedder.name!r} has "
                      "none (use reranker = 'cross-encoder' or 'llm')")


class CrossEncoderReranker:
    """Any local sentence-transformers CrossEncoder directory (no weights ship: point `reranker_model` at one)."""

    def __init__(self, model_dir: str | Path, *, batch_size: int = 32, device: str = "cpu") -> None:
        path = Path(model_dir).expanduser()
        check_cross_encoder_dir(path)
        from sentence_transformers import CrossEncoder

        self.model: Any = CrossEncoder(str(path), device=device, local_files_only=True)
        self.batch_size = batch_size
        self.name = f"cross-encoder:{path.name}"
        self._lock = threading.Lock()

    def scores(self, query: str, texts: Sequence[str]) -> list[float]:
        with self._lock:  # one torch model: concurrent predict() calls only contend
            out = self.model.predict([(query, t) for t in texts], batch_size=self.batch_size,
                                     show_progress_bar=False, convert_to_numpy=True)
        arr = np.asarray(out, dtype=np.float32)
        if arr.ndim > 1:  # several labels: the last is "relevant" by the usual convention
            arr = arr[:, -1]
        return [float(x) for x in arr]

    def rerank(self, query: str, hits: list[SearchHit], k: int) -> list[SearchHit]:
        if not hits:
            return []
        return rescored(hits, self.scores(query, [passage_text(h) for h in hits]), k)


def check_cross_encoder_dir(path: Path) -> None:
    """Raise ConfigError unless `path` looks like a local sequence-classification (cross-encoder) model."""
    if not str(path) or not path.is_dir():
        raise ConfigError(f"reranker_model {str(path)!r} is not a directory: point it at a local "
                          "sentence-transformers CrossEncoder (ragworks never downloads weights)")
    config = path / "config.json"
    if not config.is_file():
        raise ConfigError(f"{path}: no config.json, so not a transformers model directory")
    arch = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    if not any("SequenceClassification" in a for a in arch):
        raise ConfigError(f"{path}: a {', '.join(arch) or 'bare'} model, not a cross-encoder (expected a "
                          "*ForSequenceClassification model, e.g. saved by sentence_transformers.CrossEncoder)")


GRADE_PROMPT = (
    "You judge search results. Given a question and a passage, answer with one digit: 3 = the passage answers "
    "the question, 2 = closely related, 1 = same topic only, 0 = unrelated. Answer with the digit only."
)
_DIGIT = re.compile(r"\b[0-3]\b")
_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


def parse_grade(text: str) -> int | None:
    """The first grade digit in an answer; small models often answer yes/no instead (3 / 0); else None."""
    match = _DIGIT.search(text)
    if match:
        return int(match.group())
    word = _YES_NO.search(text)
    if word:
        return 3 if word.group(1).lower() == "yes" else 0
    return None


class LLMReranker:
    """Pointwise: the LLM grades each passage 0–3; grades are mixed with the first-stage scores.

    Works with any `LLM` (an OpenAI-compatible endpoint, or the local GGUF, which runs one grade at a time since
    llama.cpp is not re-entrant). Passages not graded by `timeout_s` (or whose answer has no digit) keep the
    first-stage order among themselves with the mean grade, so a slow endpoint degrades to the first stage.
    """

    def __init__(self, llm: LLM, *, concurrency: int = 4, timeout_s: float = 60.0, first_stage_weight: float = 0.5,
                 max_passage_chars: int = 1200) -> None:
        self.llm = llm
        self.concurrency = 1 if type(llm).__name__ == "LlamaCppLLM" else max(1, concurrency)
        self.timeout_s = timeout_s
        self.first_stage_weight = first_stage_weight
        self.max_passage_chars = max_passage_chars
        self.name = f"llm:{llm.name}"
        self.last_graded = 0  # how many passages the last call graded in time (for reports)

    def grade(self, query: str, text: str) -> int | None:
        messages: list[Message] = [
            {"role": "system", "content": GRADE_PROMPT},
            {"role": "user", "content": f"Question: {query}\n\nPassage: {text[: self.max_passage_chars]}\n\n"
                                        "Grade (0-3):"},
        ]
        return parse_grade(complete(self.llm, messages, max_tokens=3, temperature=0.0))

    def rerank(self, query: str, hits: list[SearchHit], k: int) -> list[SearchHit]:
        if not hits:
            return []
        grades: list[int | None] = [None] * len(hits)
        deadline = time.monotonic() + self.timeout_s
        if self.concurrency == 1:  # in this thread, one at a time: the local model is not re-entrant
            for i, h in enumerate(hits):
                if time.monotonic() >= deadline:
                    break
                grades[i] = self.grade(query, passage_text(h))
            return self._ranked(hits, grades, k)
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="llm-rerank")
        try:
            futures = {pool.submit(self.grade, query, passage_text(h)): i for i, h in enumerate(hits)}
            done, _ = wait(futures, timeout=max(0.0, deadline - time.monotonic()))
            for fut in done:
                if fut.exception() is None:
                    grades[futures[fut]] = fut.result()
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        return self._ranked(hits, grades, k)

    def _ranked(self, hits: list[SearchHit], grades: list[int | None], k: int) -> list[SearchHit]:
        known = [g for g in grades if g is not None]
        self.last_graded = len(known)
        fill = sum(known) / len(known) if known else 0.0
        return rescored(hits, [float(g) if g is not None else fill for g in grades], k,
                        first_stage_weight=self.first_stage_weight)


def make_reranker(settings: Settings, *, embedder: Embedder | None = None, llm: LLM | None = None
                  ) -> Reranker | None:
    """The reranker `settings.reranker` names (None for "none"); models load now, so build once per process."""
    kind = settings.reranker
    if kind == "none":
        return None
    if kind == "maxsim":
        if embedder is None:
            raise ConfigError("reranker 'maxsim' needs the collection's embedder")
        return MaxSimReranker(token_encoder_for(embedder), first_stage_weight=settings.rerank_first_stage_weight)
    if kind == "cross-encoder":
        if not settings.reranker_model:
            raise ConfigError("reranker = 'cross-encoder' needs reranker_model: a local CrossEncoder directory")
        return CrossEncoderReranker(settings.reranker_model)
    if llm is None:
        raise ConfigError("reranker = 'llm' needs an LLM (set llm to 'local', 'openai' or 'fireworks')")
    return LLMReranker(llm, concurrency=settings.rerank_concurrency, timeout_s=settings.request_timeout_s,
                       first_stage_weight=settings.rerank_first_stage_weight)
