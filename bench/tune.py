"""Benchmark `ragworks tune` on SciFact: labelled (train qrels) and unlabelled (pairs from the corpus only).

Each run copies an already-ingested SciFact collection (ingesting SciFact takes ~25 min on 2 cores, so it is done
once and reused), tunes the copy with `ragworks.tune.run.run_tune` (what `ragworks tune` runs), and reports
nDCG@10 / Recall@100 on the 300 BEIR test queries before and after, dense and hybrid, against the issue's targets,
with the time of each stage and the machine load. Writes bench/results/tune.json and tune.png.

Labelled: the train qrels (3 epochs at most); hybrid uses the dense weight `run_tune` chose on the held-out dev
split of the train queries. Unlabelled (`--method auto` → adapter, tune/adapter.py): one sentence of each passage
and each title become pseudo queries, the collection's hybrid retriever (BM25 + dense, weight 0.4) ranks the
collection for each, and a linear map on the model's pooled output is trained so the dense ranking matches the
hybrid's (3 epochs over stored vectors, seconds); the epoch and the map's strength α are chosen on 1,500 held-out
pseudo queries, and re-embedding maps the stored vectors instead of running the transformer. `--method finetune`
gives the earlier unlabelled setting (1,000 title → abstract pairs + `--ict` Inverse Cloze Task pairs, BM25
negatives, `--budget-minutes` of fine-tuning). The defaults reproduce bench/results/tune-scifact-*.json:

    python bench/tune.py --modes labelled --out bench/results/tune-scifact-labelled.json
    python bench/tune.py --modes unlabelled --out bench/results/tune-scifact-unlabelled.json
    python bench/tune.py --combine bench/results/tune-scifact-labelled.json \
        bench/results/tune-scifact-unlabelled.json                  # → bench/results/tune.json + tune.png
    python bench/tune.py                                  # both modes in one go
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TARGETS = {  # the targets, SciFact test nDCG@10
    ("labelled", "dense"): 0.70,
    ("labelled", "best"): 0.75,
    ("unlabelled", "dense"): 0.67,
}
TIME_TARGET_S = 30 * 60  # training + re-embedding SciFact


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def find_source(args: argparse.Namespace) -> Path:
    """An ingested SciFact collection: --source, else bench/retrieval.py's or `ragworks eval`'s cache."""
    candidates = [args.source] if args.source else [
        Path.home() / ".cache" / "ragworks" / "bench-retrieval" / "beir-scifact",
        Path("/tmp/ragworks-eval/beir-scifact"),
    ]
    for c in candidates:
        if c is not None and (c / "ragworks.sqlite3").is_file():
            return c
    target = candidates[0]
    log(f"no ingested SciFact collection found; ingesting into {target} (~25 min on 2 cores, once)")
    from ragworks.config import Settings
    from ragworks.evaluate.beir import load_beir
    from ragworks.evaluate.retrieval import open_for_dataset

    ds = load_beir(args.data / "scifact", split="test")
    col, _ = open_for_dataset(ds, Settings(data_dir=target.parent, llm="extractive"), collection=target.name)
    col.close()
    return target


def run_mode(mode: str, source: Path, args: argparse.Namespace) -> dict[str, Any]:
    from ragworks.config import Settings
    from ragworks.tune.adapter import AdapterConfig
    from ragworks.tune.run import TuneOptions, run_tune
    from ragworks.tune.train import TrainConfig

    work = args.work / f"scifact-{mode}"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(source, work, ignore=shutil.ignore_patterns("write.lock", "models"))
    settings = Settings(data_dir=args.work, llm=args.llm)
    options = TuneOptions(
        beir=args.data / "scifact", unlabelled=mode == "unlabelled", negatives=args.negatives, force=True,
        max_pairs=args.max_pairs, ict=args.ict, generate=args.generate if mode == "unlabelled" else 0,
        generate_minutes=args.generate_minutes, method=args.method,
        adapter=AdapterConfig(loss=args.adapter_loss, epochs=args.adapter_epochs, learning_rate=args.adapter_lr,
                              teacher_temperature=args.adapter_teacher_temperature,
                              sentences_per_passage=args.adapter_sentences, threads=args.threads),
        train=TrainConfig(budget_minutes=args.budget_minutes, batch_size=args.batch_size,
                          max_epochs=args.epochs or (3 if mode == "labelled" else 1),
                          learning_rate=args.lr, threads=args.threads, eval_every=args.eval_every,
                          max_seq_length=args.max_seq_length),
    )
    load_before = load()
    last = [0.0]

    def step(s: int, planned: int, loss: float, mrr: float | None) -> None:
        if mrr is not None or time.monotonic() - last[0] > 60:
            last[0] = time.monotonic()
            log(f"{mode}: step {s}/{planned} loss {loss:.3f}" + (f" dev MRR {mrr:.3f}" if mrr is not None else ""))

    def stage(name: str, done: int, total: int) -> None:
        if done == total or time.monotonic() - last[0] > 60:
            last[0] = time.monotonic()
            log(f"{mode}: {name} {done}/{total}")

    report = run_tune(work, settings, options, log=lambda m: log(f"{mode}: {m}"), progress=stage,
                      step_progress=step)
    load_tuned = load()
    searched = search_scores(work, args.data) if args.rerank and report.switched else None
    card = report.card
    t = card["timings"]
    return {
        "mode": mode, "collection": str(work), "version": report.version, "model_dir": str(report.model_dir),
        "before": report.before, "after": report.after, "data": card["data"],
        "training": {k: card["training"].get(k) for k in ("method", "steps", "epochs", "seconds", "stopped",
                                                          "best_step", "base_dev_mrr", "best_dev_mrr", "budget_minutes",
                                                          "batch_size", "learning_rate", "threads", "loss", "alpha",
                                                          "best_epoch", "teacher_dev_mrr", "timings")},
        "fusion": card.get("fusion"), "dev_curve": card["training"]["dev"], "timings": t,
        "train_plus_reembed_s": round(card["training"]["seconds"] + t["reembed_s"], 1),
        "search": searched, "load_before": load_before, "load_after": load_tuned,
    }


def search_scores(work: Path, data: Path, *, reranker: str = "maxsim") -> dict[str, Any]:
    """nDCG@10 of `Collection.search` (k=30) as a user gets it: the collection's active model with default settings
    (so a tuned model's dev-chosen dense weight), without and with the `reranker` over the first stage's top 30."""
    from ragworks.collection import Collection
    from ragworks.config import Settings
    from ragworks.evaluate.beir import load_beir
    from ragworks.evaluate.metrics import evaluate

    test = load_beir(data / "scifact", split="test")
    out: dict[str, Any] = {}
    for label, settings in (("search", Settings(data_dir=work.parent, llm="extractive")),
                            (f"search+{reranker}", Settings(data_dir=work.parent, llm="extractive",
                                                            reranker=reranker))):  # type: ignore[arg-type]
        t0 = time.perf_counter()
        run: dict[str, dict[str, float]] = {}
        with Collection.open(work.name, settings=settings, create=False, llm=None) as col:
            out["dense_weight"] = col.settings.dense_weight
            for qid, query in test.queries.items():
                docs = list(dict.fromkeys(test.doc_id_of(h.source) for h in col.search(query, k=30)))
                run[qid] = {d: float(len(docs) - i) for i, d in enumerate(docs)}
        out[label] = {"ndcg@10": evaluate(run, test.qrels, ("ndcg@10",))["ndcg@10"],
                      "seconds": round(time.perf_counter() - t0, 1)}
        log(f"{work.name}: {label} nDCG@10 {out[label]['ndcg@10']:.4f} ({out[label]['seconds']} s)")
    return out


def check(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        for (mode, what), target in TARGETS.items():
            if mode != r["mode"]:
                continue
            searched = [v["ndcg@10"] for k, v in (r.get("search") or {}).items() if k.startswith("search")]
            value = (r["after"]["dense"]["ndcg@10"] if what == "dense"
                     else max([r["after"][m]["ndcg@10"] for m in ("dense", "hybrid")] + searched))
            rows.append({"target": f"{mode} {what} nDCG@10 ≥ {target}", "value": round(value, 4),
                         "met": value >= target})
        rows.append({"target": f"{r['mode']}: training + re-embedding ≤ 30 min", "value": r["train_plus_reembed_s"],
                     "met": r["train_plus_reembed_s"] <= TIME_TARGET_S})
    return rows


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    labels, befores, afters = [], [], []
    for r in results:
        for m in ("dense", "hybrid"):
            labels.append(f"{r['mode']}\n{m}")
            befores.append(r["before"][m]["ndcg@10"])
            afters.append(r["after"][m]["ndcg@10"])
    x = range(len(labels))
    ax.bar([i - 0.2 for i in x], befores, 0.4, label="all-MiniLM-L6-v2")
    ax.bar([i + 0.2 for i in x], afters, 0.4, label="tuned")
    for (mode, what), target in TARGETS.items():
        if what == "dense" and any(r["mode"] == mode for r in results):
            ax.axhline(target, ls=":", lw=1, color="grey")
    ax.set_xticks(list(x), labels)
    ax.set_ylim(0.5, 0.8)
    ax.set_ylabel("SciFact test nDCG@10")
    ax.legend()
    for r in results:
        if r["dev_curve"]:
            steps, mrr = zip(*r["dev_curve"], strict=True)
            ax2.plot(steps, mrr, "o-", label=f"{r['mode']} ({r['training'].get('method') or 'finetune'})")
    ax2.set_xlabel("training step")
    ax2.set_ylabel("dev MRR (held-out pairs / pseudo queries)")
    ax2.legend()
    fig.suptitle("ragworks tune on SciFact (2 CPU cores)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_report(results: list[dict[str, Any]], targets: list[dict[str, Any]]) -> None:
    print("\nragworks tune on SciFact test (300 queries); load avg before/after: "
          + "; ".join(f"{r['mode']} {r['load_before']} / {r['load_after']}" for r in results))
    print(f"{'mode':<11} {'model':<7} {'dense nDCG@10':>13} {'dense R@100':>11} {'hybrid nDCG@10':>14} "
          f"{'hybrid R@100':>12}")
    for r in results:
        for label, s in (("before", r["before"]), ("after", r["after"])):
            print(f"{r['mode']:<11} {label:<7} {s['dense']['ndcg@10']:>13.4f} {s['dense']['recall@100']:>11.4f} "
                  f"{s['hybrid']['ndcg@10']:>14.4f} {s['hybrid']['recall@100']:>12.4f}")
    print()
    for r in results:
        t, tr = r["timings"], r["training"]
        print(f"{r['mode']}: {r['data']['train_pairs']} train pairs; {tr['steps']} steps ({tr['epochs']} epochs, "
              f"stopped: {tr['stopped']}); pairs {t['pairs_s']} s, negatives {t['negatives_s']} s, training "
              f"{tr['seconds']} s, re-embed {t['reembed_s']} s, measure {t['measure_s']} s")
    for r in results:
        if r.get("search"):
            srch = r["search"]
            print(f"{r['mode']}: Collection.search with the tuned model (dense_weight {srch['dense_weight']:g}): "
                  + ", ".join(f"{k} nDCG@10 {v['ndcg@10']:.4f} ({v['seconds']} s)" for k, v in srch.items()
                              if k.startswith("search")))
    print()
    for row in targets:
        print(f"{'MET ' if row['met'] else 'MISS'} {row['target']}: {row['value']}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="shared data directory")
    ap.add_argument("--source", type=Path, default=None, help="an ingested SciFact collection (copied, never changed)")
    ap.add_argument("--work", type=Path, default=Path.home() / ".cache" / "ragworks" / "bench-tune")
    ap.add_argument("--modes", nargs="*", default=["labelled", "unlabelled"], choices=["labelled", "unlabelled"])
    ap.add_argument("--budget-minutes", type=float, default=20.0, help="training budget per mode")
    ap.add_argument("--epochs", type=int, default=None,
                    help="at most this many passes (the budget may stop first); default 3 labelled, 1 unlabelled")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--threads", type=int, default=2, help="torch threads for training")
    ap.add_argument("--eval-every", type=int, default=25)
    ap.add_argument("--max-seq-length", type=int, default=0, help="tokens per text while training (0: the model's)")
    ap.add_argument("--method", default="auto", choices=["auto", "finetune", "adapter"],
                    help="auto: the adapter distilled from the hybrid retriever without labels, fine-tuning with them")
    ap.add_argument("--adapter-loss", default="distil", choices=["distil", "pairs", "both"])
    ap.add_argument("--adapter-epochs", type=int, default=3)
    ap.add_argument("--adapter-lr", type=float, default=1e-3)
    ap.add_argument("--adapter-teacher-temperature", type=float, default=0.05)
    ap.add_argument("--adapter-sentences", type=int, default=1, help="adapter: pseudo queries per passage")
    ap.add_argument("--negatives", default="bm25", choices=["bm25", "dense", "both", "none"])
    ap.add_argument("--max-pairs", type=int, default=1000, help="unlabelled: sample this many title/heading pairs")
    ap.add_argument("--ict", type=int, default=3000, help="unlabelled: this many Inverse Cloze Task pairs")
    ap.add_argument("--generate", type=int, default=0, help="unlabelled: doc2query with the LLM for N passages")
    ap.add_argument("--generate-minutes", type=float, default=10.0)
    ap.add_argument("--llm", default="extractive", help="LLM for --generate (local = SmolLM2-135M)")
    ap.add_argument("--no-rerank", dest="rerank", action="store_false",
                    help="skip measuring Collection.search with the MaxSim reranker on the tuned collection")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "tune.json")
    ap.add_argument("--combine", type=Path, nargs="*", default=None,
                    help="no tuning: merge these result files (one mode each) into --out and its PNG")
    args = ap.parse_args()
    if args.combine:
        results = [r for f in args.combine for r in json.loads(f.read_text())["results"]]
        targets = check(results)
        print_report(results, targets)
        merged = {"created": time.strftime("%Y-%m-%dT%H:%M:%S"), "combined_from": [str(f) for f in args.combine],
                  "results": results, "targets": targets}
        args.out.write_text(json.dumps(merged, indent=2, default=str) + "\n")
        plot(results, args.out.with_suffix(".png"))
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.generate and args.llm == "extractive":
        args.llm = "local"
    args.work.mkdir(parents=True, exist_ok=True)
    source = find_source(args)
    log(f"source collection {source}; work dir {args.work}; load {load()}")
    results = [run_mode(mode, source, args) for mode in args.modes]
    targets = check(results)

    print_report(results, targets)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {"created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                               "args": {k: str(v) for k, v in vars(args).items()},
                               "cpu_count": os.cpu_count(), "results": results, "targets": targets}
    args.out.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    plot(results, args.out.with_suffix(".png"))
    log(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
