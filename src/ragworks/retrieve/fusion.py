"""Rank fusion of retrieval legs: pure functions over `[(id, score), ...]` lists sorted best first."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Ranked = Sequence[tuple[int, float]]


def reciprocal_rank_fusion(legs: Sequence[Ranked], *, k: int = 60, weights: Sequence[float] | None = None
                           ) -> list[tuple[int, float]]:
    """RRF (Cormack, Clarke & Büttcher, SIGIR 2009): score(d) = Σ w_leg / (k + rank_leg(d)), ranks from 1."""
    weights = weights or [1.0] * len(legs)
    fused: dict[int, float] = {}
    for leg, w in zip(legs, weights, strict=True):
        for rank, (doc, _) in enumerate(leg, 1):
            fused[doc] = fused.get(doc, 0.0) + w / (k + rank)
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))


def min_max(leg: Ranked) -> dict[int, float]:
    """Scores rescaled to [0, 1] within the leg (all equal → all 1)."""
    if not leg:
        return {}
    scores = [s for _, s in leg]
    lo, hi = min(scores), max(scores)
    span = hi - lo
    return {doc: (s - lo) / span if span > 0 else 1.0 for doc, s in leg}


def weighted_fusion(legs: Sequence[Ranked], weights: Sequence[float]) -> list[tuple[int, float]]:
    """Convex combination of min-max normalized scores; a document missing from a leg scores 0 there.

    Vectorized (a search fuses 2 × 400 candidates: 0.3 ms as dicts, ~0.08 ms here); ties go to the smaller id.
    """
    if len(legs) != len(weights):
        raise ValueError("one weight per leg")
    ids_parts, score_parts = [], []
    for leg, w in zip(legs, weights, strict=True):
        if not leg:
            continue
        ids = np.fromiter((d for d, _ in leg), dtype=np.int64, count=len(leg))
        scores = np.fromiter((s for _, s in leg), dtype=np.float64, count=len(leg))
        lo, span = scores.min(), scores.max() - scores.min()
        ids_parts.append(ids)
        score_parts.append(w * ((scores - lo) / span if span > 0 else np.ones_like(scores)))
    if not ids_parts:
        return []
    uniq, inverse = np.unique(np.concatenate(ids_parts), return_inverse=True)
    fused = np.zeros(len(uniq), dtype=np.float64)
    np.add.at(fused, inverse, np.concatenate(score_parts))  # legs in order, as the dict sum was
    order = np.lexsort((uniq, -fused))
    return list(zip(uniq[order].tolist(), fused[order].tolist(), strict=True))
