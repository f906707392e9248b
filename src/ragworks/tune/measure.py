"""Before/after retrieval quality of two models of one collection, on queries training never saw.

Each model is read through its own view of the store (`EmbeddedStore.select_model`), so the new model is measured
on its complete index before anything switches. Dense is the model alone; hybrid fuses it with the collection's
BM25 leg exactly as the collection's settings do (fusion, weight, candidates). A document scores as its best chunk.
`choose_dense_weight` picks the fusion weight for a tuned model on held-out dev queries (never the test queries).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ragworks.config import Settings
from ragworks.embed.base import Embedder
from ragworks.evaluate.metrics import evaluate
from ragworks.retrieve.fusion import reciprocal_rank_fusion, weighted_fusion
from ragworks.store.embedded import EmbeddedStore

METRICS = ("ndcg@10", "recall@100")
DEPTH = 100  # documents per query: enough for Recall@100
# a tuned model beats the base by a lot, so its best weight for the dense leg moves up from the base's 0.4
WEIGHT_GRID = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8)
Scores = dict[str, dict[str, float]]  # {mode: {metric: value}}


def doc_ranking(chunks: Sequence[tuple[int, float]], doc_of: Mapping[int, str], depth: int = DEPTH) -> dict[str, float]:
    """{document: score} in the order of each document's best chunk, with strictly decreasing scores."""
    seen: dict[str, None] = {}
    for cid, _ in chunks:
        doc = doc_of.get(cid)
        if doc is not None and doc not in seen:
            seen[doc] = None
            if len(seen) == depth:
                break
    return {d: float(len(seen) - i) for i, d in enumerate(seen)}


def measure(collection_path: Path, settings: Settings, model_id: int, embedder: Embedder,
            queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]], doc_of: Mapping[int, str], *,
            lexical: dict[str, list[tuple[int, float]]] | None = None,
            progress: Callable[[str, int, int], None] | None = None) -> Scores:
    """nDCG@10 and Recall@100 of model `model_id` (dense, and hybrid with BM25) on `queries`.

    `doc_of` maps chunk ids to the document ids `qrels` use; pass the same `lexical` dict to several calls to fetch
    each query's BM25 leg once.
    """
    s = settings
    depth = max(s.candidates, 1000)
    store = EmbeddedStore(collection_path, create=False)
    try:
        store.select_model(model_id)
        qids = list(queries)
        qvecs = embedder.embed_queries([queries[q] for q in qids])
        lexical = {} if lexical is None else lexical
        dense_run, hybrid_run = {}, {}
        for i, (qid, qvec) in enumerate(zip(qids, qvecs, strict=True)):
            dense = store.dense_search(qvec, depth)
            if qid not in lexical:
                lexical[qid] = store.lexical_search(queries[qid], depth)
            n = max(s.candidates, 10)
            legs = [dense[:n], lexical[qid][:n]]
            if s.fusion == "weighted":
                fused = weighted_fusion(legs, [s.dense_weight, 1.0 - s.dense_weight])
            else:
                fused = reciprocal_rank_fusion(legs, k=s.rrf_k)
            dense_run[qid] = doc_ranking(dense, doc_of)
            hybrid_run[qid] = doc_ranking(fused, doc_of)
            if progress is not None and (i % 50 == 0 or i == len(qids) - 1):
                progress("measure", i + 1, len(qids))
    finally:
        store.close()
    return {"dense": evaluate(dense_run, qrels, METRICS), "hybrid": evaluate(hybrid_run, qrels, METRICS)}


def choose_dense_weight(collection_path: Path, settings: Settings, model_id: int, embedder: Embedder,
                        queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]], doc_of: Mapping[int, str],
                        *, grid: Sequence[float] = WEIGHT_GRID) -> tuple[float, dict[float, float]]:
    """The weighted-fusion `dense_weight` of `grid` with the best hybrid nDCG@10 on `queries`, and every score.

    Ties go to the smaller weight (the first in `grid`); pass dev queries, never the ones you report on.
    """
    if not queries or not grid:
        raise ValueError("choosing a fusion weight needs queries and a grid of weights")
    n = max(settings.candidates, 10)
    store = EmbeddedStore(collection_path, create=False)
    try:
        store.select_model(model_id)
        qids = list(queries)
        qvecs = embedder.embed_queries([queries[q] for q in qids])
        legs = {q: [store.dense_search(v, n), store.lexical_search(queries[q], n)]
                for q, v in zip(qids, qvecs, strict=True)}
    finally:
        store.close()
    scores: dict[float, float] = {}
    for w in grid:
        run = {q: doc_ranking(weighted_fusion(legs[q], [w, 1.0 - w]), doc_of) for q in qids}
        scores[float(w)] = evaluate(run, qrels, ("ndcg@10",))["ndcg@10"]
    best = max(scores, key=lambda w: (scores[w], -w))
    return best, scores
