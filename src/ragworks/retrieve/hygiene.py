"""Result hygiene: MMR diversification and near-duplicate collapse, applied to a ranked list of hits.

Both are off by default (`mmr_lambda`, `near_duplicate_threshold`): on BEIR, where every judged document is
distinct, they are expected to be neutral or cost a little nDCG; they exist for corpora with many near copies
(mirrored pages, versions of one file) where the top 10 would otherwise say the same thing ten times.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from ragworks.documents import SearchHit
from ragworks.embed.base import Embedder, normalize
from ragworks.store.base import Store, StoredVectors

_WORD = re.compile(r"\w+", re.UNICODE)


def shingles(text: str, n: int = 3) -> set[tuple[str, ...]]:
    """Word n-grams of the lower-cased text (the text's words themselves when it has fewer than n)."""
    words = _WORD.findall(text.lower())
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: set[Any], b: set[Any]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def collapse_near_duplicates(hits: Sequence[SearchHit], threshold: float, *, n: int = 3) -> list[SearchHit]:
    """Keep a hit only if its word-shingle Jaccard similarity with every better-ranked kept hit is < `threshold`.

    Exact Jaccard over 3-word shingles (Broder, 1997): a reranked list is tens of passages, where exact sets
    cost less than MinHash signatures and never miss.
    """
    kept: list[SearchHit] = []
    kept_sets: list[set[tuple[str, ...]]] = []
    for hit in hits:
        s = shingles(hit.chunk.text, n)
        if any(jaccard(s, other) >= threshold for other in kept_sets):
            continue
        kept.append(hit)
        kept_sets.append(s)
    return kept


def mmr_order(vectors: np.ndarray, relevance: Sequence[float], lam: float, k: int) -> list[int]:
    """Maximal marginal relevance (Carbonell & Goldstein, SIGIR 1998): indices picked greedily, best first.

    Each step takes argmax λ·rel(d) − (1−λ)·max_{s picked} cos(d, s); `relevance` is min-max scaled to [0, 1]
    so λ weighs comparable quantities whatever the first stage's score scale. λ = 1 keeps the given order.
    """
    n = len(relevance)
    if n == 0:
        return []
    rel = np.asarray(relevance, dtype=np.float64)
    span = rel.max() - rel.min()
    rel = (rel - rel.min()) / span if span > 0 else np.ones(n)
    sims = vectors @ vectors.T
    picked: list[int] = []
    max_sim = np.full(n, -np.inf)
    left = np.ones(n, dtype=bool)
    for _ in range(min(k, n)):
        penalty = np.where(np.isfinite(max_sim), max_sim, 0.0)
        score = lam * rel - (1 - lam) * penalty
        score[~left] = -np.inf
        i = int(np.argmax(score))
        picked.append(i)
        left[i] = False
        max_sim = np.maximum(max_sim, sims[:, i])
    return picked


def hit_vectors(hits: Sequence[SearchHit], store: Store, embedder: Embedder) -> np.ndarray:
    """The stored vectors of `hits` (exact, from the embedded store's SQLite), or their passages re-embedded.

    Not FAISS `reconstruct`: IVF indexes can't without a direct map, and PQ codes would give lossy vectors.
    """
    if isinstance(store, StoredVectors):
        ids, vecs = store.vectors_for([h.row_id for h in hits])
        found = {int(i): v for i, v in zip(ids, vecs, strict=True)}
        if all(int(h.row_id) in found for h in hits):  # else a hit was deleted meanwhile: embed them all
            return normalize(np.stack([found[int(h.row_id)] for h in hits]))
    return embedder.embed_documents([h.chunk.index_text for h in hits])


def diversify(hits: Sequence[SearchHit], k: int, lam: float, *, store: Store, embedder: Embedder) -> list[SearchHit]:
    """`hits` reordered by MMR with trade-off `lam`, the best `k` (scores kept as they were).

    Relevance is each hit's (fused or reranked) score, so the query is not embedded again.
    """
    if len(hits) <= 1 or lam >= 1.0:
        return list(hits[:k])
    order = mmr_order(hit_vectors(hits, store, embedder), [h.score for h in hits], lam, k)
    return [hits[i] for i in order]
