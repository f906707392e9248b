"""Rank fusion of retrieval legs: pure functions over `[(id, score), ...]` lists sorted best first."""

from __future__ import annotations

from collections.abc import Sequence

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
    """Convex combination of min-max normalized scores; a document missing from a leg scores 0 there."""
    fused: dict[int, float] = {}
    for leg, w in zip(legs, weights, strict=True):
        for doc, s in min_max(leg).items():
            fused[doc] = fused.get(doc, 0.0) + w * s
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))
