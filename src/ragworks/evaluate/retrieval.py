"""Retrieval runs over a BEIR dataset, through a real collection.

The corpus is ingested into a collection (once: re-ingesting skips the unchanged file). Each query's dense and
BM25 legs are fetched once, deep, with the store calls `HybridRetriever` makes; every configuration is then the fusion
`HybridRetriever.search` applies (`ragworks.retrieve.fusion`, each leg cut to max(candidates, k)), so a sweep of
fifty fusion settings costs one retrieval per query. A document scores as its best chunk. `agreement` checks the
shortcut against `Collection.search` itself, and latencies are always timed on `Collection.search` (for
`lex=inhouse`: `Collection.search` over a store whose lexical leg is swapped, see InhouseLexicalStore).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.embed import make_embedder
from ragworks.embed.base import Embedder
from ragworks.evaluate.beir import BeirDataset, read_corpus
from ragworks.evaluate.configs import RunConfig
from ragworks.evaluate.metrics import DEFAULT_METRICS, Run, evaluate
from ragworks.ingest.pipeline import IngestReport
from ragworks.lexical.bm25 import BM25Index
from ragworks.retrieve.fusion import reciprocal_rank_fusion, weighted_fusion
from ragworks.store.base import Filter
from ragworks.store.corpus import indexed_bodies
from ragworks.store.embedded import EmbeddedStore

Ranked = list[tuple[int, float]]
RECALL_CURVE_KS = (1, 2, 3, 5, 10, 20, 30, 50, 75, 100)
RUN_DEPTH = 100  # documents kept per query: enough for Recall@100
SEARCH_K = 10  # the k users search with; each leg then holds max(candidates, k) chunks, as in HybridRetriever
LEG_DEPTH = 1000  # chunks fetched per leg: covers any `candidates` swept and 100 documents of several chunks
Progress = Callable[[str, int, int], None]  # (what, done, total)


def set_threads(n: int) -> None:
    """Run torch and FAISS (OpenMP) on `n` threads in this process; 0 leaves the libraries' defaults.

    Measured here (2 cores, load ~8): a one-query FAISS flat search over 10k vectors takes 60 ms p50 on two OpenMP
    threads and 0.8 ms on one; a MiniLM query embedding 1,009 ms on two torch threads and 93 ms on one.
    """
    if n > 0:
        import faiss
        import torch

        torch.set_num_threads(n)
        faiss.omp_set_num_threads(n)


def open_for_dataset(dataset: BeirDataset, settings: Settings, *, collection: str | None = None,
                     embedder: Embedder | None = None) -> tuple[Collection, IngestReport]:
    """The collection holding `dataset`'s corpus, ingesting it if new or changed (unchanged: nothing embedded)."""
    name = collection or f"beir-{dataset.name}"
    if embedder is None:
        embedder = make_embedder(settings)
    col = Collection.open(name, settings=settings, embedder=embedder, llm=None)
    report = col.ingest(dataset.corpus_path)
    if not report.ok:
        failure = report.failed[0]
        from ragworks.evaluate.beir import DatasetError

        raise DatasetError(f"{dataset.corpus_path}: ingest failed ({failure.reason}: {failure.error})")
    return col, report


class InhouseLexicalStore:
    """Prototype of the proposed wiring: a store whose BM25 leg is `retrieve.lexical.BM25Index`, not FTS5.

    Everything else (dense leg, hits, stats) is the real store's, so `Collection.search` over it is exactly the
    product with one leg swapped. Filters are not supported by the prototype.
    """

    def __init__(self, store: EmbeddedStore, index: BM25Index) -> None:
        self._store = store
        self.index = index

    def lexical_search(self, query: str, k: int, flt: Filter | None = None) -> list[tuple[int, float]]:
        if flt:
            raise NotImplementedError("the in-house BM25 prototype takes no filters")
        return self.index.search(query, k)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def chunk_bodies(col: Collection) -> list[tuple[int, str]]:
    """(chunk id, indexed text) of every chunk: what FTS5 indexes (prototype only: the store's own view of it)."""
    return indexed_bodies(col.path)


class LegCache:
    """Each query's retrieval legs over one collection, fetched once at `depth` chunks and reused by every config.

    Legs are named: "dense", "bm25" (the store's BM25 leg as configured), "fts5" (the store forced to FTS5),
    "inhouse:k1=…,b=…" (a BM25Index with those parameters).
    """

    def __init__(self, col: Collection, dataset: BeirDataset, *, depth: int = LEG_DEPTH) -> None:
        self.col = col
        self.dataset = dataset
        self.depth = depth
        self.legs: dict[str, dict[str, Ranked]] = {}
        self.row_doc: dict[int, str] = {}
        self.seconds = 0.0
        self.build_seconds: dict[str, float] = {}
        self._views: dict[str, Collection] = {"dense": col, "bm25": col}

    def view(self, leg: str) -> Collection:
        """The collection whose retriever produces `leg` (its own store for FTS5, a wrapper for BM25Index)."""
        if leg == "fts5" and leg not in self._views:
            fts5 = Collection.open(self.col.path, settings=self.col.settings.model_copy(
                update={"lexical_backend": "fts5"}), embedder=self.col.embedder, llm=None)
            fts5.retriever()  # configures its store's BM25 leg
            self._views[leg] = fts5
        if leg not in self._views:
            params = dict(kv.split("=") for kv in leg.partition(":")[2].split(","))
            t0 = time.perf_counter()
            index = BM25Index(k1=float(params["k1"]), b=float(params["b"]))
            bodies = chunk_bodies(self.col)
            index.add([i for i, _ in bodies], [b for _, b in bodies])
            index.search("warm up", 1)  # builds the matrix
            self.build_seconds[leg] = time.perf_counter() - t0
            store = cast(EmbeddedStore, InhouseLexicalStore(cast(EmbeddedStore, self.col.store), index))
            self._views[leg] = Collection(self.col.path, self.col.settings, store, embedder=self.col.embedder,
                                          llm=None)
        return self._views[leg]

    def fetch(self, queries: Mapping[str, str], *, legs: Iterable[str] = ("dense", "bm25"),
              progress: Progress | None = None) -> None:
        """Fill in the named legs of `queries` not fetched yet.

        Each leg is the store call `HybridRetriever.search` makes for it (`dense_search` of the embedded query,
        `lexical_search`), `depth` deep and uncollapsed: cutting and collapsing come after fusion. Only chunks
        not seen before are materialized, to learn their document.
        """
        started = time.perf_counter()
        stores = {leg: self.view(leg).store for leg in legs}
        todo = [(q, t) for q, t in queries.items() if any(leg not in self.legs.get(q, {}) for leg in stores)]
        for i, (qid, text) in enumerate(todo, 1):
            have = self.legs.setdefault(qid, {})
            for leg, store in stores.items():
                if leg in have:
                    continue
                if not text.strip():
                    ranked: Ranked = []
                elif leg == "dense":
                    ranked = store.dense_search(self.col.embedder.embed_queries([text])[0], self.depth)
                else:
                    ranked = store.lexical_search(text, self.depth)
                unseen = [(row, score) for row, score in ranked if row not in self.row_doc]
                for h in store.hits(unseen):
                    self.row_doc[h.row_id] = self.dataset.doc_id_of(h.source)
                have[leg] = [(row, score) for row, score in ranked if row in self.row_doc]
            if progress is not None and (i % 100 == 0 or i == len(todo)):
                progress("retrieve", i, len(todo))
        self.seconds += time.perf_counter() - started


def fuse(cfg: RunConfig, legs: Mapping[str, Ranked], *, k: int = SEARCH_K) -> Ranked:
    """Chunks best first, as `HybridRetriever.search(k=k)` ranks them for `cfg` (before cutting to k).

    Like the retriever, each leg contributes max(candidates, k) chunks; the whole fused list (up to twice that)
    is kept, so Recall@100 sees every chunk the fusion ranked.
    """
    if cfg.kind == "bm25":
        return legs[cfg.lexical_leg]
    if cfg.kind == "dense":
        return legs["dense"]
    n = max(cfg.candidates, k)
    dense, lexical = legs["dense"][:n], legs[cfg.lexical_leg][:n]
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
    """Per-query wall time, and CPU time of this process (what the query costs a core of its own)."""

    p50_ms: float
    p95_ms: float
    mean_ms: float
    queries: int
    cpu_p50_ms: float = 0.0
    cpu_p95_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"p50_ms": round(self.p50_ms, 2), "p95_ms": round(self.p95_ms, 2), "mean_ms": round(self.mean_ms, 2),
                "cpu_p50_ms": round(self.cpu_p50_ms, 2), "cpu_p95_ms": round(self.cpu_p95_ms, 2),
                "queries": self.queries}


def _p95(sorted_ms: Sequence[float]) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, max(0, round(0.95 * len(sorted_ms)) - 1))]  # nearest rank


def latency_of(samples_s: Sequence[float], cpu_s: Sequence[float] = ()) -> Latency:
    ms = sorted(s * 1000 for s in samples_s)
    cpu = sorted(s * 1000 for s in cpu_s) or [0.0]
    return Latency(statistics.median(ms), _p95(ms), statistics.fmean(ms), len(ms), statistics.median(cpu), _p95(cpu))


def time_search(search: Callable[[str], object], texts: Sequence[str], *, warmup: int = 10) -> Latency:
    """Wall and process CPU time of `search(text)` per query, after `warmup` untimed queries.

    On a machine shared with other work, wall time includes waiting for a core; CPU time does not (it does count
    every thread of this process, so parallel work is not hidden).
    """
    for text in list(texts)[:warmup]:
        search(text)
    wall, cpu = [], []
    for text in texts:
        c0, t0 = time.process_time(), time.perf_counter()
        search(text)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return latency_of(wall, cpu)


def collection_for(cache: LegCache, cfg: RunConfig, *, collapse_duplicates: bool | None = None) -> Collection:
    """The collection searching with `cfg`'s settings and lexical leg (same store and embedder, no LLM)."""
    base = cache.view(cfg.lexical_leg)
    settings = cfg.settings_for(base.settings).model_copy(update={"cache_backend": "off"})  # measure retrieval
    if collapse_duplicates is not None:
        settings = settings.model_copy(update={"collapse_duplicates": collapse_duplicates})
    return Collection(base.path, settings, base.store, embedder=base.embedder, llm=None)


def search_latency(cache: LegCache, cfg: RunConfig, texts: Sequence[str], *, k: int = SEARCH_K, warmup: int = 10
                   ) -> Latency:
    """Latency of `Collection.search(text, k=k)` under `cfg` (no reranker, no LLM)."""
    view = collection_for(cache, cfg)
    return time_search(lambda t: view.search(t, k=k), texts, warmup=warmup)


def agreement(cfg: RunConfig, cache: LegCache, queries: Mapping[str, str], *, k: int = SEARCH_K,
              collapse_duplicates: bool = False) -> float:
    """Share of queries whose documents from `Collection.search(k=k)` open the evaluated ranking, in order.

    Evaluation keeps every BEIR document, as BEIR does; with `collapse_duplicates` (the product default) the
    search also hides passages whose text repeats a better one, so agreement then measures how often that bites.
    """
    view = collection_for(cache, cfg, collapse_duplicates=collapse_duplicates)
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
    collapse_changes: float | None = None  # share of checked queries whose top-k collapse_duplicates changes
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.config.name, "kind": self.config.kind, "params": self.config.params(),
            "metrics": {m: round(v, 5) for m, v in self.metrics.items()},
            "recall_curve": {str(k): round(v, 5) for k, v in self.recall_curve.items()},
            "latency": self.latency.to_dict() if self.latency else None,
            "agreement_with_search": self.agreement, "top10_changed_by_collapse": self.collapse_changes,
            "note": self.note,
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
    latency_warmup: int = 10,
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
        cache.fetch(dataset.queries, legs=sorted({leg for c in configs for leg in c.legs}), progress=progress)
    out: list[ConfigResult] = []
    reference: dict[tuple[float, float], Bm25sReference] = {}
    for cfg in configs:
        if cfg.uses_collection:
            assert col is not None and cache is not None
            run = collection_run(cfg, cache, dataset.queries)
            m, curve = score_run(run, dataset, metrics)
            res = ConfigResult(cfg, m, curve)
            if latency:
                res.latency = search_latency(cache, cfg, texts, warmup=latency_warmup)
            if check_queries:
                sample = dict(list(dataset.queries.items())[:check_queries])
                res.agreement = agreement(cfg, cache, sample)
                res.collapse_changes = 1.0 - agreement(cfg, cache, sample, collapse_duplicates=True)
            if cfg.lexical == "inhouse":
                res.note = (f"BM25Index (k1={cfg.k1:g}, b={cfg.b:g}) swapped in as the lexical leg (built in "
                            f"{cache.build_seconds.get(cfg.lexical_leg, 0.0):.1f} s)")
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
                res.latency = time_search(partial(_search_one, ref), texts, warmup=latency_warmup)
        out.append(res)
        if progress is not None:
            progress(f"evaluated {cfg.name}", len(out), len(configs))
    return out
