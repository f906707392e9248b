"""Hybrid query latency: PostgresStore (pgvector HNSW + tsvector, RRF in SQL) vs EmbeddedStore, same ~10k chunks.

Not a test (never collected by pytest). Needs passages embedded once (the real model) and cached:

    python tests/store/postgres/bench_latency.py --cache /tmp/ragworks-pgbench [--queries 300] [--noise-tenant]

The cache holds `passages.json` ({"items": [[source, title, text], ...], "questions": [[q, gold source], ...]}),
`vectors.npy` (one row per item, embedded as "title\\ntext") and `queries.npy` (one row per question).
Prints a table and writes `<cache>/latency.json`. Queries are interleaved across configurations so machine load
affects each the same way; query embedding time is excluded (vectors are precomputed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psycopg
from tests.realservers import LocalPostgres

from ragworks.documents import Chunk, Document
from ragworks.retrieve.fusion import reciprocal_rank_fusion
from ragworks.store.base import DocumentWrite, WriteBatch
from ragworks.store.embedded import EmbeddedStore
from ragworks.store.postgres import PostgresStore

MODEL = "st:all-MiniLM-L6-v2"


def batches(items: list, vectors: np.ndarray, size: int = 500):
    for i in range(0, len(items), size):
        batch = WriteBatch()
        for (source, title, text), vec in zip(items[i:i + size], vectors[i:i + size], strict=True):
            doc = Document(source=source, text=text, title=title)
            chunk = Chunk(doc_id=doc.id, ordinal=0, text=text, start=0, end=len(text), context=title)
            batch.documents.append(DocumentWrite(doc, [chunk]))
            batch.vectors[chunk.text_hash] = vec
        yield batch


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default="/tmp/ragworks-pgbench")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument("--ef-search", type=int, nargs="+", default=[200])
    ap.add_argument("--ef-construction", type=int, default=128)
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--noise-tenant", action="store_true", help="also load the same rows for a second tenant")
    args = ap.parse_args()
    cache = Path(args.cache)
    data = json.loads((cache / "passages.json").read_text())
    items = [tuple(x) for x in data["items"]]
    vectors = np.load(cache / "vectors.npy")
    qvecs = np.load(cache / "queries.npy")
    questions = data["questions"]
    step = max(1, len(questions) // args.queries)
    picked = list(range(0, len(questions), step))[: args.queries]
    dim = vectors.shape[1]
    k, n = args.k, args.candidates
    load = os.getloadavg()

    server = LocalPostgres(settings={"shared_buffers": "256MB", "maintenance_work_mem": "256MB"})
    dsn = server.start()
    work = Path(tempfile.mkdtemp(prefix="ragworks-bench-emb-"))
    try:
        pg = PostgresStore(dsn, tenant="bench", collection="squad10k", model_name=MODEL, dimension=dim,
                           hnsw_m=args.m, hnsw_ef_construction=args.ef_construction, ef_search=args.ef_search[0])
        emb = EmbeddedStore(work / "squad10k", model_name=MODEL, dimension=dim)
        t0 = time.perf_counter()
        for b in batches(items, vectors):
            pg.write(b)
        pg_load = time.perf_counter() - t0
        noise = None
        if args.noise_tenant:
            noise = PostgresStore(dsn, tenant="noise", collection="squad10k", model_name=MODEL, dimension=dim)
            for b in batches(items, vectors):
                noise.write(b)
        t0 = time.perf_counter()
        for b in batches(items, vectors):
            emb.write(b)
        emb.flush()
        emb_load = time.perf_counter() - t0
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE ragworks.chunks")
            conn.execute("VACUUM ANALYZE ragworks.documents")
        print(f"loaded {len(items)} chunks: postgres {pg_load:.1f}s, embedded {emb_load:.1f}s; load avg {load}")

        def emb_hybrid(i: int) -> list:
            q, qv = questions[i][0], qvecs[i]
            fused = reciprocal_rank_fusion([emb.dense_search(qv, n), emb.lexical_search(q, n)])
            return emb.hits(fused[:k])

        def pg_legs(i: int) -> list:
            q, qv = questions[i][0], qvecs[i]
            fused = reciprocal_rank_fusion([pg.dense_search(qv, n), pg.lexical_search(q, n)])
            return pg.hits(fused[:k])

        def pg_sql(i: int) -> list:
            q, qv = questions[i][0], qvecs[i]
            return pg.hits(pg.hybrid_search(qv, q, k, candidates=n))

        configs: dict[str, Callable[[int], list]] = {
            "embedded: dense": lambda i: emb.dense_search(qvecs[i], n),
            "embedded: bm25 (FTS5)": lambda i: emb.lexical_search(questions[i][0], n),
            "embedded: hybrid (2 legs + RRF in Python + hits)": emb_hybrid,
            "postgres: dense (HNSW)": lambda i: pg.dense_search(qvecs[i], n),
            "postgres: lexical (tsvector)": lambda i: pg.lexical_search(questions[i][0], n),
            "postgres: hybrid (2 legs + RRF in Python + hits)": pg_legs,
            "postgres: hybrid (RRF in SQL + hits)": pg_sql,
        }
        for i in picked[:20]:  # warm caches and prepared statements
            for fn in configs.values():
                fn(i)
        times: dict[str, list[float]] = {name: [] for name in configs}
        results: dict[str, list] = {name: [] for name in configs}
        for i in picked:
            for name, fn in configs.items():
                t = time.perf_counter()
                out = fn(i)
                times[name].append((time.perf_counter() - t) * 1000)
                results[name].append(out)

        by_row_pg = dict(pg._query("SELECT c.id, d.source FROM {s}.chunks c JOIN {s}.documents d ON "
                                   "d.tenant = c.tenant AND d.collection = c.collection AND d.id = c.doc_id "
                                   "WHERE c.tenant = %(tenant)s AND c.collection = %(collection)s"))
        by_row_emb = dict(emb._query("SELECT c.id, d.source FROM chunks c JOIN documents d ON d.id = c.doc_id"))

        recall = []
        for i in picked:
            exact = {by_row_emb[c] for c, _ in emb.dense_search(qvecs[i], k)}
            approx = {by_row_pg[c] for c, _ in pg.dense_search(qvecs[i], k)}
            recall.append(len(exact & approx) / max(1, len(exact)))

        def gold_at_k(name: str) -> float:
            rows = by_row_emb if name.startswith("embedded") else by_row_pg
            hits = 0
            for i, out in zip(picked, results[name], strict=True):
                top = out[:k]
                srcs = {h.source for h in top} if top and hasattr(top[0], "source") else {rows[c] for c, _ in top}
                hits += questions[i][1] in srcs
            return hits / len(picked)

        report = {
            "chunks": len(items), "queries": len(picked), "k": k, "candidates": n, "load_avg_before": load,
            "noise_tenant": bool(noise), "pg_load_s": round(pg_load, 1), "emb_load_s": round(emb_load, 1),
            "hnsw_recall_at_k_vs_exact": round(float(np.mean(recall)), 4),
            "latency_ms": {name: {"p50": round(statistics.median(ts), 2), "p95": round(pct(ts, 95), 2),
                                  "mean": round(statistics.fmean(ts), 2)} for name, ts in times.items()},
            "gold_passage_at_k": {name: round(gold_at_k(name), 3) for name in configs},
            "load_avg_after": os.getloadavg(),
        }
        print(f"\n{'configuration':52} {'p50 ms':>8} {'p95 ms':>8} {'gold@' + str(k):>8}")
        for name, lat in report["latency_ms"].items():
            print(f"{name:52} {lat['p50']:8.2f} {lat['p95']:8.2f} {report['gold_passage_at_k'][name]:8.3f}")
        print(f"HNSW dense recall@{k} vs exact: {report['hnsw_recall_at_k_vs_exact']}; load avg after "
              f"{report['load_avg_after']}")
        sweep = {}
        for ef in args.ef_search[1:]:  # the dense leg's recall/latency trade-off
            pg.ef_search = ef
            lat, rec, gold = [], [], 0
            for i in picked:
                t = time.perf_counter()
                got = pg.dense_search(qvecs[i], n)
                lat.append((time.perf_counter() - t) * 1000)
                exact = {by_row_emb[c] for c, _ in emb.dense_search(qvecs[i], k)}
                top = [by_row_pg[c] for c, _ in got[:k]]
                rec.append(len(exact & set(top)) / max(1, len(exact)))
                gold += questions[i][1] in top
            sweep[ef] = {"p50": round(statistics.median(lat), 2), "p95": round(pct(lat, 95), 2),
                         "recall_at_k": round(float(np.mean(rec)), 4), "gold_at_k": round(gold / len(picked), 3)}
            print(f"ef_search {ef}: dense p50 {sweep[ef]['p50']} ms p95 {sweep[ef]['p95']} ms, recall@{k} "
                  f"{sweep[ef]['recall_at_k']}, gold@{k} {sweep[ef]['gold_at_k']}")
        report["ef_search_sweep"] = sweep
        (cache / ("latency-noise.json" if noise else "latency.json")).write_text(json.dumps(report, indent=2))
        pg.close()
        if noise:
            noise.close()
        emb.close()
    finally:
        server.stop()
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
