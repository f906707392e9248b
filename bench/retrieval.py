"""Retrieval quality and latency on SciFact and NFCorpus (processed variant), beside the published anchors.

    python bench/retrieval.py [--data ../shared/data] [--limit-queries N] [--out bench/results/retrieval.json]

For each dataset: ingest the corpus into a collection under --data-dir (once; later runs skip the unchanged
file), choose the hybrid fusion settings on the training/dev split (never test), then evaluate on test: BM25
(the store's leg: in-memory BM25 for these sizes), dense (all-MiniLM-L6-v2), hybrid RRF k=60, hybrid weighted
w=0.5, the tuned hybrids, BM25 and the shipped hybrid with the SQLite FTS5 leg instead (`lex=fts5`), and bm25s as
a reference BM25.
Latency is `Collection.search(query, k=10)` per test query after warm-up, wall and CPU time, with torch and FAISS
on --threads threads. Writes JSON, Markdown and PNG next to --out. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from ragworks.config import Settings
from ragworks.embed import make_embedder
from ragworks.evaluate.beir import BeirDataset, load_beir
from ragworks.evaluate.configs import RunConfig, hybrid, parse_config
from ragworks.evaluate.pipelines import PipelineConfig, evaluate_pipelines
from ragworks.evaluate.report import markdown_table, plot, write_json
from ragworks.evaluate.retrieval import (
    DatasetResult,
    LegCache,
    evaluate_configs,
    open_for_dataset,
    set_threads,
    time_search,
)
from ragworks.evaluate.tuning import CANDIDATES, Sweep, grid, sweep

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Bench:
    name: str
    label: str
    root: str
    corpus: str | None
    tune_split: str
    comparable: bool


BENCHES = (
    Bench("scifact", "SciFact", "scifact", None, "train", True),
    Bench(
        "nfcorpus", "NFCorpus (processed variant)", "nfcorpus", "variant-original-processed/corpus.jsonl", "dev", False
    ),
)

# Published nDCG@10 on BEIR SciFact test (DESIGN.md). NFCorpus: our corpus is a processed stand-in, so none apply.
ANCHORS = {
    "scifact": {
        "bm25": "0.665–0.679 (BM25: Pyserini; bm25s)",
        "bm25s": "0.679 (bm25s, measured here before)",
        "dense": "≈0.645 (all-MiniLM-L6-v2)",
        "hybrid": "0.742 (BM25+BGE-base RRF); 0.688 (BM25+cross-encoder)",
    },
}
TARGETS = {  # (dataset, config role, metric) → minimum
    ("scifact", "bm25", "ndcg@10"): 0.665,
    ("scifact", "dense", "ndcg@10"): 0.64,
    ("scifact", "hybrid", "ndcg@10"): 0.70,
    ("nfcorpus", "bm25", "ndcg@10"): 0.32,
    ("nfcorpus", "hybrid", "ndcg@10"): 0.34,
}
LATENCY_TARGET_MS = 20.0
BEST_TARGETS = {"scifact": 0.72, "nfcorpus": 0.35}
PIPELINES = ("onnx", "onnx-candidates100", "maxsim", "maxsim-pure", "cross-encoder", "llm", "mmr", "near-dup",
             "multi-query", "hyde", "step-back")


class PipelineModels:
    """Models the pipeline rows share across datasets, each loaded on first need."""

    def __init__(self) -> None:
        self._onnx: Any = None
        self._llm: Any = None
        self._ce: Any = None
        self._maxsim: dict[float, Any] = {}

    def onnx(self) -> Any:
        if self._onnx is None:
            from ragworks.embed.onnx import OnnxEmbedder

            self._onnx = OnnxEmbedder("all-MiniLM-L6-v2", quantize=True, query_threads=1)
        return self._onnx

    def llm(self) -> Any:
        if self._llm is None:
            from ragworks.generate import make_llm

            self._llm = make_llm(Settings(llm="local", llm_context_tokens=2048))
        return self._llm

    def maxsim(self, weight: float) -> Any:
        if weight not in self._maxsim:
            from ragworks.retrieve.rerank import MaxSimReranker

            # ONNX token vectors: the same transformer outputs as torch's token_embeddings, ~2x cheaper here.
            if self._maxsim:  # share the passages' token vectors already computed
                self._maxsim[weight] = next(iter(self._maxsim.values())).with_weight(weight)
            else:
                self._maxsim[weight] = MaxSimReranker(self.onnx().token_vectors, first_stage_weight=weight)
        return self._maxsim[weight]

    def cross_encoder(self, path: Path) -> Any:
        if self._ce is None:
            from ragworks.retrieve.rerank import CrossEncoderReranker

            self._ce = CrossEncoderReranker(path)
        return self._ce


def pipeline_configs(args: argparse.Namespace, settings: Settings, models: PipelineModels) -> list[PipelineConfig]:
    """The search-pipeline rows asked for with --pipelines (all on the default hybrid first stage)."""
    want = set(args.pipelines)
    out: list[PipelineConfig] = []
    if "onnx" in want:
        out.append(PipelineConfig("onnx int8 queries (torch-built index)", {"embed_backend": "onnx"},
                                  embedder=models.onnx(), note="queries embedded by ONNX Runtime int8, 1 thread"))
    if "onnx-candidates100" in want:
        out.append(PipelineConfig("onnx int8 queries, candidates=100", {"embed_backend": "onnx", "candidates": 100},
                                  embedder=models.onnx()))
    for name, weight in (("maxsim", settings.rerank_first_stage_weight), ("maxsim-pure", 0.0)):
        if name in want:
            out.append(PipelineConfig(
                f"maxsim rerank top 30 (first-stage weight {weight:g})",
                {"reranker": "maxsim", "rerank_candidates": 30, "rerank_first_stage_weight": weight},
                queries=args.rerank_queries, embedder=models.onnx(), reranker=models.maxsim(weight),
                note="MiniLM token vectors (ONNX int8), ColBERT MaxSim, onnx queries; latency: the first maxsim row "
                "encodes passages (cold cache), the second reuses their cached token vectors"))
    if "cross-encoder" in want and args.cross_encoder:
        out.append(PipelineConfig(f"cross-encoder {args.cross_encoder.name} top 30",
                                  {"reranker": "cross-encoder", "reranker_model": str(args.cross_encoder),
                                   "rerank_candidates": 30}, queries=args.rerank_queries, embedder=models.onnx(),
                                  reranker=models.cross_encoder(args.cross_encoder)))
    if "llm" in want:
        out.append(PipelineConfig(f"llm pointwise rerank top {args.llm_candidates} (local SmolLM2-135M)",
                                  {"reranker": "llm", "rerank_candidates": args.llm_candidates},
                                  queries=args.llm_queries, embedder=models.onnx(), llm=models.llm(),
                                  search_k=args.llm_candidates, warmup=1))
    if "mmr" in want:
        out.append(PipelineConfig("mmr λ=0.7", {"mmr_lambda": 0.7}, embedder=models.onnx(),
                                  note="top 30 picked by MMR from 90 over the stored vectors"))
    if "near-dup" in want:
        out.append(PipelineConfig("near-duplicate collapse (Jaccard ≥ 0.8)", {"near_duplicate_threshold": 0.8},
                                  embedder=models.onnx(), note="3-word shingles, from 90 candidates"))
    for kind in ("multi-query", "hyde", "step-back"):
        if kind in want:
            out.append(PipelineConfig(f"{kind} (local SmolLM2-135M)", {"query_transform": kind, "candidates": 400},
                                      queries=args.llm_queries, embedder=models.onnx(), llm=models.llm(), warmup=1))
    return out


def plot_pipelines(report: dict[str, Any], path: Path) -> Path:
    """nDCG@10 and p50 latency of each pipeline row, per dataset (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = report["pipelines"]
    fig, axes = plt.subplots(len(data), 2, figsize=(14, 0.45 * max(len(v) for v in data.values()) * len(data) + 2),
                             squeeze=False)
    for row, (name, rows) in enumerate(data.items()):
        labels = [f"{r['name']} [{r['queries']}q]" for r in rows]
        axes[row][0].barh(labels, [r["metrics"]["ndcg@10"] for r in rows], color="tab:blue")
        axes[row][0].set_title(f"{name}: nDCG@10")
        axes[row][0].invert_yaxis()
        axes[row][1].barh(labels, [r["latency"]["p50_ms"] for r in rows], color="tab:orange")
        axes[row][1].set_xscale("log")
        axes[row][1].set_title(f"{name}: search p50 ms (log)")
        axes[row][1].invert_yaxis()
        axes[row][1].set_yticklabels([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
FTS5 = parse_config("bm25:lex=fts5")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def progress(label: str) -> Callable[[str, int, int], None]:
    return lambda what, done, total: log(f"{label}: {what} {done}/{total}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="shared data directory")
    ap.add_argument(
        "--data-dir",
        type=Path,
        default=Path.home() / ".cache" / "ragworks" / "bench-retrieval",
        help="where the benchmark collections live (kept between runs: ingest happens once)",
    )
    ap.add_argument("--limit-queries", type=int, default=None, help="first N test (and tuning) queries only")
    ap.add_argument("--latency-queries", type=int, default=None, help="time only the first N test queries")
    ap.add_argument("--datasets", nargs="*", default=[b.name for b in BENCHES], help="subset: scifact nfcorpus")
    ap.add_argument("--no-tune", action="store_true", help="skip the train/dev sweep (standard configs only)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "retrieval.json")
    ap.add_argument("--pipelines", nargs="*", default=list(PIPELINES),
                    help=f"search-pipeline configurations run through Collection.search: {' '.join(PIPELINES)} "
                    "(none: skip); cross-encoder needs --cross-encoder")
    ap.add_argument("--rerank-queries", type=int, default=None,
                    help="first N test queries for the maxsim / cross-encoder rows (default all)")
    ap.add_argument("--llm-queries", type=int, default=50, help="first N test queries for the LLM rows")
    ap.add_argument("--llm-candidates", type=int, default=20, help="passages the LLM reranker grades per query")
    ap.add_argument("--cross-encoder", type=Path, default=None,
                    help="a local sentence-transformers CrossEncoder directory (none ships with ragworks)")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch and FAISS (OpenMP) threads; default 1: one query gains little from more, and on a "
        "busy 2-core machine two threads spin against each other (0 = the libraries' defaults)",
    )
    args = ap.parse_args()

    set_threads(args.threads)
    settings = Settings(data_dir=args.data_dir, llm="extractive", cache_backend="off")  # latency of real searches
    log(f"collections under {args.data_dir}; embedding model {settings.embed_model}")
    embedder = make_embedder(settings)
    benches = [b for b in BENCHES if b.name in args.datasets]

    opened: list[tuple[Bench, BeirDataset, BeirDataset, Any, LegCache, dict[str, Any]]] = []
    for b in benches:
        root = args.data / b.root
        corpus = root / b.corpus if b.corpus else None
        test = load_beir(root, split="test", corpus=corpus, name=b.name).limited(args.limit_queries)
        tune = load_beir(root, split=b.tune_split, corpus=corpus, name=b.name).limited(args.limit_queries)
        log(f"{b.label}: ingest {test.corpus_path} ({test.corpus_size} docs) into beir-{b.name} …")
        t0 = time.perf_counter()
        col, ingest_report = open_for_dataset(test, settings, embedder=embedder)
        ingest = {**ingest_report.to_dict(), "wall_seconds": round(time.perf_counter() - t0, 1)}
        log(
            f"{b.label}: ingest {ingest['unchanged']} unchanged / {ingest['new'] + ingest['updated']} (re)indexed, "
            f"{ingest['chunks_embedded']} chunks embedded in {ingest['wall_seconds']} s"
        )
        cache = LegCache(col, test, depth=max(1000, max(CANDIDATES)))
        opened.append((b, test, tune, col, cache, ingest))

    tuned: Sweep | None = None
    tuned_inhouse: Sweep | None = None
    chosen: list[RunConfig] = []
    if not args.no_tune:
        for b, _, tune, _, cache, _ in opened:
            log(f"{b.label}: retrieving {len(tune.queries)} {tune.split} queries for the fusion sweep …")
            cache.fetch(tune.queries, progress=progress(b.label))
        tuned = sweep({b.name: (tune, cache) for b, _, tune, _, cache, _ in opened})
        tuned_inhouse = sweep({b.name: (tune, cache) for b, _, tune, _, cache, _ in opened}, grid(lexical="inhouse"))
        best_rrf, best_weighted = tuned.best(fusion="rrf"), tuned.best(fusion="weighted")
        log(
            f"sweep on {', '.join(f'{b.name}/{t.split}' for b, _, t, *_ in opened)}: best RRF {best_rrf.name} "
            f"({tuned.mean(best_rrf.name):.4f}), best weighted {best_weighted.name} "
            f"({tuned.mean(best_weighted.name):.4f}), overall {tuned.best().name}"
        )
        best = tuned.best()  # the proposed default first: the targets are checked against it
        picks = [best, best_weighted if best.fusion == "rrf" else best_rrf]
        chosen = [
            RunConfig(
                f"tuned {c.name}",
                c.kind,
                fusion=c.fusion,
                rrf_k=c.rrf_k,
                dense_weight=c.dense_weight,
                candidates=c.candidates,
            )
            for c in picks
        ]
        proto = tuned_inhouse.best()
        log(f"sweep with the in-house BM25 leg: best {proto.name} ({tuned_inhouse.mean(proto.name):.4f})")
        chosen.append(
            RunConfig(
                f"tuned {proto.name}",
                proto.kind,
                fusion=proto.fusion,
                rrf_k=proto.rrf_k,
                dense_weight=proto.dense_weight,
                candidates=proto.candidates,
                lexical="inhouse",
                k1=proto.k1,
                b=proto.b,
            )
        )

    configs = [
        parse_config("bm25", settings),
        parse_config("dense", settings),
        hybrid("rrf", rrf_k=60, candidates=100),
        hybrid("weighted", dense_weight=0.5, candidates=100),
        *(chosen or [parse_config("hybrid", settings)]),  # without a sweep: the shipped defaults
        FTS5,
        parse_config("hybrid:lex=fts5", settings),
        parse_config("bm25s", settings),
    ]
    datasets: list[DatasetResult] = []
    breakdowns: dict[str, dict[str, Any]] = {}
    pipelines: dict[str, list[dict[str, Any]]] = {}
    models = PipelineModels()
    for b, test, _, col, cache, ingest in opened:
        log(f"{b.label}: evaluating {len(configs)} configurations on {len(test.queries)} test queries …")
        results = evaluate_configs(
            test, configs, col=col, cache=cache, latency_queries=args.latency_queries, progress=progress(b.label)
        )
        datasets.append(DatasetResult(test, b.label, str(col.path), results, ingest, cache.seconds))
        breakdowns[b.name] = stage_latency(cache, list(test.queries.values())[: args.latency_queries])
        if args.pipelines and args.pipelines != ["none"]:
            configs_p = pipeline_configs(args, settings, models)
            log(f"{b.label}: {len(configs_p)} search pipelines through Collection.search …")
            piped = evaluate_pipelines(col, test, configs_p, progress=progress(b.label))
            pipelines[b.name] = [r.to_dict() for r in piped]
        col.close()

    report: dict[str, Any] = {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "threads": args.threads or "library defaults",
        },
        "settings": {
            "embed_model": settings.embed_model,
            "chunk_tokens": settings.chunk_tokens,
            "chunk_overlap": settings.chunk_overlap,
            "chunk_context": settings.chunk_context,
        },
        "method": {
            "run": "documents ranked by their best chunk; top 100 documents per query; trec_eval conventions "
            "(graded nDCG, rel>0 relevant, mean over all judged queries)",
            "hybrid": "each leg cut to max(candidates, 10) chunks, fused with ragworks.retrieve.fusion exactly as "
            "HybridRetriever.search; agreement_with_search = share of the first 50 test queries whose "
            "Collection.search(k=10) documents equal the evaluated top documents",
            "latency": "Collection.search(query, k=10) per test query after 10 warm-up queries, one process, no "
            "reranker, no LLM: wall time, and CPU time of the process (the cost on a core of its own); "
            "bm25s: its own tokenize + retrieve",
            "tuning": "grid on train (SciFact) / dev (NFCorpus) queries only; objective: mean nDCG@10 over the "
            "datasets; test queries never seen by the sweep",
        },
        "load_average": os.getloadavg(),
        "datasets": [d.to_dict() for d in datasets],
        "stage_latency": breakdowns,
        "pipelines": pipelines,
        "tuning": tuned.to_dict() if tuned else None,
        "tuning_inhouse_lexical": tuned_inhouse.to_dict() if tuned_inhouse else None,
    }
    report["targets"] = check_targets(report["datasets"], pipelines)
    report["anchors"] = ANCHORS
    for d, b in zip(report["datasets"], [o[0] for o in opened], strict=True):
        d["comparable_with_published"] = b.comparable

    out: Path = args.out
    write_json(report, out)
    md = out.with_suffix(".md")
    anchors = {
        name: {c["name"]: ANCHORS.get(name, {}).get(role_of(c), "") for c in d["configs"]}
        for d in report["datasets"]
        for name in [d["name"]]
    }
    md.write_text(render_markdown(report, anchors), encoding="utf-8")
    png = plot(report["datasets"], out.with_suffix(".png"), title="ragworks retrieval: nDCG@10 and Recall@k (test)")
    if pipelines:
        plot_pipelines(report, out.with_name(out.stem + "-pipelines.png"))
    print(markdown_table(report["datasets"], anchors=anchors))
    for t in report["targets"]:
        print(f"{'PASS' if t['met'] else 'MISS'}  {t['what']}: {t['value']:.4f} (target {t['target']})")
    log(f"wrote {out}, {md}, {png}")
    return 0


def stage_latency(cache: LegCache, texts: list[str], candidates: int = 100) -> dict[str, Any]:
    """Where a hybrid search's time goes: p50/p95 ms of each stage over the test queries (after warm-up)."""
    col = cache.col
    store, embedder = col.store, col.embedder
    fts5 = cache.view(FTS5.lexical_leg).store
    vectors = {t: embedder.embed_queries([t])[0] for t in texts}
    top20 = {t: store.dense_search(v, 20) for t, v in vectors.items()}
    stages = {
        "embed query": lambda t: embedder.embed_queries([t]),
        "dense leg (FAISS, 100)": lambda t: store.dense_search(vectors[t], candidates),
        "FTS5 BM25 leg (100)": lambda t: fts5.lexical_search(t, candidates),
        "in-memory BM25 leg (100)": lambda t: store.lexical_search(t, candidates),
        "materialize 20 hits": lambda t: store.hits(top20[t]),
    }
    out = {}
    for name, fn in stages.items():
        lat = time_search(fn, texts)
        out[name] = {
            "p50_ms": round(lat.p50_ms, 2),
            "p95_ms": round(lat.p95_ms, 2),
            "cpu_p50_ms": round(lat.cpu_p50_ms, 2),
            "cpu_p95_ms": round(lat.cpu_p95_ms, 2),
        }
    return out


def role_of(c: dict[str, Any]) -> str:
    return "hybrid" if c["kind"] == "hybrid" else c["kind"]


def check_targets(datasets: list[dict[str, Any]], pipelines: dict[str, list[dict[str, Any]]] | None = None
                  ) -> list[dict[str, Any]]:
    """Each target against the configuration that plays its role (hybrid: the tuned default when there is one).

    "best": the best nDCG@10 of any configuration evaluated on all test queries (pipelines included).
    """
    out = []
    for d in datasets:
        full = [(c["name"], c["metrics"]["ndcg@10"]) for c in d["configs"]]
        full += [(p["name"], p["metrics"]["ndcg@10"]) for p in (pipelines or {}).get(d["name"], [])
                 if p["queries"] == d["queries"]]
        target = BEST_TARGETS.get(d["name"])
        if full and target is not None:
            name, value = max(full, key=lambda nv: nv[1])
            out.append({"what": f"{d['label']} best ({name}) ndcg@10", "value": value, "target": target,
                        "met": value >= target})
        for p in (pipelines or {}).get(d["name"], []):
            if p["name"].startswith("onnx int8 queries") and p["queries"] == d["queries"]:
                out.append({"what": f"{d['label']} {p['name']} search p50 ms, wall time (≤)",
                            "value": p["latency"]["p50_ms"], "target": LATENCY_TARGET_MS,
                            "met": p["latency"]["p50_ms"] <= LATENCY_TARGET_MS})
    for d in datasets:
        configs = d["configs"]
        hybrid_cfg = next(
            (c for c in configs if c["name"].startswith("tuned ") or c["name"] == "hybrid"),
            next((c for c in configs if c["kind"] == "hybrid"), None),
        )
        for (name, what, metric), target in TARGETS.items():
            if name != d["name"]:
                continue
            c = hybrid_cfg if what == "hybrid" else next((c for c in configs if c["name"] == what), None)
            if c is None:
                continue
            value = c["metrics"][metric]
            out.append(
                {"what": f"{d['label']} {c['name']} {metric}", "value": value, "target": target, "met": value >= target}
            )
        if hybrid_cfg and hybrid_cfg.get("latency"):
            for key, what in (("p50_ms", "wall"), ("cpu_p50_ms", "CPU")):
                p50 = hybrid_cfg["latency"][key]
                out.append(
                    {
                        "what": f"{d['label']} {hybrid_cfg['name']} search p50 ms, {what} time (≤)",
                        "value": p50,
                        "target": LATENCY_TARGET_MS,
                        "met": p50 <= LATENCY_TARGET_MS,
                    }
                )
    return out


def render_markdown(report: dict[str, Any], anchors: dict[str, dict[str, str]]) -> str:
    lines = [
        "# Retrieval benchmark (`bench/retrieval.py`)",
        "",
        f"Generated {report['generated']} on {report['machine']['platform']} ({report['machine']['cpus']} CPUs). "
        f"Embedding model {report['settings']['embed_model']}, chunks of {report['settings']['chunk_tokens']} "
        "tokens with the title prepended.",
        "",
        "NFCorpus figures use the processed stand-in corpus (lower-cased, stopwords removed, no titles): compare "
        "configurations with each other, **not** with published BEIR NFCorpus numbers.",
        "",
        markdown_table(report["datasets"], anchors=anchors),
        "## Targets",
        "",
        *(
            f"- {'✅' if t['met'] else '❌'} {t['what']}: {t['value']:.4f} (target {t['target']})"
            for t in report["targets"]
        ),
        "",
        "## Method",
        "",
        *(f"- **{k}**: {v}" for k, v in report["method"].items()),
    ]
    if report.get("pipelines"):
        lines += [
            "",
            "## Search pipelines (`Collection.search` end to end; default hybrid first stage)",
            "",
            "Each row runs `Collection.search` per query with the row's settings; slow rows run on the first N test "
            "queries (the `queries` column) and a baseline row with the same N sits beside them. Latency: the whole "
            "search (query transform, both legs, fusion, reranking), one process, after 3 warm-up queries.",
            "",
            "| dataset | config | queries | ndcg@10 | recall@10 | mrr@10 | p50 ms | p95 ms | CPU p50 ms | note |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, rows in report["pipelines"].items():
            for r in rows:
                m, lat = r["metrics"], r["latency"]
                lines.append(
                    f"| {name} | {r['name']} | {r['queries']} | {m['ndcg@10']:.4f} | {m['recall@10']:.4f} | "
                    f"{m['mrr@10']:.4f} | {lat['p50_ms']:.1f} | {lat['p95_ms']:.1f} | {lat['cpu_p50_ms']:.1f} | "
                    f"{r.get('note', '')} |"
                )
    tuning = report.get("tuning")
    if tuning:
        grid = sorted(tuning["grid"], key=lambda r: -r["mean"])
        names = tuning["datasets"]
        lines += [
            "",
            "## Fusion sweep (train/dev only)",
            "",
            f"Objective: {tuning['objective']}. "
            f"Best overall `{tuning['best']}`; best RRF `{tuning['best_rrf']}`; best weighted "
            f"`{tuning['best_weighted']}`; best per dataset: "
            + ", ".join(f"{d}: `{n}`" for d, n in tuning["best_per_dataset"].items()),
            "",
            "| config | mean nDCG@10 | " + " | ".join(f"{n} nDCG@10 | {n} R@100" for n in names) + " |",
            "|---|---|" + "---|---|" * len(names),
        ]
        for r in grid:
            lines.append(
                f"| `{r['name']}` | {r['mean']:.4f} | "
                + " | ".join(f"{r[n]['ndcg@10']:.4f} | {r[n]['recall@100']:.4f}" for n in names)
                + " |"
            )
    proto = report.get("tuning_inhouse_lexical")
    if proto:
        top = sorted(proto["grid"], key=lambda r: -r["mean"])[:5]
        lines += [
            "",
            "### Same sweep with BM25Index legs of other k1 / b (`lex=inhouse`)",
            "",
            f"Best `{proto['best']}`; best RRF `{proto['best_rrf']}`; best weighted `{proto['best_weighted']}`.",
            "",
            "| config | mean nDCG@10 |",
            "|---|---|",
            *(f"| `{r['name']}` | {r['mean']:.4f} |" for r in top),
        ]
    stages = report.get("stage_latency") or {}
    if stages:
        names = list(next(iter(stages.values())))
        lines += [
            "",
            "## Where search time goes (p50 ms per test query: wall / CPU)",
            "",
            "| dataset | " + " | ".join(names) + " |",
            "|---|" + "---|" * len(names),
        ]
        lines += [
            f"| {d} | " + " | ".join(f"{v[n]['p50_ms']:.2f} / {v[n]['cpu_p50_ms']:.2f}" for n in names) + " |"
            for d, v in stages.items()
        ]
        lines += [
            "",
            f"Load average while measuring (1/5/15 min): {report.get('load_average')} on "
            f"{report['machine']['cpus']} CPUs shared with other work.",
        ]
    for d in report["datasets"]:
        lines += [
            "",
            f"**{d['label']}**: {d['queries']} {d['split']} queries, {d['corpus_documents']} documents, "
            f"collection `{d['collection']}`; ingest: {d['ingest'].get('chunks_written', 0)} chunks written, "
            f"{d['ingest'].get('chunks_embedded', 0)} embedded, {d['ingest'].get('wall_seconds', 0)} s; "
            "agreement with `Collection.search` (collapse_duplicates off): "
            + ", ".join(
                f"{c['name']} {c['agreement_with_search']:.2f}"
                for c in d["configs"]
                if c.get("agreement_with_search") is not None
            )
            + "; share of checked queries whose top 10 the default collapse_duplicates=True changes: "
            + ", ".join(
                f"{c['name']} {c['top10_changed_by_collapse']:.2f}"
                for c in d["configs"]
                if c.get("top10_changed_by_collapse") is not None
            ),
        ]
        lines += [f"  - note: {n}" for n in d["notes"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
