"""Ranking metrics over a run `{qid: {docid: score}}` and qrels `{qid: {docid: rel}}`, trec_eval conventions.

- A run is ordered by score descending, ties broken by doc id descending (trec_eval's `comp_sim_docno`).
- nDCG@k uses graded gains (the qrels score itself, linear as in trec_eval's `ndcg_cut`) and log2(rank + 1)
  discounts; the ideal ranking is every judged document sorted by gain (Järvelin & Kekäläinen, TOIS 2002).
- Recall@k, MRR@k and MAP@k count a document as relevant when its qrels score is > 0 (trec_eval's
  `relevance_level` 1). MAP@k divides by all relevant documents, not min(k, |rel|) (trec_eval `map_cut`).
- The mean is over every query in the qrels: a query the run lacks scores 0 (trec_eval `-c`), so a retriever
  that returns nothing is not rewarded by dropping queries.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]
QueryMetric = Callable[[Sequence[str], Mapping[str, int], int], float]


def ranked(scores: Mapping[str, float]) -> list[str]:
    """Doc ids best first: score descending, then doc id descending (trec_eval's tie-break)."""
    by_docid = sorted(scores, reverse=True)
    return sorted(by_docid, key=lambda d: -scores[d])  # stable: equal scores keep doc-id-descending order


def dcg(gains: Iterable[float]) -> float:
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains))


def ndcg(ranking: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    """nDCG@k with linear graded gains; 0 when the query has no relevant document."""
    ideal = dcg(sorted((max(r, 0) for r in judged.values()), reverse=True)[:k])
    if ideal <= 0:
        return 0.0
    return dcg(max(judged.get(d, 0), 0) for d in ranking[:k]) / ideal


def recall(ranking: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    relevant = sum(1 for r in judged.values() if r > 0)
    if relevant == 0:
        return 0.0
    return sum(1 for d in ranking[:k] if judged.get(d, 0) > 0) / relevant


def mrr(ranking: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    """Reciprocal rank of the first relevant document within the top k (0 when there is none)."""
    for i, d in enumerate(ranking[:k], 1):
        if judged.get(d, 0) > 0:
            return 1.0 / i
    return 0.0


def average_precision(ranking: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    relevant = sum(1 for r in judged.values() if r > 0)
    if relevant == 0:
        return 0.0
    hits = 0
    total = 0.0
    for i, d in enumerate(ranking[:k], 1):
        if judged.get(d, 0) > 0:
            hits += 1
            total += hits / i
    return total / relevant


METRICS: dict[str, QueryMetric] = {
    "ndcg": ndcg,
    "recall": recall,
    "mrr": mrr,
    "map": average_precision,
}
DEFAULT_METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10", "map@100")


def parse_metric(name: str) -> tuple[str, QueryMetric, int]:
    """'ndcg@10' → ('ndcg@10', ndcg, 10). Raises ValueError for an unknown metric or a bad cutoff."""
    base, sep, cut = name.lower().partition("@")
    if base not in METRICS or not sep or not cut.isdigit() or int(cut) < 1:
        raise ValueError(f"unknown metric {name!r} (use one of {', '.join(METRICS)} with @k, e.g. ndcg@10)")
    return f"{base}@{int(cut)}", METRICS[base], int(cut)


def per_query(run: Run, qrels: Qrels, metrics: Sequence[str] = DEFAULT_METRICS) -> dict[str, dict[str, float]]:
    """{metric: {qid: value}} for every query in `qrels`."""
    parsed = [parse_metric(m) for m in metrics]
    out: dict[str, dict[str, float]] = {name: {} for name, _, _ in parsed}
    for qid, judged in qrels.items():
        ranking = ranked(run.get(qid, {}))
        for name, fn, k in parsed:
            out[name][qid] = fn(ranking, judged, k)
    return out


def evaluate(run: Run, qrels: Qrels, metrics: Sequence[str] = DEFAULT_METRICS) -> dict[str, float]:
    """{metric: mean over the queries in `qrels`}."""
    if not qrels:
        raise ValueError("no queries to evaluate (empty qrels)")
    return {name: sum(values.values()) / len(values) for name, values in per_query(run, qrels, metrics).items()}
