"""What document permissions and erasure cost: query latency with and without `Filter.readers`, whether a
restricted caller still gets k results, and the time of a delete with and without erasure.

    python bench/acl.py [--docs 2000] [--queries 100] [--deletes 10] [--data ../shared/data/scifact]

SciFact abstracts (the first `--docs` of the BEIR corpus), embedded backend. Each document is given the readers
of one of 8 groups at random (20 % public, seeded); the caller reads as a user in 2 of those groups, so about a
third of the collection is readable to it. Prints a table and writes bench/results/acl.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.store.base import Filter

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
CALLER = ("group:g1", "group:g5", "user:ann")


def corpus(data: Path, n: int, rng: random.Random) -> list[dict[str, Any]]:
    docs = []
    with (data / "corpus.jsonl").open() as f:
        for line in f:
            rec = json.loads(line)
            readers = [] if rng.random() < 0.2 else [f"group:g{rng.randrange(8)}"]
            docs.append({"_id": rec["_id"], "title": rec.get("title", ""), "text": rec["text"], "readers": readers})
            if len(docs) == n:
                break
    return docs


def queries(data: Path, n: int) -> list[str]:
    with (data / "queries.jsonl").open() as f:
        return [json.loads(line)["text"] for line in f][:n]


def latencies(col: Collection, qs: list[str], flt: Filter | None, k: int) -> tuple[list[float], int]:
    """Per-query seconds (after a warm-up query) and how many queries got fewer than k hits."""
    col.search(qs[0], k=k, filters=flt)
    times, short = [], 0
    for q in qs:
        started = time.perf_counter()
        hits = col.search(q, k=k, filters=flt)
        times.append(time.perf_counter() - started)
        short += len(hits) < k
    return times, short


def leg_latencies(col: Collection, qs: list[str], flt: Filter | None, n: int) -> list[float]:
    """Per-query seconds of the two retrieval legs alone (dense + BM25, `n` candidates each), queries embedded
    beforehand: what the readers filter itself costs, without the query embedding that dominates a search."""
    store, vecs = col.store, col.embedder.embed_queries(qs)
    store.dense_search(vecs[0], n, flt)
    store.lexical_search(qs[0], n, flt)
    times = []
    for q, v in zip(qs, vecs, strict=True):
        started = time.perf_counter()
        store.dense_search(v, n, flt)
        store.lexical_search(q, n, flt)
        times.append(time.perf_counter() - started)
    return times


def delete_times(col: Collection, sources: list[str]) -> list[float]:
    out = []
    for src in sources:
        started = time.perf_counter()
        col.delete(src)
        out.append(time.perf_counter() - started)
    return out


def ms(values: list[float], q: float) -> float:
    return round(statistics.quantiles(values, n=100)[int(q) - 1] * 1000, 2) if len(values) > 1 else values[0] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "scifact")
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--deletes", type=int, default=10)
    ap.add_argument("-k", type=int, default=10)
    args = ap.parse_args()
    rng = random.Random(14)
    docs = corpus(args.data, args.docs, rng)
    qs = queries(args.data, args.queries)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        jsonl = Path(tmp) / "scifact-acl.jsonl"
        jsonl.write_text("\n".join(json.dumps(d) for d in docs))
        settings = Settings(data_dir=Path(tmp) / "data", collection="acl", llm="extractive")
        with Collection.open(settings=settings, llm=None) as col:
            started = time.perf_counter()
            report = col.ingest(jsonl)
            ingest_s = time.perf_counter() - started
            readable = len(col.documents(limit=100_000, readers=CALLER))
            for label, flt in (("unrestricted", None), ("readers filter", Filter(readers=CALLER))):
                times, short = latencies(col, qs, flt, args.k)
                rows.append({"case": f"hybrid search k={args.k}, {label}", "p50_ms": ms(times, 50),
                             "p95_ms": ms(times, 95), "queries_under_k": short})
            for label, flt in (("unrestricted", None), ("readers filter", Filter(readers=CALLER))):
                times = leg_latencies(col, qs, flt, 100)
                rows.append({"case": f"retrieval legs only (dense + BM25, 100 each), {label}",
                             "p50_ms": ms(times, 50), "p95_ms": ms(times, 95), "queries_under_k": None})
            sources = [d.source for d in col.documents(limit=2 * args.deletes)]
            for erase, part in ((False, sources[: args.deletes]), (True, sources[args.deletes:])):
                col.settings = settings.model_copy(update={"erase_on_delete": erase})
                times = delete_times(col, part)
                rows.append({"case": f"delete one document, erase_on_delete={erase}", "p50_ms": ms(times, 50),
                             "p95_ms": ms(times, 95), "queries_under_k": None})
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "docs": len(docs),
              "chunks": report.chunks_written, "ingest_s": round(ingest_s, 1), "readable_docs": readable,
              "caller": list(CALLER), "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "acl.json").write_text(json.dumps(result, indent=2))
    lines = [f"SciFact first {len(docs)} docs ({report.chunks_written} chunks), caller {', '.join(CALLER)} may "
             f"read {readable}; {result['machine']}", "", "| case | p50 ms | p95 ms | queries under k |",
             "|---|---|---|---|"]
    for r in rows:
        under = "" if r["queries_under_k"] is None else r["queries_under_k"]
        lines.append(f"| {r['case']} | {r['p50_ms']} | {r['p95_ms']} | {under} |")
    (RESULTS / "acl.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
