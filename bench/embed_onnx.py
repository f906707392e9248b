"""ONNX Runtime embedder vs torch on SciFact: vector agreement, nDCG@10 loss, passage and query speed.

    python bench/embed_onnx.py [--collection /tmp/ragworks-eval/beir-scifact] [--speed-passages 512]

Reads the chunk texts and the torch vectors of an already ingested SciFact collection (`bench/retrieval.py`
builds it; nothing is re-ingested), embeds every chunk with the ONNX backend once (vectors cached next to the
collection as onnx-<variant>.npy), and ranks the test queries by exact inner product (what FAISS IndexFlatIP
does) with torch/ONNX passages × torch/ONNX queries, dense alone and fused with the FTS5 BM25 leg as the
default hybrid does (weighted, dense weight 0.4, 400 candidates). Writes bench/results/embed_onnx.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
from tqdm import tqdm

from ragworks.embed.base import Embedder
from ragworks.embed.local import SentenceTransformerEmbedder
from ragworks.embed.onnx import OnnxEmbedder
from ragworks.evaluate.beir import load_beir
from ragworks.evaluate.metrics import evaluate
from ragworks.evaluate.report import write_json
from ragworks.evaluate.retrieval import as_run_scores, best_chunk_ranking
from ragworks.retrieve.fusion import weighted_fusion
from ragworks.store.embedded import DB_NAME, EmbeddedStore

REPO = Path(__file__).resolve().parents[1]


def read_chunks(path: Path) -> tuple[np.ndarray, list[str], np.ndarray, dict[int, str]]:
    """(chunk ids, embedded texts, torch vectors, chunk id → source) of the collection at `path`."""
    db = sqlite3.connect(f"file:{path / DB_NAME}?mode=ro", uri=True)
    rows = db.execute(
        "SELECT c.id, b.body, e.vector, d.source FROM chunks c JOIN chunk_bodies b ON b.id = c.id "
        "JOIN documents d ON d.id = c.doc_id JOIN embeddings e ON e.text_hash = c.text_hash "
        "AND e.model = (SELECT id FROM models WHERE active = 1 ORDER BY id LIMIT 1) ORDER BY c.id"
    ).fetchall()
    db.close()
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    vectors = np.stack([np.frombuffer(r[2], dtype=np.float32) for r in rows])
    return ids, [r[1] for r in rows], vectors, {int(r[0]): r[3] for r in rows}


def embed_all(embedder: Embedder, texts: list[str], batch: int = 256) -> np.ndarray:
    out = []
    for start in tqdm(range(0, len(texts), batch), desc="ONNX passages", unit="batch"):
        out.append(embedder.embed_documents(texts[start : start + batch]))
    return np.concatenate(out)


def ranked(doc_vecs: np.ndarray, ids: np.ndarray, q: np.ndarray, depth: int) -> list[tuple[int, float]]:
    scores = doc_vecs @ q
    top = np.argpartition(-scores, depth)[:depth]
    top = top[np.argsort(-scores[top], kind="stable")]
    return [(int(ids[i]), float(scores[i])) for i in top]


def query_latency(embedder: Embedder, texts: list[str]) -> dict[str, float]:
    for t in texts[:10]:
        embedder.embed_queries([t])
    ms = []
    for t in texts:
        t0 = time.perf_counter()
        embedder.embed_queries([t])
        ms.append((time.perf_counter() - t0) * 1000)
    ms.sort()
    return {"p50_ms": round(statistics.median(ms), 2), "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "scifact")
    ap.add_argument("--collection", type=Path, default=Path("/tmp/ragworks-eval/beir-scifact"))
    ap.add_argument("--speed-passages", type=int, default=512, help="passages timed for embedding speed")
    ap.add_argument("--threads", type=int, default=2, help="threads for passage embedding (queries: 1)")
    ap.add_argument("--embed-corpus", nargs="*", default=["int8"],
                    help="ONNX variants that embed the whole corpus (the others embed only the queries)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "embed_onnx.json")
    args = ap.parse_args()

    import torch

    dataset = load_beir(args.data, split="test", name="scifact")
    ids, texts, torch_docs, sources = read_chunks(args.collection)
    row_doc = {cid: dataset.doc_id_of(src) for cid, src in sources.items()}
    store = EmbeddedStore(args.collection, create=False)
    qids = list(dataset.queries)
    qtexts = [dataset.queries[q] for q in qids]
    lexical = {q: store.lexical_search(dataset.queries[q], 400) for q in qids}

    torch.set_num_threads(args.threads)
    st = SentenceTransformerEmbedder("all-MiniLM-L6-v2")
    variants: dict[str, Any] = {"int8": OnnxEmbedder(quantize=True, threads=args.threads),
                                "fp32": OnnxEmbedder(quantize=False, threads=args.threads)}
    report: dict[str, Any] = {"generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "load_before": os.getloadavg(),
                              "chunks": len(ids), "queries": len(qids), "variants": {}}
    torch_q = st.embed_queries(qtexts)
    doc_sets = {"torch": torch_docs}
    query_sets = {"torch": torch_q}
    for name, emb in variants.items():
        cache = args.collection.parent / f"onnx-{name}-{args.collection.name}.npy"
        if cache.exists():
            vecs = np.load(cache)
        elif name in args.embed_corpus:
            vecs = embed_all(emb, texts)
            np.save(cache, vecs)
        else:  # agreement measured on a sample only
            vecs = emb.embed_documents(texts[:256])
        if len(vecs) == len(texts):
            doc_sets[name] = vecs
        query_sets[name] = emb.embed_queries(qtexts)
        dcos = (vecs * torch_docs[: len(vecs)]).sum(1)
        qcos = (query_sets[name] * torch_q).sum(1)
        report["variants"][name] = {
            "file": str(emb.onnx_path), "file_mb": round(emb.onnx_path.stat().st_size / 2**20, 1),
            "passage_cosine_vs_torch": {"min": float(dcos.min()), "mean": float(dcos.mean()),
                                        "p01": float(np.percentile(dcos, 1))},
            "query_cosine_vs_torch": {"min": float(qcos.min()), "mean": float(qcos.mean()),
                                      "p01": float(np.percentile(qcos, 1))},
        }

    results = []
    for dname in ("torch", "int8", "fp32"):
        for qname in ("torch", "int8", "fp32"):
            if dname not in doc_sets or (dname != "torch" and qname != dname):
                continue
            dense_run, hybrid_run = {}, {}
            for i, q in enumerate(qids):
                dense = ranked(doc_sets[dname], ids, query_sets[qname][i], 1000)
                dense_run[q] = as_run_scores(best_chunk_ranking(dense, row_doc))
                fused = weighted_fusion([dense[:400], lexical[q][:400]], [0.4, 0.6])
                hybrid_run[q] = as_run_scores(best_chunk_ranking(fused, row_doc))
            d = evaluate(dense_run, dataset.qrels, ["ndcg@10", "recall@100"])
            h = evaluate(hybrid_run, dataset.qrels, ["ndcg@10", "recall@100"])
            results.append({"passages": dname, "queries": qname, "dense_ndcg@10": round(d["ndcg@10"], 4),
                            "dense_recall@100": round(d["recall@100"], 4), "hybrid_ndcg@10": round(h["ndcg@10"], 4)})
            print(results[-1], flush=True)
    report["ndcg"] = results

    speed_texts = texts[: args.speed_passages]
    speed: dict[str, Any] = {}
    for name, emb in (("torch", st), *variants.items()):
        emb.embed_documents(speed_texts[:32])
        t0 = time.perf_counter()
        emb.embed_documents(speed_texts)
        speed[name] = {"passages_per_s": round(len(speed_texts) / (time.perf_counter() - t0), 1)}
    torch.set_num_threads(1)
    for name, emb in (("torch", st), *variants.items()):
        speed[name]["query"] = query_latency(emb, qtexts)
    report["speed"] = speed
    report["load_after"] = os.getloadavg()
    write_json(report, args.out)
    lines = ["# ONNX Runtime embedder vs torch (SciFact test, `bench/embed_onnx.py`)", "",
             f"{len(ids)} chunks, {len(qids)} queries; load average before {report['load_before']}, "
             f"after {report['load_after']} (2 shared cores).", "",
             "| passages | queries | dense nDCG@10 | dense R@100 | hybrid nDCG@10 |", "|---|---|---|---|---|"]
    lines += [f"| {r['passages']} | {r['queries']} | {r['dense_ndcg@10']} | {r['dense_recall@100']} | "
              f"{r['hybrid_ndcg@10']} |" for r in results]
    lines += ["", "| backend | passages/s (2 threads) | query p50 ms | query p95 ms | cosine vs torch (passages "
              "min/mean; queries min/mean) |", "|---|---|---|---|---|"]
    for name, s in speed.items():
        v = report["variants"].get(name)
        cos = (f"{v['passage_cosine_vs_torch']['min']:.4f}/{v['passage_cosine_vs_torch']['mean']:.4f}; "
               f"{v['query_cosine_vs_torch']['min']:.4f}/{v['query_cosine_vs_torch']['mean']:.4f}") if v else "1"
        lines.append(f"| {name} | {s['passages_per_s']} | {s['query']['p50_ms']} | {s['query']['p95_ms']} | {cos} |")
    md = args.out.with_suffix(".md")
    md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
