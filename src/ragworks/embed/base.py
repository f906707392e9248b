"""The Embedder protocol: texts in, L2-normalized float32 vectors out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from ragworks.embed.tokens import PassageTokenizer


@runtime_checkable
class Embedder(Protocol):
    """Turns passages and queries into unit-length vectors of one fixed dimension.

    `name` identifies the model (and its settings that change vectors, such as prefixes): it keys the embedding
    cache and is recorded in a collection, so a collection is never searched with another model's vectors.
    """

    @property
    def name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    @property
    def max_tokens(self) -> int: ...

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Passages → float32 array of shape (len(texts), dimension), rows L2-normalized."""
        ...

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Queries → float32 array; may differ from passages (prefixes, instructions)."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Token count of each text under the model's own tokenizer (no special tokens)."""
        ...


@runtime_checkable
class TokenIdEmbedder(Protocol):
    """An embedder that takes passages as token ids its own tokenizer made (so the chunker's tokens are reused)."""

    @property
    def passage_tokenizer(self) -> PassageTokenizer | None:
        """The tokenizer to make those ids with; None when this embedder must be given text after all."""
        ...

    def embed_token_ids(self, ids: Sequence[np.ndarray]) -> np.ndarray:
        """Ids of passages' index texts (no special tokens) → float32 rows, L2-normalized."""
        ...


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalization into a new contiguous float32 array; zero rows stay zero."""
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return v / norms
