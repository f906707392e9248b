"""Tokenize a passage once, from file to vector.

The chunker needs token counts to size chunks, and the model needs token ids: `PassageTokenizer` gives both from
one pass of the model's own Rust tokenizer over the whole document. `DocTokens` keeps each token's character
offsets, so the ids of any chunk (an exact slice of the document text) are a slice of the document's ids; the
embedder then only adds the special tokens, pads and runs the model (`TokenIdEmbedder`).

Slicing equals tokenizing the slice for tokenizers that split words at whitespace before sub-word splitting
(WordPiece/BERT, and SentencePiece/Metaspace with a space marker on every word); `composable` checks that on
probe strings once, and callers fall back to text when it is False.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Probe texts for `composable`: accents, digits, punctuation, a line break, a heading-like line and a long word.
_PROBES = (
    ("The Fresnel lens (1822) was first installed at Cordouan.", "Its light reached 32 km, über-bright."),
    ("Heading › Section two", "Ceci n'est pas une pipe; e-mail: a.b@example.org\nNext line."),
    ("Antidisestablishmentarianism isn't a word everyone knows", "— nor is 3.14159, say, x²."),
)


# Below this many texts per thread, starting threads costs more than it saves.
_PER_THREAD_MIN = 512


def cpu_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(slots=True)
class DocTokens:
    """One document's token ids with the character range each token came from."""

    ids: np.ndarray  # int32, no special tokens
    starts: np.ndarray  # int64 character offset where each token starts
    ends: np.ndarray  # int64 character offset where each token ends

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Token index range [i, j) of the tokens lying inside characters [start, end)."""
        i = int(np.searchsorted(self.starts, start, side="left"))
        j = int(np.searchsorted(self.ends, end, side="right"))
        return i, max(i, j)

    def count(self, start: int, end: int) -> int:
        i, j = self.span(start, end)
        return j - i

    def slice(self, start: int, end: int) -> np.ndarray:
        i, j = self.span(start, end)
        return self.ids[i:j]


def _special_template(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer's post-processor puts before and after one sequence."""
    probe = "hello world"
    bare = tokenizer.encode(probe, add_special_tokens=False).ids
    full = tokenizer.encode(probe, add_special_tokens=True).ids
    for at in range(len(full) - len(bare) + 1):
        if full[at : at + len(bare)] == bare:
            return full[:at], full[at + len(bare):]
    raise ValueError("the tokenizer's special-token template does not wrap the sequence unchanged")


def _no_limits(tokenizer: Any) -> Any:
    """A private copy of a Rust `tokenizers.Tokenizer` with truncation and padding off (thread-safe to share)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tokenizer.to_str())
    tok.no_truncation()
    tok.no_padding()
    return tok


class PassageTokenizer:
    """The model's tokenizer set up for passages: no special tokens, no truncation, offsets kept.

    `head` and `tail` are the special tokens the model wraps a sequence in (e.g. [CLS] … [SEP]); `max_tokens` is
    the model's sequence limit including them. Encoding releases the GIL, so threads tokenize in parallel.
    """

    def __init__(self, tokenizer: Any, *, head: Sequence[int], tail: Sequence[int], max_tokens: int,
                 pad_id: int) -> None:
        self._tok = _no_limits(tokenizer)
        self.head = list(head)
        self.tail = list(tail)
        self.max_tokens = max_tokens
        self.pad_id = pad_id
        self._fast = hasattr(self._tok, "encode_batch_fast")  # tokenizers >= 0.20: no offsets, faster
        self.composable = self._check_composable()

    @classmethod
    def from_hf(cls, hf_tokenizer: Any, max_tokens: int) -> PassageTokenizer:
        """From a transformers fast tokenizer (its Rust backend and special-token template)."""
        backend = _no_limits(hf_tokenizer.backend_tokenizer)
        head, tail = _special_template(backend)
        pad = hf_tokenizer.pad_token_id
        return cls(backend, head=head, tail=tail, max_tokens=max_tokens, pad_id=int(pad if pad is not None else 0))

    @classmethod
    def from_rust(cls, tokenizer: Any, *, max_tokens: int, pad_id: int) -> PassageTokenizer:
        """From a Rust `tokenizers.Tokenizer` (copied: the caller's truncation and padding stay as they are)."""
        backend = _no_limits(tokenizer)
        head, tail = _special_template(backend)
        return cls(backend, head=head, tail=tail, max_tokens=max_tokens, pad_id=pad_id)

    @classmethod
    def from_model_dir(cls, model_dir: Path) -> PassageTokenizer:
        """From a model directory's tokenizer.json alone (no transformers import, no weights): for tokenizing
        processes, which then start in a fraction of a second."""
        from tokenizers import Tokenizer

        path = model_dir / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"{model_dir} has no tokenizer.json (a fast tokenizer is needed)")
        tok = Tokenizer.from_file(str(path))
        max_tokens = 512
        limits = (("sentence_bert_config.json", "max_seq_length"), ("tokenizer_config.json", "model_max_length"))
        for name, key in limits:
            cfg = model_dir / name
            if cfg.is_file() and isinstance(value := json.loads(cfg.read_text()).get(key), int):
                max_tokens = min(value, 8192)
                break
        pad = tok.padding["pad_id"] if tok.padding else None
        if pad is None:
            cfg = model_dir / "tokenizer_config.json"
            token = json.loads(cfg.read_text()).get("pad_token") if cfg.is_file() else None
            pad = tok.token_to_id(token) if isinstance(token, str) else None
        return cls.from_rust(tok, max_tokens=max_tokens, pad_id=int(pad or 0))

    @property
    def content_limit(self) -> int:
        """Ids of one sequence that fit beside the special tokens."""
        return max(1, self.max_tokens - len(self.head) - len(self.tail))

    def document(self, text: str) -> DocTokens:
        return self._doc(self._tok.encode(text, add_special_tokens=False))

    def documents(self, texts: Sequence[str]) -> list[DocTokens]:
        """Many documents in one call (parallel inside the Rust tokenizer when TOKENIZERS_PARALLELISM allows)."""
        if not texts:
            return []
        return [self._doc(e) for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    @staticmethod
    def _doc(enc: Any) -> DocTokens:
        ids = np.asarray(enc.ids, dtype=np.int32)
        if not len(ids):
            empty = np.zeros(0, dtype=np.int64)
            return DocTokens(ids, empty, empty)
        offsets = np.asarray(enc.offsets, dtype=np.int64).reshape(-1, 2)
        return DocTokens(ids, offsets[:, 0], offsets[:, 1])

    def ids(self, texts: Sequence[str], *, threads: int | None = None) -> list[np.ndarray]:
        """Each text's ids (no special tokens, not truncated); large batches are split over `threads` threads
        (None: one per core)."""
        if not texts:
            return []
        threads = min(threads or cpu_cores(), len(texts) // _PER_THREAD_MIN)
        if threads <= 1:
            return self._ids(texts)
        step = -(-len(texts) // threads)
        parts = [texts[i : i + step] for i in range(0, len(texts), step)]
        with ThreadPoolExecutor(len(parts), thread_name_prefix="ragworks-tokenize") as pool:
            return [x for part in pool.map(self._ids, parts) for x in part]

    def _ids(self, texts: Sequence[str]) -> list[np.ndarray]:
        encode = self._tok.encode_batch_fast if self._fast else self._tok.encode_batch
        return [np.asarray(e.ids, dtype=np.int32) for e in encode(list(texts), add_special_tokens=False)]

    def count(self, texts: Sequence[str]) -> list[int]:
        return [len(x) for x in self.ids(texts)]

    def _check_composable(self) -> bool:
        """Whether ids(a + sep + b) == ids(a) + ids(b) and a document slice's ids == the slice's own ids."""
        for a, b in _PROBES:
            for sep in (" ", "\n"):
                text = a + sep + b
                whole = self.ids([text])[0].tolist()
                if whole != self.ids([a])[0].tolist() + self.ids([b])[0].tolist():
                    return False
                doc = self.document(text)
                if doc.slice(len(a) + len(sep), len(text)).tolist() != self.ids([b])[0].tolist():
                    return False
        return True

    def join(self, context_ids: np.ndarray | None, text_ids: np.ndarray) -> np.ndarray:
        """The ids of `context + "\\n" + text` (a chunk's index text) from its two parts."""
        if context_ids is None or not len(context_ids):
            return text_ids
        return np.concatenate([context_ids, text_ids])
