"""Result cache latency: a search served from the cache vs the search itself, in process (memory LRU) and through
a real redis-server (started here when `redis-server` is installed), on the sample corpus.

    python bench/cache.py [--queries N] [--repeats R] [--out bench/results/cache.json]

For each backend: every query is searched once (a miss: the full hybrid search, then stored) and then R more times
(hits); latency is `Collection.search(query, k=8)` wall time. Also the cost a miss pays for the cache (its lookup
and its write) against the same search with the cache off. Prints a table, writes JSON; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from ragworks.cache import lookups
from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.embed import make_embedder

REPO = Path(__file__).resolve().parents[1]
QUERIES = [
    "Who designed the Fresnel lens?", "What happened at the Flannan Isles?", "How does a sun valve work?",
    "When was the Bell Rock lighthouse built?", "Who was Grace Darling?", "How do fog signals work?",
    "How does GPS find a position?", "What is a marine chronometer for?", "How is a sextant used?",
    "Why were the Eddystone lighthouses rebuilt?", "Where is Cape Hatteras lighthouse?", "What causes tides?",
    "How far can a lighthouse beam be seen?", "Who kept lighthouses before automation?",
    "How did sailors find longitude?", "What fuel did early lighthouses burn?",
]


def pct(ms: list[float], q: float) -> float:
    s = sorted(ms)
    return s[min(len(s) - 1, max(0, round(q * len(s)) - 1))]


def measure(col: Collection, queries: list[str], repeats: int) -> dict[str, Any]:
    miss, hit = [], []
    before = lookups()
    for q in queries:
        t0 = time.perf_counter()
        col.search(q)
        miss.append((time.perf_counter() - t0) * 1000)
    for _ in range(repeats):
        for q in queries:
            t0 = time.perf_counter()
            col.search(q)
            hit.append((time.perf_counter() - t0) * 1000)
    after = lookups()
    return {"miss_p50_ms": round(statistics.median(miss), 3), "miss_p95_ms": round(pct(miss, 0.95), 3),
            "hit_p50_ms": round(statistics.median(hit), 3), "hit_p95_ms": round(pct(hit, 0.95), 3),
            "hits": after["hit"] - before["hit"], "misses": after["miss"] - before["miss"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=len(QUERIES))
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "cache.json")
    args = ap.parse_args()
    queries = QUERIES[: args.queries]
    work = Path(tempfile.mkdtemp(prefix="ragworks-cache-bench-"))
    base = Settings(data_dir=work, llm="extractive", embed_query_threads=1)
    embedder = make_embedder(base)
    with Collection.open("sample", settings=base.model_copy(update={"cache_backend": "off"}), embedder=embedder,
                         llm=None) as col:
        col.ingest(REPO / "examples" / "sample-corpus")
        for q in queries[:3]:
            col.search(q)  # warm up: model, indexes
        t_off = []
        for q in queries:
            t0 = time.perf_counter()
            col.search(q)
            t_off.append((time.perf_counter() - t0) * 1000)
    rows: dict[str, Any] = {"cache off": {"search_p50_ms": round(statistics.median(t_off), 3)}}
    backends: list[tuple[str, dict[str, Any]]] = [("memory", {"cache_backend": "memory"})]
    redis_ctx = None
    try:
        sys.path.insert(0, str(REPO))
        from tests.realservers import redis_available, redis_server

        if redis_available():
            redis_ctx = redis_server(work / "redis")
            url = redis_ctx.__enter__()
            backends.append(("redis", {"cache_backend": "redis", "cache_redis_url": url}))
        for name, update in backends:
            with Collection.open("sample", settings=base.model_copy(update=update), embedder=embedder,
                                 llm=None) as col:
                rows[name] = measure(col, queries, args.repeats)
    finally:
        if redis_ctx is not None:
            redis_ctx.__exit__(None, None, None)
    report = {"corpus": "examples/sample-corpus", "queries": len(queries), "repeats": args.repeats,
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared)",
              "load_average": [round(x, 2) for x in os.getloadavg()], "command": "python bench/cache.py",
              "results": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"search with the cache off: p50 {rows['cache off']['search_p50_ms']:.2f} ms")
    print("| backend | miss p50 ms | miss p95 ms | hit p50 ms | hit p95 ms | hits | misses |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        if "hit_p50_ms" in r:
            print(f"| {name} | {r['miss_p50_ms']:.2f} | {r['miss_p95_ms']:.2f} | {r['hit_p50_ms']:.3f} | "
                  f"{r['hit_p95_ms']:.3f} | {r['hits']} | {r['misses']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
