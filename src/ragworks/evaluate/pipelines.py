"""Search-pipeline configurations (ONNX queries, rerankers, hygiene, query transforms) evaluated end to end.

Unlike the fusion configurations (`evaluate.retrieval`, legs cached once), each of these runs the real
`Collection.search(query, k)` per query, timing it, because its stages (an LLM, a reranker) act per query. Slow
stages run on a stated subset of the queries: every row carries its query count, and a baseline (the default
hybrid through the same code path) is scored on each subset size used, so rows compare like with like.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ragworks.collection import Collection
from ragworks.embed.base import Embedder
from ragworks.evaluate.beir import BeirDataset
from ragworks.evaluate.metrics import evaluate
from ragworks.evaluate.retrieval import Latency, as_run_scores, latency_of
from ragworks.generate.base import LLM
from ragworks.retrieve.base import Reranker

Progress = Callable[[str, int, int], None]
PIPELINE_METRICS = ("ndcg@10", "recall@10", "mrr@10")


@dataclass
class PipelineConfig:
    """A named set of Settings overrides, with the models it needs and how many queries it runs on."""

    name: str
    update: dict[str, Any] = field(default_factory=dict)
    queries: int | None = None  # None: all
    embedder: Embedder | None = None  # None: the collection's
    reranker: Reranker | None = None  # prebuilt (shared across datasets); None: built from the settings
    llm: LLM | None = None
    search_k: int = 30  # chunks asked for; documents are ranked by their best chunk, top 10 scored
    warmup: int = 3  # untimed queries first (LLM rows: 1, they are slow enough)
    note: str = ""


@dataclass
class PipelineResult:
    config: PipelineConfig
    queries: int
    metrics: dict[str, float]
    latency: Latency
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.config.name, "settings": {k: v for k, v in self.config.update.items()},
                "queries": self.queries, "metrics": {m: round(v, 5) for m, v in self.metrics.items()},
                "latency": self.latency.to_dict(), "note": self.config.note, **self.extra}


def run_pipeline(col: Collection, dataset: BeirDataset, cfg: PipelineConfig, *, progress: Progress | None = None
                 ) -> PipelineResult:
    """Search every (or the first `cfg.queries`) query through `Collection.search` with `cfg`'s settings."""
    subset = dataset.limited(cfg.queries)
    settings = col.settings.model_copy(update={**cfg.update, "cache_backend": "off"})  # measured, not replayed
    view = Collection(col.path, settings, col.store, embedder=cfg.embedder or col.embedder, llm=cfg.llm,
                      reranker=cfg.reranker)
    items = list(subset.queries.items())
    for _, text in items[: cfg.warmup]:
        view.search(text, k=cfg.search_k)
    run: dict[str, dict[str, float]] = {}
    wall, cpu = [], []
    for i, (qid, text) in enumerate(items, 1):
        c0, t0 = time.process_time(), time.perf_counter()
        hits = view.search(text, k=cfg.search_k)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        docs = list(dict.fromkeys(subset.doc_id_of(h.source) for h in hits))
        run[qid] = as_run_scores(docs)
        if progress is not None and (i % 25 == 0 or i == len(items) or cfg.llm is not None):
            progress(cfg.name, i, len(items))
    metrics = evaluate(run, subset.qrels, list(PIPELINE_METRICS))
    extra: dict[str, Any] = {}
    if view.reranker is not None:
        extra["reranker"] = view.reranker.name
    return PipelineResult(cfg, len(items), metrics, latency_of(wall, cpu), extra)


def evaluate_pipelines(col: Collection, dataset: BeirDataset, configs: Sequence[PipelineConfig], *,
                       progress: Progress | None = None) -> list[PipelineResult]:
    """Each configuration, preceded by the default hybrid baseline on every distinct subset size used."""
    sizes = sorted({c.queries for c in configs}, key=lambda n: (n is None, n or 0))
    baselines = [PipelineConfig(f"baseline hybrid (default){'' if n is None else f', first {n} queries'}",
                                queries=n, note="the default settings through the same code path")
                 for n in sizes]
    return [run_pipeline(col, dataset, c, progress=progress) for c in [*baselines, *configs]]
