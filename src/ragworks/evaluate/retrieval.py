"""Retrieval runs over a BEIR dataset, through a real collection.

The corpus is ingested into a collection (once: re-ingesting skips the unchanged file). Each query's dense and
BM25 legs are fetched once, deep, through `HybridRetriever`; every configuration is then the same fusion
`HybridRetriever.search` applies (`ragworks.retrieve.fusion`, each leg cut to `candidates`), so a sweep of fifty
fusion settings costs one retrieval per query. A document scores as its best chunk. `agreement` checks the
shortcut against `Collection.search` itself, and latencies are always timed on `Collection.search`.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.embed import make_embedder
from ragworks.embed.base import Embedder
from ragworks.evaluate.beir import BeirDataset, read_corpus
from ragworks.evaluate.configs import RunConfig
from ragworks.evaluate.metrics import DEFAULT_METRICS, Run, evaluate
from ragworks.ingest.pipeline import IngestReport
from ragworks.retrieve.fusion import reciprocal_rank_fusion, weighted_fusion
from ragworks.retrieve.hybrid import HybridRetriever

Ranked = list[tuple[int, float]]
RECALL_CURVE_KS = (1, 2, 3, 5, 10, 20, 30, 50, 75, 100)
RUN_DEPTH = 100  # documents kept per query: enough for Recall@100
SEARCH_K = 10  # the k users search with; each leg then holds max(candidates, k) chunks, as in HybridRetriever
LEG_DEPTH = 1000  # chunks fetched per leg: covers any `candidates` swept and 100 documents of several chunks
Progress = Callable[[str, int, int], None]  # (what, done, total)


@dataclass(slots=True)
class QueryLegs:
    dense: Ranked = field(default_factory=list)
    lexical: Ranked = field(default_factory=list)


class SerializedEmbedder:
    """An embedder whose calls run one at a time.

    Ingest chunks in a reader thread (`count_tokens`) while it embeds in the calling thread; both use one Hugging
    Face fast tokenizer, whose padding state is shared, so a count racing an encode yields an unpadded batch
    ("expected sequence of length 247 at dim 1 (got 229)"). Serializing the calls avoids it until the embedder
    itself is thread-safe.
    """

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    @property
    def max_tokens(self) -> int:
        return self.inner.max_tokens

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            return self.inner.embed_documents(texts)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            return self.inner.embed_queries(texts)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        with self._lock:
            return self.inner.count_tokens(texts)


def open_for_dataset(dataset: BeirDataset, settings: Settings, *, collection: str | None = None,
                     embedder: Embedder | None = None) -> tuple[Collection, IngestReport]:
    """The collection holding `dataset`'s corpus, ingesting it if new or changed (unchanged: nothing embedded)."""
    name = collection or f"beir-{dataset.name}"
    if embedder is None:
        embedder = make_embedder(settings)
    if not isinstance(embedder, SerializedEmbedder):
        embedder = SerializedEmbedder(embedder)
    col = Collection.open(name, settings=settings, embedder=embedder, llm=None)
    report = col.ingest(dataset.corpus_path)
    if not report.ok:
        failure = report.failed[0]
        from ragworks.evaluate.beir import DatasetError

        raise DatasetError(f"{dataset.corpus_path}: ingest failed ({failure.reason}: {failure.error})")
    return col, report


class LegCache:
    """Each query's dense and BM25 legs over one collection, fetched once at `depth` chunks."""

    def __init__(self, col: Collection, dataset: BeirDataset, *, depth: int = LEG_DEPTH) -> None:
        self.col = col
        self.dataset = dataset
        self.depth = depth
        # Legs uncollapsed and deep: collapsing and cutting happen after fusion, as in HybridRetriever.search.
        self._retriever = HybridRetriever(col.store, col.embedder, candidates=depth, collapse_duplicates=False)
        self.legs: dict[str, QueryLegs] = {}
        self.row_doc: dict[int, str] = {}
        self.seconds = 0.0

    def fetch(self, queries: Mapping[str, str], *, modes: Iterable[str] = ("dense", "bm25"),
              progress: Progress | None = None) -> None:
        """Fill in the legs of `queries` not fetched yet."""
        todo = [(q, t) for q, t in queries.items() if q not in self.legs]
        started = time.perf_counter()
        wanted = set(modes)
        for i, (qid, text) in enumerate(todo, 1):
            legs = QueryLegs()
            for mode in ("dense", "bm25"):
                if mode not in wanted:
                    continue
                hits = self._retriever.search(text, k=self.depth, mode=mode)
                ranked = [(h.row_id, h.score) for h in hits]
                for h in hits:
                    self.row_doc[h.row_id] = self.dataset.doc_id_of(h.source)
                if mode == "dense":
                    legs.dense = ranked
                else:
                    legs.lexical = ranked
            self.legs[qid] = legs
            if progress is not None and (i % 25 == 0 or i == len(todo)):
                progress("retrieve", i, len(todo))
        self.seconds += time.perf_counter() - started


def fuse(cfg: RunConfig, legs: QueryLegs, *, k: int = SEARCH_K) -> Ranked:
    """Chunks best first, as `HybridRetriever.search(k=k)` ranks them for `cfg` (before cutting to k).

    Like the retriever, each leg contributes max(candidates, k) chunks; the whole fused list (up to twice that)
    is kept, so Recall@100 sees every chunk the fusion ranked.
    """
    if cfg.kind == "bm25":
        return legs.lexical
    if cfg.kind == "dense":
        return legs.dense
    n = max(cfg.candidates, k)
    dense, lexical = legs.dense[:n], legs.lexical[:n]
    if cfg.fusion == "weighted":
        return weighted_fusion([dense, lexical], [cfg.dense_weight, 1.0 - cfg.dense_weight])
    return reciprocal_rank_fusion([dense, lexical], k=cfg.rrf_k)


def best_chunk_ranking(chunks: Ranked, row_doc: Mapping[int, str], depth: int = RUN_DEPTH) -> list[str]:
    """Document ids in the order of their best chunk (a document scores as its best chunk)."""
    seen: dict[str, None] = {}
    for row, _ in chunks:
        doc = row_doc[row]
        if doc not in seen:
            seen[doc] = None
            if len(seen) == depth:
                break
    return list(seen)


def as_run_scores(ranking: Sequence[str]) -> dict[str, float]:
    """Strictly decreasing scores, so trec_eval's tie-break cannot reorder what the retriever returned."""
    n = len(ranking)
    return {doc: float(n - i) for i, doc in enumerate(ranking)}


def collection_run(cfg: RunConfig, cache: LegCache, qids: Iterable[str], depth: int = RUN_DEPTH) -> Run:
    return {q: as_run_scores(best_chunk_ranking(fuse(cfg, cache.legs[q]), cache.row_doc, depth)) for q in qids}


class Bm25sReference:
    """bm25s (Lucene BM25, Snowball English stemmer, English stopwords) over the BEIR corpus, one doc per record."""

    def __init__(self, dataset: BeirDataset, *, k1: float = 1.2, b: float = 0.75) -> None:
        import bm25s
        import Stemmer

        corpus = read_corpus(dataset.corpus_path)
        self._bm25s = bm25s
        self.ids = list(corpus)
        self.stemmer = Stemmer.Stemmer("english")
        tokens = bm25s.tokenize([f"{t} {x}".strip() for t, x in corpus.values()], stopwords="en",
                                stemmer=self.stemmer, show_progress=False)
        self.model = bm25s.BM25(method="lucene", k1=k1, b=b)
        self.model.index(tokens, show_progress=False)

    def search(self, texts: Sequence[str], k: int = RUN_DEPTH) -> list[list[str]]:
        tokens = self._bm25s.tokenize(list(texts), stopwords="en", stemmer=self.stemmer, show_progress=False)
        k = min(k, len(self.ids))
        docs, scores = self.model.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        return [[self.ids[d] for d, s in zip(row, srow, strict=True) if s > 0] for row, srow in
                zip(docs, scores, strict=True)]


def _search_one(ref: Bm25sReference, text: str) -> list[list[str]]:
    return ref.search([text], k=SEARCH_K)


@dataclass(slots=True)
class Latency:
    p50_ms: float
    p95_ms: float
    mean_ms: float
    queries: int

    def to_dict(self) -> dict[str, Any]:
        return {"p50_ms": round(self.p50_ms, 2), "p95_ms": round(self.p95_ms, 2), "mean_ms": round(self.mean_ms, 2),
                "queries": self.queries}


def latency_of(samples_s: Sequence[float]) -> Latency:
    ms = sorted(s * 1000 for s in samples_s)
    p95 = ms[min(len(ms) - 1, max(0, round(0.95 * len(ms)) - 1))]
    return Latency(statistics.median(ms), p95, statistics.fmean(ms), len(ms))


def time_search(search: Callable[[str], object], texts: Sequence[str], *, warmup: int = 10) -> Latency:
    """Wall time of `search(text)` per query, after `warmup` untimed queries."""
    for text in list(texts)[:warmup]:
        search(text)
    samples = []
    for text in texts:
        t0 = time.perf_counter()
        search(text)
        samples.append(time.perf_counter() - t0)
    return latency_of(samples)


def collection_for(col: Collection, cfg: RunConfig) -> Collection:
    """A view of `col` searching with `cfg`'s settings (same store and embedder, no LLM)."""
    return Collection(col.path, cfg.settings_for(col.settings), col.store, embedder=col.embedder, llm=None)


def search_latency(col: Collection, cfg: RunConfig, texts: Sequence[str], *, k: int = 10) -> Latency:
    """Latency of `Collection.search(text, k=k)` under `cfg` (no reranker, no LLM)."""
    view = collection_for(col, cfg)
    return time_search(lambda t: view.search(t, k=k), texts)


def agreement(col: Collection, cfg: RunConfig, cache: LegCache, queries: Mapping[str, str], *, k: int = 10
              ) -> float:
    """Share of queries whose documents from `Collection.search(k=k)` open the evaluated ranking, in order."""
    view = collection_for(col, cfg)
    same = 0
    for qid, text in queries.items():
        product = list(dict.fromkeys(cache.dataset.doc_id_of(h.source) for h in view.search(text, k=k)))
        ours = best_chunk_ranking(fuse(cfg, cache.legs[qid], k=k), cache.row_doc, len(product))
        same += product == ours
    return same / max(len(queries), 1)


@dataclass(slots=True)
class ConfigResult:
    config: RunConfig
    metrics: dict[str, float]
    recall_curve: dict[int, float]
    latency: Latency | None = None
    agreement: float | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.config.name, "kind": self.config.kind, "params": self.config.params(),
            "metrics": {m: round(v, 5) for m, v in self.metrics.items()},
            "recall_curve": {str(k): round(v, 5) for k, v in self.recall_curve.items()},
            "latency": self.latency.to_dict() if self.latency else None,
            "agreement_with_search": self.agreement, "note": self.note,
        }


@dataclass(slots=True)
class DatasetResult:
    dataset: BeirDataset
    label: str
    collection: str
    results: list[ConfigResult]
    ingest: dict[str, Any]
    retrieval_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = self.dataset
        return {
            "name": d.name, "label": self.label, "split": d.split, "queries": len(d.queries),
            "corpus": str(d.corpus_path), "corpus_documents": d.corpus_size, "notes": d.notes,
            "collection": self.collection, "ingest": self.ingest,
            "retrieval_seconds": round(self.retrieval_seconds, 1),
            "configs": [r.to_dict() for r in self.results],
        }


def score_run(run: Run, dataset: BeirDataset, metrics: Sequence[str] = DEFAULT_METRICS
              ) -> tuple[dict[str, float], dict[int, float]]:
    """(metrics, recall curve) of `run` on `dataset`'s qrels."""
    values = evaluate(run, dataset.qrels, [*metrics, *(f"recall@{k}" for k in RECALL_CURVE_KS)])
    return {m: values[m] for m in metrics}, {k: values[f"recall@{k}"] for k in RECALL_CURVE_KS}


def evaluate_configs(
    dataset: BeirDataset,
    configs: Sequence[RunConfig],
    *,
    col: Collection | None = None,
    cache: LegCache | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    latency: bool = True,
    latency_queries: int | None = None,
    check_queries: int = 50,
    progress: Progress | None = None,
) -> list[ConfigResult]:
    """Evaluate every configuration on `dataset`; collection configurations need `col` (and reuse `cache`)."""
    texts = list(dataset.queries.values())[:latency_queries]
    if any(c.uses_collection for c in configs):
        if col is None:
            raise ValueError("collection configurations need a collection")
        if cache is None:
            cache = LegCache(col, dataset)
        modes = {m for c in configs if c.uses_collection for m in (("dense", "bm25") if c.kind == "hybrid"
                                                                     else (c.kind,))}
        cache.fetch(dataset.queries, modes=modes, progress=progress)
    out: list[ConfigResult] = []
    reference: dict[tuple[float, float], Bm25sReference] = {}
    for cfg in configs:
        if cfg.uses_collection:
            assert col is not None and cache is not None
            run = collection_run(cfg, cache, dataset.queries)
            m, curve = score_run(run, dataset, metrics)
            res = ConfigResult(cfg, m, curve)
            if latency:
                res.latency = search_latency(col, cfg, texts)
            if check_queries:
                sample = dict(list(dataset.queries.items())[:check_queries])
                res.agreement = agreement(col, cfg, cache, sample)
        else:
            key = (cfg.k1, cfg.b)
            if key not in reference:
                reference[key] = Bm25sReference(dataset, k1=cfg.k1, b=cfg.b)
            ref = reference[key]
            qids = list(dataset.queries)
            rankings = ref.search([dataset.queries[q] for q in qids])
            run = {q: as_run_scores(r) for q, r in zip(qids, rankings, strict=True)}
            m, curve = score_run(run, dataset, metrics)
            res = ConfigResult(cfg, m, curve, note="reference: indexes the BEIR corpus directly, not the collection")
            if latency:
                res.latency = time_search(partial(_search_one, ref), texts)
        out.append(res)
        if progress is not None:
            progress(f"evaluated {cfg.name}", len(out), len(configs))
    return out
