"""Hierarchical retrieval (`retrieval_unit`): chunk vs small-to-big vs document-first, on retrieval and answers.

    python bench/hierarchical.py [--data ../shared/data] [--questions 60] [--out bench/results/hierarchical.json]

Retrieval (SciFact test, NFCorpus test on its processed variant — relative figures only): one hybrid first stage
per query (the shipped settings, 100 chunk hits), then each unit arranges those hits:
  - doc nDCG@10 / recall@100: the document ranking (a document at its first hit; document-first: its score);
  - docs@6: recall of the relevant documents among the documents of the first 6 *sources* — what the answerer
    is handed (`llm_max_sources` = 6); small-to-big sources are windows, so 6 of them may cover more documents;
  - chars@6: characters in those 6 sources (the context the answerer must read);
  - +ms: p50 time the unit adds to a search (chunk_window / document_text reads, scoring).
Answers (SQuAD v1.1 dev-split articles, every paragraph a document, 64-token chunks so a paragraph spans 2-4):
`Collection.ask` with the extractive answerer per unit, scored by `ragworks eval qa`'s own code (`run_qa` →
`ask_all` + `score`); a 256-token-chunk collection (a paragraph per chunk) as the reference.
Collections are cached under --data-dir (ingested once). Prints tables, writes JSON and Markdown; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from ragworks.collection import Collection
from ragworks.config import Settings
from ragworks.documents import SearchHit
from ragworks.embed import make_embedder
from ragworks.embed.base import Embedder
from ragworks.evaluate import qa
from ragworks.evaluate.beir import load_beir
from ragworks.evaluate.metrics import ndcg, recall
from ragworks.evaluate.report import write_json
from ragworks.evaluate.retrieval import open_for_dataset, set_threads
from ragworks.retrieve.hierarchical import document_first, small_to_big
from ragworks.retrieve.pipeline import SearchPipeline
from ragworks.store.base import ChunkWindows

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RAGWORKS_SHARED_DATA") or next(
    (p / "shared" / "data" for p in (REPO.parent, REPO.parent.parent) if (p / "shared" / "data").is_dir()),
    REPO.parent / "shared" / "data"))
POOL = 100
SOURCES = 6  # llm_max_sources

Arrange = Callable[[list[SearchHit], ChunkWindows], list[SearchHit]]
UNITS: dict[str, Arrange] = {
    "chunk": lambda hits, store: hits[:SOURCES],
    "small-to-big w=1": lambda hits, store: small_to_big(hits, store, window=1, k=SOURCES),
    "small-to-big w=2": lambda hits, store: small_to_big(hits, store, window=2, k=SOURCES),
    "document-first sum": lambda hits, store: document_first(hits, k=SOURCES, documents=4, how="sum"),
    "document-first max": lambda hits, store: document_first(hits, k=SOURCES, documents=4, how="max"),
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def doc_ranking(unit: str, hits: Sequence[SearchHit], doc_of: Callable[[str], str]) -> list[str]:
    """The document ranking a unit produces from the pool (small-to-big keeps the chunk ranking's documents)."""
    if unit.startswith("document-first"):
        ordered = document_first(hits, k=len(hits), documents=len(hits), how=unit.split()[-1])  # type: ignore[arg-type]
    else:
        ordered = list(hits)
    return list(dict.fromkeys(doc_of(h.source) for h in ordered))


def retrieval(name: str, root: Path, corpus: Path | None, settings: Settings, embedder: Embedder,
              limit: int | None) -> dict[str, Any]:
    ds = load_beir(root, split="test", corpus=corpus).limited(limit)
    col, _ = open_for_dataset(ds, settings, collection=f"beir-{root.name}-c256", embedder=embedder)
    store = col.store
    assert isinstance(store, ChunkWindows)
    pipeline = SearchPipeline.from_settings(settings, col.retriever(), store=store, embedder=col.embedder,
                                            reranker=None, llm=lambda: None)
    rows: dict[str, dict[str, list[float]]] = {u: {"ndcg": [], "recall": [], "docs6": [], "chars": [], "ms": []}
                                               for u in UNITS}
    search_ms: list[float] = []
    for i, (qid, text) in enumerate(ds.queries.items(), 1):
        judged = ds.qrels.get(qid, {})
        t0 = time.perf_counter()
        hits = pipeline.search(text, k=POOL)
        search_ms.append((time.perf_counter() - t0) * 1000)
        for unit, arrange in UNITS.items():
            t1 = time.perf_counter()
            sources = arrange(hits, store)
            ms = (time.perf_counter() - t1) * 1000
            ranking = doc_ranking(unit, hits, ds.doc_id_of)
            r = rows[unit]
            r["ndcg"].append(ndcg(ranking, judged, 10))
            r["recall"].append(recall(ranking, judged, 100))
            r["docs6"].append(recall(list(dict.fromkeys(ds.doc_id_of(h.source) for h in sources)), judged, 100))
            r["chars"].append(sum(len(h.chunk.text) for h in sources))
            r["ms"].append(ms)
        if i % 50 == 0:
            log(f"{name}: {i}/{len(ds.queries)} queries")
    return {"dataset": name, "queries": len(ds.queries), "chunks": col.stats()["chunks"],
            "search_p50_ms": round(statistics.median(search_ms), 2),
            "units": {u: {"ndcg@10": _mean(r["ndcg"]), "recall@100": _mean(r["recall"]), "docs@6": _mean(r["docs6"]),
                          "chars@6": round(_mean(r["chars"]), 1), "added_p50_ms": round(statistics.median(r["ms"]), 3)}
                      for u, r in rows.items()}}


def _mean(xs: Sequence[float]) -> float:
    return round(float(sum(xs) / len(xs)), 4) if xs else 0.0


ANSWER_CONFIGS: list[tuple[str, int, dict[str, Any]]] = [
    ("chunk (256-token chunks)", 256, {}),
    ("chunk", 64, {}),
    ("small-to-big w=1", 64, {"retrieval_unit": "small-to-big", "retrieval_window": 1}),
    ("small-to-big w=2", 64, {"retrieval_unit": "small-to-big", "retrieval_window": 2}),
    ("document-first", 64, {"retrieval_unit": "document-first"}),
]


def answers(path: Path, data_dir: Path, embedder: Embedder, questions: int, seed: int) -> dict[str, Any]:
    dataset = qa.load_squad(path, articles="dev")
    items, docs, _ = qa.select(dataset, sample=questions, seed=seed)
    items = [it for it in items if not it.unanswerable]
    out: dict[str, Any] = {"questions": len(items), "articles": len(dataset.documents), "paragraphs": len(docs),
                           "configs": {}}
    for label, chunk_tokens, overrides in ANSWER_CONFIGS:
        settings = Settings(data_dir=data_dir, llm="extractive", chunk_tokens=chunk_tokens,
                            chunk_overlap=0, **overrides)
        col = Collection.open(f"squad-dev-c{chunk_tokens}", settings=settings, embedder=embedder, llm=None)
        if col.add_documents(docs).chunks_written:
            log(f"squad c{chunk_tokens}: ingested")
        records = qa.ask_all(col, items)
        scored = qa.score(records)
        scored["chars_per_source"] = round(_mean([
            sum(len(h.chunk.text) for h in col.search(it.question, k=5)) / 5 for it in items[:20]]), 1)
        out["configs"][label] = scored
        log(f"answers {label}: F1 {scored['f1']:.3f} hit@k {scored['hit@k']:.3f}")
        col.close()
    return out


def render(report: dict[str, Any]) -> str:
    lines = ["## Retrieval (hybrid first stage, 100 chunk hits, arranged per unit)", "",
             "| dataset | unit | doc nDCG@10 | doc recall@100 | docs@6 sources | chars@6 | +p50 ms |",
             "|---|---|---|---|---|---|---|"]
    for d in report["retrieval"]:
        for u, m in d["units"].items():
            lines.append(f"| {d['dataset']} | {u} | {m['ndcg@10']:.4f} | {m['recall@100']:.4f} | "
                         f"{m['docs@6']:.4f} | {m['chars@6']:.0f} | {m['added_p50_ms']:.2f} |")
    a = report.get("answers")
    if a:
        lines += ["", f"## Answers: SQuAD v1.1 dev-split articles ({a['articles']} articles, {a['paragraphs']} "
                  f"paragraphs), {a['questions']} questions, extractive answerer", "",
                  "| unit | chunk tokens | EM | F1 | contains gold | gold passage given | citation precision | "
                  "chars/source | s/answer |", "|---|---|---|---|---|---|---|---|---|"]
        for (label, tokens, _), m in zip(ANSWER_CONFIGS, a["configs"].values(), strict=True):
            lines.append(f"| {label} | {tokens} | {m['exact_match']:.3f} | {m['f1']:.3f} | {m['contains_gold']:.3f} | "
                         f"{m['hit@k']:.3f} | {(m['citation_precision'] or 0):.3f} | {m['chars_per_source']:.0f} | "
                         f"{m['s_per_answer']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--data-dir", type=Path, default=Path.home() / ".cache" / "ragworks" / "bench-hier")
    ap.add_argument("--limit-queries", type=int, default=None)
    ap.add_argument("--questions", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-answers", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "hierarchical.json")
    args = ap.parse_args()
    set_threads(args.threads)
    settings = Settings(data_dir=args.data_dir, llm="extractive")
    embedder = make_embedder(settings)
    started = time.time()
    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared), Python {platform.python_version()}",
        "command": "python " + " ".join(sys.argv), "embed_model": settings.embed_model, "retrieval": []}
    report["retrieval"].append(retrieval("SciFact", args.data / "scifact", None, settings, embedder,
                                         args.limit_queries))
    report["retrieval"].append(retrieval(
        "NFCorpus (processed variant)", args.data / "nfcorpus",
        args.data / "nfcorpus" / "variant-original-processed" / "corpus.jsonl", settings, embedder,
        args.limit_queries))
    if not args.skip_answers:
        report["answers"] = answers(args.data / "squad-dev" / "dev-v1.1.json", args.data_dir, embedder,
                                    args.questions, args.seed)
    report["seconds"] = round(time.time() - started, 1)
    write_json(report, args.out)
    table = render(report)
    args.out.with_suffix(".md").write_text(f"# Hierarchical retrieval\n\n`{report['command']}` on "
                                           f"{report['machine']}\n\n{table}", encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
