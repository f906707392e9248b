"""Ingest the sample corpus into a fresh collection and time hybrid searches (result cache off); print one JSON line.

A before/after check of a refactor: run it under two source trees in turn, e.g.

    farm-bench -n 4 --vs "sh -c 'PYTHONPATH=OLD/src exec .venv/bin/python bench/ab_ingest_search.py >>old.log'" \\
        -- sh -c 'PYTHONPATH=src exec .venv/bin/python bench/ab_ingest_search.py >>new.log'
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import ragworks
from ragworks.collection import Collection
from ragworks.config import Settings

QUESTIONS = ["What is the Fresnel lens?", "How does a sun valve work?", "Who wrote the report?",
             "Why did the keepers vanish on the Flannan Isles?"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=Path(__file__).resolve().parent.parent / "examples/sample-corpus")
    ap.add_argument("--searches", type=int, default=40)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        col = Collection.open("ab", settings=Settings(data_dir=Path(d), llm="extractive", cache_backend="off"))
        t = time.perf_counter()
        report = col.ingest(args.corpus)
        seconds = time.perf_counter() - t
        col.search(QUESTIONS[0], k=8)  # warm
        lat = []
        for i in range(args.searches):
            t0 = time.perf_counter()
            col.search(QUESTIONS[i % len(QUESTIONS)], k=8)
            lat.append((time.perf_counter() - t0) * 1000)
        print(json.dumps({"src": ragworks.__file__, "chunks": report.chunks_written, "ingest_s": round(seconds, 2),
                          "chunks_per_s": round(report.chunks_written / seconds, 1),
                          "search_p50_ms": round(statistics.median(lat), 2)}))


if __name__ == "__main__":
    main()
